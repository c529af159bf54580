"""Timestamps to unix seconds: `--time-unit auto|s|ms`.

    python -c "import polars as pl; from recsys_cli.data.sources.timeunit import to_seconds; \
print(to_seconds(pl.Series('ts', [1588687728923, 1602133857705]), 'auto', 'x.jsonl'))"

The rule for `auto` (one place, used by every source): a column is in milliseconds when
the median of its non-null values is above 1e11, else in seconds. 1e11 seconds is the year
5138, 1e11 milliseconds is 1973-03-03: any real review or rating time (MovieLens 1995+,
Amazon 1996+) is below it in seconds and above it in milliseconds, so the two never mix up.
A column whose values fall on both sides (one row above 1e11, another in 1..1e11) is
ambiguous and an error in `auto` mode that names the row; `--time-unit s` or `ms` forces
one reading. Milliseconds are floored to whole seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import polars as pl

from recsys_cli.errors import InputError

MS_THRESHOLD = 1e11
UNITS = ("auto", "s", "ms")


def detect(values: pl.Series) -> str:
    """'ms' or 's' for a numeric series by the median rule (seconds when empty)."""
    v = values.drop_nulls()
    if v.len() == 0:
        return "s"
    return "ms" if float(v.abs().median()) > MS_THRESHOLD else "s"


def to_seconds(
    values: pl.Series, unit: str, path: str | Path, lines: list[int] | Callable[[int], int | str] | None = None
) -> tuple[pl.Series, str]:
    """(Int64 unix seconds, the unit used) for an integer or float series. Errors name
    `row k` (1-based data row) or, with `lines` (the file line of each value, or a function
    of the 0-based row giving its line number or place), `line n`."""
    if unit not in UNITS:
        raise InputError(f"--time-unit {unit!r}: expected one of {', '.join(UNITS)}")
    num = values.cast(pl.Float64)
    used = detect(num) if unit == "auto" else unit
    if unit == "auto":
        if used == "ms":
            bad = num.is_not_null() & (num.abs() < MS_THRESHOLD) & (num != 0)
        else:
            bad = num.is_not_null() & (num.abs() > MS_THRESHOLD)
        idx = bad.arg_true()
        if len(idx):
            k = int(idx[0])
            where = f"row {k + 1}" if lines is None else lines(k) if callable(lines) else lines[k]
            raise InputError.at(
                path,
                where,
                f"timestamps in one unit; '{values.name}' is mostly "
                f"{'milliseconds' if used == 'ms' else 'seconds'} but this value is {values[k]!r}; "
                "pass --time-unit s or --time-unit ms",
            )
    out = (num / 1000).floor() if used == "ms" else num.floor()
    return out.cast(pl.Int64).alias(values.name), used


def unit_note(name: str, used: str, unit: str) -> str:
    """The summary note saying how a time column was read."""
    how = "detected" if unit == "auto" else "--time-unit"
    return f"timestamps '{name}': {'milliseconds' if used == 'ms' else 'seconds'} ({how}), stored as unix seconds"
