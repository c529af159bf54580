"""Is this column what the user says it is? Checks on the interaction rows of every source,
run while reading, before anything is written. Every threshold lives here.

    python -c "import polars as pl; from recsys_cli.data.sources.plausible import check_times; \
check_times(pl.Series('t', [880000000, 880000100]), 'x.csv', lambda k: k + 2, 'check --time-col', [])"

* Keys: a user or item id that is null, empty or only spaces is an error naming its line.
* Times: when a source has a time column, every row needs a time (an empty one would sort
  last and become the user's test target); see `require_times`.
* Plausible times: a time before 1995-01-01 (MovieLens, the oldest common data, starts in
  January 1995; Amazon reviews in 1996) or more than a day after now is implausible. Over
  half of them implausible is an error: the column holds ids or counts, or is read in the
  wrong unit (`--time-col`, `--time-unit`). Fewer: one warning line, and the rows are kept.
* Item column: when (at least `ITEM_CHECK_MIN_ROWS` rows) every row has its own item, the
  column is a row id, not an item id: an error. When nearly every row does
  (`ITEM_WARN_SHARE`), a warning: with so few repeats there is little to learn.
A warning is one line on stderr (shown even with --quiet) and a note in the summary.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import polars as pl

from recsys_cli.errors import InputError

EARLIEST_TIME = 788_918_400  # 1995-01-01T00:00:00Z in unix seconds
FUTURE_SLACK_S = 86_400  # a day past now: clocks and time zones, not data
TIME_ERROR_SHARE = 0.5  # more implausible times than this: the column is not times
ITEM_WARN_SHARE = 0.95  # distinct items / rows at or above this: a warning
ITEM_CHECK_MIN_ROWS = 50  # fewer rows than this: too few to judge the item column

Where = Callable[[int], "int | str"]  # 0-based row -> its line number (or "row n")


def blank(values: pl.Series) -> pl.Series:
    """True where a key is missing: null, NaN, or text that is empty or only spaces."""
    missing = values.is_null()
    if values.dtype.is_float():
        missing = missing | values.is_nan().fill_null(False)
    if values.dtype == pl.Utf8:
        missing = missing | (values.str.strip_chars() == "").fill_null(False)
    return missing


def require_keys(values: pl.Series, path: str | Path, where: Where, what: str) -> None:
    """Raise at the first row whose key (user or item id) is blank. `what`: "a non-empty 'asin'"."""
    bad = blank(values).arg_true()
    if len(bad):
        raise InputError.at(path, where(int(bad[0])), f"{what}; the field is empty")


def require_times(seconds: pl.Series, path: str | Path, where: Where, name: str) -> None:
    """Every row of a source with a time column needs a time."""
    bad = seconds.is_null().arg_true()
    if len(bad):
        raise InputError.at(
            path,
            where(int(bad[0])),
            f"a time in '{name}' on every row (an interaction without one "
            "would sort last and become the user's test item); this row has none",
        )


def place(where: Where, k: int) -> str:
    """Row k as the user finds it: "line 9" (a line number) or what `where` says ("row 9")."""
    at = where(k)
    return f"line {at}" if isinstance(at, int) else str(at)


def _day(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "year > 9999" if seconds > 0 else "year < 1"


def check_times(seconds: pl.Series, path: str | Path, where: Where, hint: str, notes: list[str]) -> None:
    """Error when most times are implausible, a warning (and a note) when some are."""
    latest = int(time.time()) + FUTURE_SLACK_S
    values = seconds.drop_nulls()
    if values.len() == 0:
        return
    odd = (seconds < EARLIEST_TIME) | (seconds > latest)
    count = int(odd.sum())
    if count == 0:
        return
    k = int(odd.arg_true()[0])
    value = int(seconds[k])
    share = count / values.len()
    span = f"before {_day(EARLIEST_TIME)} or in the future"  # no date of today: the note goes into manifest.json
    example = f"e.g. {place(where, k)}: {value} = {_day(value)}"
    if share > TIME_ERROR_SHARE:
        raise InputError.at(
            path,
            None,
            f"'{seconds.name}' looks like ids, not times: {count:,} of {values.len():,} "
            f"values ({share:.0%}) fall {span} ({example}); {hint}",
        )
    warn(
        path,
        f"{count:,} of {values.len():,} times in '{seconds.name}' ({share:.1%}) fall {span} ({example}); "
        "they are kept as they are",
        notes,
    )


def review_times(seconds: pl.Series, path: str | Path, lines: list[int], hint: str, notes: list[str]) -> None:
    """JSON review files have no header: a file where no line has a time has no time column;
    otherwise every line needs one, and the times must be plausible."""
    if seconds.null_count() == seconds.len():
        return
    where = lines.__getitem__
    require_times(seconds, path, where, seconds.name)
    check_times(seconds, path, where, hint, notes)


def check_items(items: pl.Series, path: str | Path, hint: str, notes: list[str]) -> None:
    """Error when every row has its own item (>= ITEM_CHECK_MIN_ROWS rows); a warning when nearly every row does."""
    rows = items.len()
    if rows < ITEM_CHECK_MIN_ROWS:
        return
    distinct = items.n_unique()
    if distinct == rows:
        raise InputError.at(
            path,
            None,
            f"'{items.name}' has a different value on each of its {rows:,} rows: "
            f"it looks like a row id, not an item id (no item is seen twice); {hint}",
        )
    share = distinct / rows
    if share >= ITEM_WARN_SHARE:
        warn(
            path,
            f"'{items.name}' has {distinct:,} distinct values in {rows:,} rows ({share:.1%}): few items repeat, "
            f"so there is little to learn from; {hint}",
            notes,
        )


def warn(path: str | Path, message: str, notes: list[str]) -> None:
    """One warning line on stderr now, and the same text as a summary note (kept in manifest.json)."""
    from recsys_cli import console

    text = f"{path}: {message}"
    console.warn(text)
    notes.append(f"warning: {text}")
