"""Terminal output: results on stdout, logs and progress on stderr, `--quiet` silences both."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

out = Console(soft_wrap=True)  # follows sys.stdout at print time (tests redirect it)
err = Console(stderr=True, soft_wrap=True)

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def log(message: str) -> None:
    """A log line on stderr (hidden by --quiet)."""
    if not _quiet:
        err.print(message, highlight=False)


def warn(message: str) -> None:
    """One `warning: ...` line on stderr. Shown even with --quiet: it is about the result, not progress."""
    err.print(f"warning: {message}", highlight=False, markup=False)


def print_json(obj: Any) -> None:
    """Machine-readable result on stdout (always printed, even with --quiet)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    """A table on stdout; piped or captured output gets the table's natural width, so figures
    are never squeezed into '...'."""
    if out.is_terminal:
        out.print(table)
        return
    need = Measurement.get(out, out.options.update(max_width=1000), table).maximum
    Console(width=max(out.width, need), soft_wrap=True).print(table)


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """A two-column field/value table of a summary (nested values shown as JSON)."""
    t = Table(title=title)
    t.add_column("field")
    t.add_column("value")
    for k, v in summary.items():
        if isinstance(v, float):
            text = f"{v:.4f}"
        elif isinstance(v, (dict, list)):
            text = json.dumps(v, sort_keys=True, default=str)
        else:
            text = str(v)
        t.add_row(str(k), text)
    return t


def emit(
    summary: dict[str, Any],
    *,
    as_json: bool,
    title: str,
    tables: list[Table] | None = None,
    notes: list[str] | None = None,
) -> None:
    """The one way a command prints its result: `summary` as JSON with --json; otherwise the
    given rich tables (default: a field/value table of the summary), then the notes."""
    if as_json:
        print_json(summary)
        return
    for table in tables if tables is not None else [summary_table(summary, title)]:
        print_table(table)
    for note in notes or []:
        out.print(f"note: {note}", highlight=False)


def make_progress(*extra_columns: Any) -> Progress:
    """A rich progress bar with ETA on stderr; disabled under --quiet."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra_columns,
        console=err,
        disable=_quiet,
        transient=False,
    )


@contextmanager
def progress(*extra_columns: Any) -> Iterator[Progress]:
    with make_progress(*extra_columns) as p:
        yield p
