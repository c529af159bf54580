"""Terminal output: results on stdout, logs and progress on stderr, `--quiet` silences both."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
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


def is_quiet() -> bool:
    return _quiet


def log(message: str) -> None:
    """A log line on stderr (hidden by --quiet)."""
    if not _quiet:
        err.print(message, highlight=False)


def print_json(obj: Any) -> None:
    """Machine-readable result on stdout (always printed, even with --quiet)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def print_table(table: Table) -> None:
    out.print(table)


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
