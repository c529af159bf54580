"""RecBole atomic files -> `Source`: ``<name>.inter`` (+ ``<name>.item``, ``<name>.user``).

    recsys textualize recbole --dataset-dir fixtures/recbole/ml-100k --out runs/ml100k

Format (RecBole's "atomic files"): UTF-8, tab-separated, no quoting, a header of typed
names ``name:type`` with type ``token`` (one id or word), ``token_seq`` (space-separated
tokens), ``float`` or ``float_seq``. The typed header is parsed and the type suffix never
reaches the text. How the fields are used:
* ``.inter``: ``user_id`` and ``item_id`` (required), ``rating`` and ``timestamp``
  (optional, by name; timestamps through timeunit.py), ``review``/``text`` if present;
* ``.item``: the title is the first field named ``*title*`` or ``*name*`` (its tokens joined
  with spaces); the categories are the first other ``token_seq`` field among ``class``,
  ``genre``, ``genres``, ``categories``, ``category``, split into a list; ``brand`` and
  ``price`` by name; other fields (``release_year``) are not used;
* ``.user``: every field but ``user_id`` is a feature, written "age 24; gender M; ..." in the
  user profile, with the field name as given minus its ``:type``.
Filtering is reviews.py's (the same as every source). Strict: a row with fewer fields than
the header, an empty user_id/item_id or an empty timestamp is an error naming its line (blank
lines are skipped, as RecBole does); implausible times and an item_id field with a new value on
every row are plausible.py's checks.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_cli.data.sources import ITEM_COLS, Source, conform, fill_titles
from recsys_cli.data.sources.plausible import check_items, check_times, require_keys, require_times
from recsys_cli.data.sources.reviews import filter_reviews
from recsys_cli.data.sources.timeunit import to_seconds, unit_note
from recsys_cli.data.text import clean
from recsys_cli.errors import InputError, RecsysError

TYPES = ("token", "token_seq", "float", "float_seq")
CATEGORY_NAMES = ("class", "genre", "genres", "categories", "category")


def find_dataset(dataset_dir: Path, name: str | None) -> str:
    """The dataset name: --dataset, or the stem of the only *.inter file in the directory."""
    if not dataset_dir.is_dir():
        raise RecsysError(
            f"{dataset_dir}: dataset directory not found (expected <name>.inter, .item, .user)", exit_code=2
        )
    if name is not None:
        if not (dataset_dir / f"{name}.inter").is_file():
            raise InputError.at(
                dataset_dir / f"{name}.inter", None, "file not found (RecBole interactions of --dataset)"
            )
        return name
    stems = sorted(p.stem for p in dataset_dir.glob("*.inter"))
    if len(stems) != 1:
        what = f"several: {', '.join(stems)}; pick one with --dataset" if stems else "none"
        raise RecsysError(f"{dataset_dir}: expected one RecBole <name>.inter file, found {what}", exit_code=2)
    return stems[0]


def read_atomic(path: Path) -> tuple[pl.DataFrame, dict[str, str], pl.Series]:
    """(frame with plain field names, all text; {field: type}; the file line of each row).
    Blank lines are skipped (as RecBole does); a row with fewer fields than the header is an error."""
    with open(path, "rb") as fh:
        first = fh.readline()
    try:
        header = first.decode("utf-8").rstrip("\n").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise InputError.at(path, 1, f"valid UTF-8 text (undecodable byte at column {exc.start + 1})")
    types: dict[str, str] = {}
    for k, field in enumerate(header.split("\t")):
        name, sep, kind = field.rpartition(":")
        if not sep or not name or kind not in TYPES:
            raise InputError.at(
                path,
                1,
                f"a RecBole header of name:type fields (type one of {', '.join(TYPES)}); field {k + 1} is {field!r}",
            )
        if name in types:
            raise InputError.at(path, 1, f"each field once; {name!r} repeats")
        types[name] = kind
    try:
        df = pl.read_csv(
            path,
            separator="\t",
            quote_char=None,
            has_header=False,
            skip_rows=1,
            new_columns=list(types),
            schema_overrides={n: pl.Utf8 for n in types},
        )
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError):
        raise _bad_line(path, len(types))
    if df.width != len(types):
        raise _bad_line(path, len(types))
    lines = pl.int_range(2, df.height + 2, eager=True).alias("line")  # each line after the header is a row
    cut = df[list(types)[-1]].is_null()  # a short row (or an empty last field, or a blank line) leaves it null
    if cut.any():
        blank = _short_rows(path, list(types), set(lines.filter(cut).to_list()))
        keep = ~lines.is_in(sorted(blank))
        df, lines = df.filter(keep), lines.filter(keep)
    return df, types, lines


def _short_rows(path: Path, names: list[str], suspects: set[int]) -> set[int]:
    """Raise at the first suspect line with fewer fields than the header; return the blank ones."""
    blank = set()
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno not in suspects:
                continue
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line.strip():
                blank.add(lineno)
            elif line.count(b"\t") + 1 < len(names):
                found = line.count(b"\t") + 1
                raise InputError.at(
                    path,
                    lineno,
                    f"{len(names)} tab-separated fields like the header "
                    f"({', '.join(names)}); found {found}: the line is cut short",
                )
    return blank


def _bad_line(path: Path, n: int) -> InputError:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as exc:
                return InputError.at(path, lineno, f"valid UTF-8 text (undecodable byte at column {exc.start + 1})")
            if lineno > 1 and line and line.count("\t") + 1 != n:
                return InputError.at(
                    path, lineno, f"{n} tab-separated fields like the header; found {line.count(chr(9)) + 1}"
                )
    return InputError.at(path, None, "a readable RecBole atomic file")


def _floats(path: Path, df: pl.DataFrame, name: str, lines: pl.Series) -> pl.Series:
    out = df[name].cast(pl.Float64, strict=False)
    bad = (out.is_null() & df[name].is_not_null()).arg_true()
    if len(bad):
        k = int(bad[0])
        raise InputError.at(path, int(lines[k]), f"'{name}' as a number (its type is float); got {df[name][k]!r}")
    return out


def _require(path: Path, types: dict, name: str) -> None:
    if name not in types:
        raise InputError.at(
            path, 1, f"a {name}:token field; the fields are: {', '.join(f'{n}:{t}' for n, t in types.items())}"
        )


def load_recbole(
    dataset_dir: Path, name: str | None = None, min_user: int = 5, min_item: int = 0, time_unit: str = "auto"
) -> Source:
    name = find_dataset(dataset_dir, name)
    ipath = dataset_dir / f"{name}.inter"
    df, types, lines = read_atomic(ipath)
    at = lambda k: int(lines[k])  # noqa: E731 (row -> file line)
    for f in ("user_id", "item_id"):
        _require(ipath, types, f)
        require_keys(df[f], ipath, at, f"a non-empty {f}")
    raw = {"user_id": df["user_id"], "item_id": df["item_id"], "order": pl.int_range(0, df.height, eager=True)}
    notes: list[str] = []
    if "rating" in types:
        raw["rating"] = _floats(ipath, df, "rating", lines)
    if "timestamp" in types:
        raw["timestamp"], used = to_seconds(_floats(ipath, df, "timestamp", lines), time_unit, ipath, at)
        notes.append(unit_note("timestamp", used, time_unit))
        require_times(raw["timestamp"], ipath, at, "timestamp")
        check_times(raw["timestamp"], ipath, at, "check which header field is timestamp:float, and --time-unit", notes)
    check_items(df["item_id"], ipath, "check which header field is item_id:token", notes)
    text = next((f for f in ("review", "text") if f in types), None)
    if text:
        raw["review"] = df[text].map_elements(clean, return_dtype=pl.Utf8)
    inter, filters = filter_reviews(pl.DataFrame(raw), ipath, min_user, min_item)
    inputs = [ipath]
    items, fallback, item_notes = _items(dataset_dir / f"{name}.item", inter["item_id"].unique().sort(), inputs)
    users = _users(dataset_dir / f"{name}.user", inputs)
    has_reviews = "rating" in raw or text is not None
    return Source("recbole", items, inter, users, has_reviews, inputs, notes + item_notes, filters, fallback)


def _items(path: Path, ids: pl.Series, inputs: list[Path]) -> tuple[pl.DataFrame, dict[str, str], list[str]]:
    base = pl.DataFrame({"item_id": ids})
    if not path.is_file():
        df = base.with_columns(
            title=pl.lit(None, pl.Utf8), has_meta=pl.lit(None, pl.Boolean), categories=pl.lit([], pl.List(pl.Utf8))
        )
        df, fallback = fill_titles(df, pl.lit("item ") + pl.col("item_id"))
        return conform(df, ITEM_COLS).sort("item_id"), fallback, [f"no {path.name}: titles are 'item <id>'"]
    inputs.append(path)
    df, types, lines = read_atomic(path)
    _require(path, types, "item_id")
    require_keys(df["item_id"], path, lambda k: int(lines[k]), "a non-empty item_id")
    title = next((n for n in types if n != "item_id" and ("title" in n.lower() or "name" in n.lower())), None)
    cats = next((n for n in types if n.lower() in CATEGORY_NAMES and types[n] == "token_seq" and n != title), None)
    sel = [pl.col("item_id"), pl.lit(True).alias("has_meta")]
    sel.append(
        pl.col(title).map_elements(clean, return_dtype=pl.Utf8).alias("title")
        if title
        else pl.lit(None, pl.Utf8).alias("title")
    )
    sel.append(
        pl.col(cats)
        .fill_null("")
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element() != ""))
        .list.unique(maintain_order=True)
        .alias("categories")
        if cats
        else pl.lit([], pl.List(pl.Utf8)).alias("categories")
    )
    sel.append(pl.col("brand").alias("brand") if "brand" in types else pl.lit(None, pl.Utf8).alias("brand"))
    sel.append(
        _floats(path, df, "price", lines).alias("price")
        if "price" in types
        else pl.lit(None, pl.Float64).alias("price")
    )
    meta = df.select(sel).unique("item_id", keep="first", maintain_order=True)
    out = base.join(meta, on="item_id", how="left").with_columns(
        pl.col("categories").fill_null(pl.lit([], pl.List(pl.Utf8)))
    )
    out, fallback = fill_titles(out, pl.lit("item ") + pl.col("item_id"))
    notes = [] if title else [f"{path.name} has no *title* or *name* field: titles are 'item <id>'"]
    return conform(out, ITEM_COLS).sort("item_id"), fallback, notes


def _users(path: Path, inputs: list[Path]) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    inputs.append(path)
    df, types, lines = read_atomic(path)
    _require(path, types, "user_id")
    require_keys(df["user_id"], path, lambda k: int(lines[k]), "a non-empty user_id")
    feats = [n for n in types if n != "user_id"]
    return df.select(pl.col("user_id"), *[pl.col(f) for f in feats]).unique(
        "user_id", keep="first", maintain_order=True
    )
