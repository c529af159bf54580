"""Reading one user table (CSV / TSV / Parquet / JSONL) with one-line errors that name the
file and the line or row, never a polars message about chunks and row offsets.

    python -c "from pathlib import Path; from recsys_cli.data.sources.tablefile import collect; \
print(collect(Path('fixtures/table/items.csv'), ['asin', 'title']).head(2))"

Polars reads the file (lazily, only the wanted columns). When it fails, the file is walked
again with the standard library to find the first bad line: a CSV row whose field count
differs from the header's, a quote that is never closed, an undecodable byte, or a JSONL
line that is not a JSON object. A bad value is named by `locate`: "line N (row M)" in a
CSV/TSV/JSONL table (N as an editor shows it, header counted; row M counts data rows from 1),
"row M" in Parquet. A CSV row with fewer fields than the header (polars would fill them with
nulls) is an error too.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable

import polars as pl

from recsys_cli.data.sources.lines import json_lines, text_lines
from recsys_cli.errors import InputError

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES or suffix == ".parquet" or suffix in JSON_SUFFIXES:
        return suffix
    raise InputError.at(path, None, f"a .csv, .tsv, .parquet or .jsonl table; got {path.suffix!r}")


def _one(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]


def scan(path: Path) -> pl.LazyFrame:
    if not path.is_file():
        raise InputError.at(path, None, "file not found")
    suffix = _kind(path)
    try:
        if suffix in CSV_SUFFIXES:
            return pl.scan_csv(path, separator=CSV_SUFFIXES[suffix], infer_schema_length=10000)
        if suffix == ".parquet":
            return pl.scan_parquet(path)
        return pl.scan_ndjson(path, infer_schema_length=10000)
    except Exception as exc:  # polars raises several types for unreadable files
        raise _located(path, exc)


def column_names(path: Path) -> list[str]:
    try:
        return scan(path).collect_schema().names()
    except InputError:
        raise
    except Exception as exc:
        raise _located(path, exc)


def collect(path: Path, columns: list[str]) -> pl.DataFrame:
    """The named columns (each once, in order) of the table at `path`; a CSV row cut short is an error."""
    lf = scan(path)
    names = list(dict.fromkeys(columns))
    try:
        last = lf.collect_schema().names()[-1] if path.suffix.lower() in CSV_SUFFIXES else None
        df = lf.select(names + ([last] if last is not None and last not in names else [])).collect()
    except InputError:
        raise
    except Exception as exc:
        raise _located(path, exc)
    if last is not None and df[last].null_count():  # a short row leaves its last field null: look for one
        short = _bad_csv_line(path, CSV_SUFFIXES[path.suffix.lower()])
        if short is not None:
            raise short
    return df.select(names)


def locate(path: Path) -> Callable[[int], str]:
    """Data row k (0-based, as polars reads it) -> "line N (row k+1)", or "row k+1" for Parquet."""

    def at(k: int) -> str:
        line = _line_of_row(path, k)
        return f"row {k + 1}" if line is None else f"line {line} (row {k + 1})"

    return at


def _line_of_row(path: Path, k: int) -> int | None:
    """The file line where data row k starts. Polars reads a blank CSV line as a row of nulls
    (csv.reader: an empty record) and skips blank JSONL lines (as text_lines does)."""
    suffix = path.suffix.lower()
    try:
        if suffix in CSV_SUFFIXES:
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.reader(fh, delimiter=CSV_SUFFIXES[suffix])
                next(reader, None)
                start = reader.line_num + 1
                for n, _ in enumerate(reader):
                    if n == k:
                        return start
                    start = reader.line_num + 1
        elif suffix in JSON_SUFFIXES:
            for n, (lineno, _) in enumerate(text_lines(path)):
                if n == k:
                    return lineno
    except (csv.Error, UnicodeDecodeError, InputError):
        return None
    return None


def _located(path: Path, exc: Exception) -> InputError:
    """The first bad line of `path`, found with the standard library (polars said `exc`)."""
    suffix = path.suffix.lower()
    bad = _bad_utf8(path)
    if bad is not None:
        return bad
    if suffix in CSV_SUFFIXES:
        found = _bad_csv_line(path, CSV_SUFFIXES[suffix])
        if found is not None:
            return found
    elif suffix in JSON_SUFFIXES:
        for _ in json_lines(path):  # raises at the first line that is not a JSON object
            pass
    elif suffix == ".parquet":
        return InputError.at(path, None, f"a readable Parquet file ({type(exc).__name__}: {_one(exc)})")
    return InputError.at(path, None, f"a well-formed {suffix} table (the reader says: {_one(exc)})")


def _bad_utf8(path: Path) -> InputError | None:
    if path.suffix.lower() == ".parquet":
        return None
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return InputError.at(
                    path,
                    lineno,
                    f"valid UTF-8 text (undecodable byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                )
    return None


def _bad_csv_line(path: Path, sep: str) -> InputError | None:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep, strict=True)
        start = 1
        try:
            header = next(reader)
            start = reader.line_num + 1
            for row in reader:
                if row and len(row) != len(header):
                    names = ", ".join(header[:8]) + (", ..." if len(header) > 8 else "")
                    what = f"{len(header)} fields like the header ({names}); found {len(row)}"
                    if reader.line_num > start:
                        what += f" (a quoted field runs on to line {reader.line_num}: is a quote left open?)"
                    return InputError.at(path, start, what)
                start = reader.line_num + 1
        except csv.Error as exc:
            return InputError.at(path, start, f"a well-formed CSV row ({exc}: is a quote left open?)")
        except StopIteration:
            return None
    return None


def first_bad(path: Path, mask: pl.Series, what: Callable[[int], str]) -> None:
    """Raise for the first True of `mask`: `what(k)` says what row k (0-based) should hold."""
    idx = mask.arg_true()
    if len(idx):
        k = int(idx[0])
        raise InputError.at(path, locate(path)(k), what(k))


def check_scalar(path: Path, s: pl.Series, allow_list: bool = False) -> None:
    """A column that must hold text or numbers (or, with allow_list, a list of text)."""
    nested = isinstance(s.dtype, (pl.List, pl.Array, pl.Struct))
    if not nested or (
        allow_list and isinstance(s.dtype, (pl.List, pl.Array)) and not isinstance(s.dtype.inner, (pl.List, pl.Struct))
    ):
        return
    k = int(s.is_not_null().arg_true()[0]) if s.is_not_null().any() else 0
    value = str(s.slice(k, 1).to_list()[0])[:60]
    raise InputError.at(
        path,
        locate(path)(k),
        f"'{s.name}' as a single value (text or a number); got a "
        f"{'list' if isinstance(s.dtype, (pl.List, pl.Array)) else 'record'} {value}",
    )
