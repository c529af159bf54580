"""Whole-run replacement for textualize: an interrupt leaves the complete old run or the complete
new one in R, never a mix, and no temporary file.

    with runswap.locked_run_dir(out):               # one writer per R; a new R is removed on failure
        with runswap.staged(out) as stage:          # R/.textualize.<random>.tmp/, removed in any case
            ...write every file into stage...
            runswap.commit(out, stage, {name: sha256})

`commit` re-checks that each file it replaces is still recsys's (artifacts/outputs.py), then,
with SIGINT and SIGTERM held back, moves the old files into the stage (manifest.json first),
the new ones into R (manifest.json last) and records them in R's ledger. Renames within one
filesystem take microseconds; a failing rename puts everything back. A signal that came meanwhile
is delivered afterwards: Ctrl-C still exits 130, with the new run complete. Only a hard kill in
those microseconds can leave a mix, and readers refuse one: manifest.json records every file's
sha256 (artifacts/io.py `check_run_file`).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.errors import RecsysError

STAGE_PREFIX = ".textualize."
_HELD = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few renames; deliver the first that came afterwards to
    the handler that was in place (Ctrl-C then raises KeyboardInterrupt as usual)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    before = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in _HELD}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if came:
            _deliver(came[0], before[signal.Signals(came[0])])


def _deliver(signum: int, handler) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


@contextmanager
def terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) instead of killing the process at once, so that the
    `finally` clauses remove the stage and release the lock (SIGINT already raises)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise SystemExit(128 + signal.SIGTERM)

    before = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextmanager
def locked_run_dir(out: Path) -> Iterator[None]:
    """R's lock (outputs.dir_lock, wait=False: a second writer is refused with one line). When the
    run fails or is interrupted, what this call created goes again: R itself, or its lock file."""
    out = Path(out)
    created_dir, created_lock = not out.exists(), not (out / outputs.LOCK).exists()
    locked = False
    with ExitStack() as held:
        try:
            with deferred_signals():  # no Ctrl-C between making R and knowing that this call holds it
                held.enter_context(outputs.dir_lock(out, "this run directory", wait=False))
                locked = True
            yield
        except BaseException:
            if locked:
                with deferred_signals():
                    if created_dir:
                        outputs.remove_dir_if_bare(out)
                    elif created_lock:
                        (out / outputs.LOCK).unlink(missing_ok=True)
            raise


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh stage directory inside R (same filesystem, so commit only renames), removed when
    the block ends however it ends; a signal cannot fall between its creation and the cleanup."""
    made: list[Path] = []
    try:
        with deferred_signals():
            made.append(Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, suffix=".tmp", dir=out)))
        yield made[0]
    finally:
        if made:
            with deferred_signals():
                shutil.rmtree(made[0], ignore_errors=True)


def commit(out: Path, stage: Path, hashes: dict[str, str], then: Callable[[], T] | None = None) -> T | None:
    """Swap the staged files `hashes` ({name: sha256}, manifest.json among them) into R and record
    them as textualize's; `then()` runs in the same signal-free window (moving stale outputs)."""
    out, stage = Path(out), Path(stage)
    names = sorted(hashes, key=lambda n: n == schemas.MANIFEST)  # the manifest last
    blocking = outputs.unowned(out, outputs.TEXTUALIZE, names)  # appeared or changed since the claim
    if blocking:
        raise RecsysError(
            f"--out {out}: {', '.join(blocking)} appeared or changed while textualize ran; "
            "nothing was replaced: choose another directory",
            exit_code=2,
        )
    old = stage / ".replaced"
    old.mkdir()
    with deferred_signals():
        _swap(out, stage, old, names)
        outputs.record_known(out, {n: {"kind": outputs.TEXTUALIZE, "sha256": hashes[n]} for n in names})
        return then() if then is not None else None


def _swap(out: Path, stage: Path, old: Path, names: list[str]) -> None:
    """Old files out (manifest first), new files in (manifest last); on any error, undo."""
    taken, placed = [], []
    try:
        for name in reversed(names):
            if (out / name).exists() or (out / name).is_symlink():
                os.replace(out / name, old / name)
                taken.append(name)
        for name in names:
            os.replace(stage / name, out / name)
            placed.append(name)
    except BaseException:
        for name in reversed(placed):
            os.replace(out / name, stage / name)
        for name in taken:
            os.replace(old / name, out / name)
        raise
