"""The `recsys` root command. Maps expected failures to one-line errors and exit codes.

    recsys --help
    recsys textualize amazon --category toys --out runs/toys
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Optional

import typer

from recsys_cli import __version__
from recsys_cli.commands import COMMANDS, GROUPS
from recsys_cli.errors import RecsysError
from recsys_cli.quiet_libraries import silence

app = typer.Typer(
    name="recsys",
    help="Turn a pretrained language model into a recommender system (RecSysLLM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"recsys {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """textualize -> build-entities -> mask-preview -> pretrain -> infer -> score."""


for _name, _fn in COMMANDS:
    app.command(_name)(_fn)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("RECSYS_DEBUG") == "1"
    silence()
    try:
        app(args=argv, prog_name="recsys")
    except SystemExit:
        raise
    except RecsysError as exc:
        if debug:
            raise
        typer.echo(f"Error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        if debug:
            raise
        name = exc.filename or ""
        typer.echo(f"Error: {name}: {exc.strerror or _one_line(str(exc))}", err=True)
        sys.exit(2)
    except Exception as exc:  # unexpected: still one line, the traceback on request
        if debug:
            raise
        typer.echo(
            f"Error: internal error ({type(exc).__name__}): {_one_line(str(exc))} "
            "(set RECSYS_DEBUG=1 for the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
