"""The `recsys` root command. Maps expected failures to one-line errors and exit codes.

    recsys --help
    recsys textualize amazon --category toys --out runs/toys

Every failure ends in one line on stderr and a non-zero exit code, never a traceback
(RECSYS_DEBUG=1 shows one for the non-usage errors):
- a usage error (a bad or out-of-range value, an unknown option, a missing option or command)
  is found while parsing, before the command runs: `Error: --seed: -5 is not in the range
  0<=x<=4294967295`, exit code 2;
- RecsysError (bad input, a missing file): `Error: <file>, line <n>: <what was expected>`;
- Ctrl-C: `Interrupted (Ctrl-C).`, exit code 130. A command that cleans up on Ctrl-C re-raises
  KeyboardInterrupt (or raises typer.Exit(130)) and prints nothing itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
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

INTERRUPTED = 130


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


_BAD_VALUE = re.compile(r"Invalid value for (.+?): (.*)")


def usage_line(exc: typer.TyperException) -> str:
    """A Typer usage error as one line: `--seed: -5 is not in the range ...` for a bad value,
    else Typer's message with where to find the usage (`No such option: --sed ... (see 'recsys
    pretrain --help')`)."""
    message = _one_line(exc.format_message())
    bad = _BAD_VALUE.fullmatch(message)
    if bad:
        return f"{bad[1].replace(chr(39), '').replace(' / ', '/')}: {bad[2]}"
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"{message} (see '{command} --help')" if command else message


@contextlib.contextmanager
def _noting_interrupts():
    """Ctrl-C raises KeyboardInterrupt as usual, which Typer turns into exit code 130; remember
    that it came, so that code gets its one line (a command's own typer.Exit(130) after a
    signal handler of its own, e.g. multi-process pretrain, gets none)."""
    seen = {"interrupt": False}
    main_thread = threading.current_thread() is threading.main_thread()
    own = main_thread and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if not own:  # not the main thread, or SIGINT is ignored / handled by someone else
        yield seen
        return

    def on_interrupt(signum, frame):
        seen["interrupt"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _run(argv: list[str] | None) -> int:
    """Parse and run; usage errors come back as exceptions (standalone_mode=False), --help,
    --version and typer.Exit as the exit code."""
    with _noting_interrupts() as seen:
        try:
            result = app(args=argv, prog_name="recsys", standalone_mode=False)
        except KeyboardInterrupt:  # outside Typer's own handling (e.g. while it starts)
            seen["interrupt"], result = True, INTERRUPTED
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    if code == INTERRUPTED and seen["interrupt"]:
        typer.echo("Interrupted (Ctrl-C).", err=True)
    return code


def main(argv: list[str] | None = None) -> None:
    debug = os.environ.get("RECSYS_DEBUG") == "1"
    silence()
    try:
        code = _run(argv)
    except SystemExit:
        raise
    except typer.TyperException as exc:  # usage errors (exit code 2), found while parsing
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            typer.echo(f"Error: {usage_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
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
    sys.exit(code)


if __name__ == "__main__":
    main()
