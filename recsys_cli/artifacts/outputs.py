"""The one writer rule: every file or directory a recsys command writes goes through here.

    from recsys_cli.artifacts import outputs
    outputs.claim([outputs.Target(path, "predictions", "--out")], inputs=[data / "prompts.parquet"])
    with outputs.write_file(path, "predictions") as tmp:       # tmp: a temporary sibling of path
        df.write_parquet(tmp)                                   # renamed into place, then recorded

Ownership is provable. Each directory recsys writes into holds a ledger, `.recsys-owned.json`: for each
entry recsys wrote there, its kind (which output it is) and the sha256 of its content (a directory's
content hash covers every file under it). An existing path may be replaced only when

* the ledger names it and its content still hashes to the recorded value (a file that merely has an
  artifact's name, or that a user edited after recsys wrote it, is the user's), and
* its recorded kind is the kind being written (`baseline --out R/items.parquet` is refused: that file
  is textualize's).

That holds for --force and --overwrite too: they may replace only recsys's own outputs of the same
kind. Refusals list every blocking path and never suggest a flag that would destroy a user's file.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from recsys_cli.errors import RecsysError

LEDGER = ".recsys-owned.json"
LOCK = ".recsys.lock"
LEDGER_VERSION = 1

# kinds of output (the ledger's `kind`); one command may write several kinds
TEXTUALIZE = "textualize"
ENTITIES = "build-entities"
PREDICTIONS = "predictions"  # infer, merge-predictions (and infer's chunk files)
BASELINE_PREDICTIONS = "baseline-predictions"  # baseline --out / --valid-out: baseline_predictions(name)
BASELINE_MODEL = "baseline-model"
CHECKPOINT = "checkpoint"
REPORT = "report"  # score --markdown
PLOT = "plot"  # score --plot
RESULTS_JSON = "results-json"
TUNING = "tuning"  # recsys tune --out

_held: dict[str, int] = {}  # realpath of a locked directory -> depth, for this process
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Target:
    """One output a command is about to write: its path, its kind and the option that named it."""

    path: Path
    kind: str
    flag: str = "--out"


def baseline_predictions(name: str) -> str:
    """The kind of `recsys baseline <name>`'s predictions: another baseline's file is not its own."""
    return f"{BASELINE_PREDICTIONS}:{name}"


def is_bookkeeping(name: str) -> bool:
    """The ledger and the lock file: recsys's own, never a user's."""
    return name in (LEDGER, LOCK)


def content_sha256(path: Path) -> str:
    """sha256 of a file; for a directory, of every file under it (relative names and contents)."""
    path = Path(path)
    if path.is_file():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for sub in sorted(p for p in path.rglob("*") if p.is_file() and not is_bookkeeping(p.name)):
        digest.update(str(sub.relative_to(path)).encode() + b"\0" + _file_sha256(sub).encode() + b"\n")
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_ledger(directory: Path) -> dict[str, dict]:
    """{name: {"kind", "sha256"}} of what recsys wrote in `directory`; {} when absent or unreadable
    (then nothing there is provably recsys's, which only ever makes a command refuse more)."""
    try:
        data = json.loads((Path(directory) / LEDGER).read_text())
        entries = data.get("entries", {}) if isinstance(data, dict) else {}
        return {k: v for k, v in entries.items() if isinstance(v, dict)}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def owner_kind(path: Path) -> str | None:
    """The kind recsys recorded for `path`, if the path's content is still what recsys wrote."""
    path = Path(path)
    entry = read_ledger(path.parent).get(path.name)
    if entry is None or not path.exists():
        return None
    return entry.get("kind") if entry.get("sha256") == content_sha256(path) else None


def inside_owned(path: Path) -> str | None:
    """Why nothing may be written at `path` because of a folder above it: a file (not a folder), or
    a folder recsys recorded as one output (a checkpoint's adapter/, train_state/), whose content
    hash a new file would break. None when the folders above are free."""
    path = Path(path).absolute()
    for folder in path.parents:
        if folder.exists() and not folder.is_dir():
            return f"is inside {folder}, which is a file"
        kind = read_ledger(folder.parent).get(folder.name, {}).get("kind") if folder.name else None
        if kind is not None:
            return f"is inside {folder}, recsys's {kind} output"
    return None


def blocker(target: Target, inputs: Iterable[Path] = ()) -> str | None:
    """Why `target` may not be written, or None when it may (missing, or recsys's own of that kind)."""
    path = Path(target.path)
    resolved = path.resolve()
    for inp in inputs:
        if Path(inp).resolve() == resolved:
            return f"{target.flag} {path}: is an input of this command"
    above = inside_owned(path)
    if above is not None:
        return f"{target.flag} {path}: {above}"
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink():
        return f"{target.flag} {path}: is a symbolic link; recsys writes only files it made"
    kind = owner_kind(path)
    if kind is None:
        return f"{target.flag} {path}: exists and was not written by recsys (or was changed since)"
    if kind != target.kind:
        return f"{target.flag} {path}: is recsys's {kind} output, which this command does not write"
    return None


def claim(targets: Iterable[Target], inputs: Iterable[Path] = (), hint: str = "choose another path") -> None:
    """Refuse, before any work, every target that would replace a file recsys may not replace (or
    that two options name at once). The message lists every blocker and ends with `hint` (never a flag)."""
    inputs = list(inputs)
    problems: list[str] = []
    seen: dict[Path, str] = {}
    for t in targets:
        key = Path(t.path).resolve()
        if key in seen:
            problems.append(f"{t.flag} {t.path}: is also the output of {seen[key]}")
        elif (b := blocker(t, inputs)) is not None:
            problems.append(b)
        seen.setdefault(key, t.flag)
    if problems:
        more = "; ".join(problems)
        raise RecsysError(f"{more}; nothing was written: {hint}", exit_code=2)


def unowned(directory: Path, kind: str, names: Iterable[str] | None = None) -> list[str]:
    """Entries of `directory` (or just `names`, where they exist) that are not recsys's `kind`
    outputs with their recorded content: what a command writing `kind` there may not touch."""
    directory = Path(directory)
    if names is None:
        names = sorted(e.name for e in directory.iterdir()) if directory.is_dir() else []
    out = []
    for name in names:
        path = directory / name
        if is_bookkeeping(name) or not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or owner_kind(path) != kind:
            out.append(name)
    return out


def remove(path: Path, kind: str) -> None:
    """Delete `path` if it is recsys's own `kind` output (checked), and forget it; else refuse."""
    path = Path(path)
    if not path.exists():
        return
    _check_still_ours(path, kind)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    forget(path)


def remove_dir_if_bare(directory: Path) -> None:
    """Remove `directory` when it holds nothing but recsys's bookkeeping (a drained chunk folder)."""
    directory = Path(directory)
    if not directory.is_dir() or any(not is_bookkeeping(e.name) for e in directory.iterdir()):
        return
    for name in (LEDGER, LOCK):
        (directory / name).unlink(missing_ok=True)
    try:
        directory.rmdir()
    except OSError:
        pass  # something appeared meanwhile: left alone


@contextmanager
def dir_lock(directory: Path, what: str = "this directory", wait: bool = True) -> Iterator[None]:
    """An exclusive lock on `directory` (flock on its `.recsys.lock`), re-entrant within a process.
    With wait=False a second writer is refused at once with one line."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(directory)
    with _held_guard:
        if key in _held:
            _held[key] += 1
            fd = None
        else:
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    if fd is None:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        raise RecsysError(f"{directory}: another recsys command is writing {what}; wait for it to finish", exit_code=2)
    with _held_guard:
        _held[key] = 1
    try:
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def record(path: Path, kind: str) -> None:
    """Note in the ledger of path's directory that recsys wrote `path` (of `kind`) with its current content."""
    path = Path(path)
    directory = path.parent
    with dir_lock(directory):
        entries = read_ledger(directory)
        entries = {k: v for k, v in entries.items() if (directory / k).exists()}  # drop what was moved away
        entries[path.name] = {"kind": kind, "sha256": content_sha256(path)}
        _write_ledger(directory, entries)


def record_known(directory: Path, entries: dict[str, dict]) -> None:
    """Note several entries {name: {"kind", "sha256"}} of `directory` at once, with hashes the caller
    computed while writing them (textualize's whole run; a file recsys moved keeps its entry)."""
    directory = Path(directory)
    with dir_lock(directory):
        kept = {k: v for k, v in read_ledger(directory).items() if (directory / k).exists()}
        _write_ledger(directory, kept | {k: {"kind": v["kind"], "sha256": v["sha256"]} for k, v in entries.items()})


def _write_ledger(directory: Path, entries: dict[str, dict]) -> None:
    """Replace the ledger of `directory` atomically (the caller holds its lock)."""
    payload = {"written_by": "recsys", "version": LEDGER_VERSION, "entries": dict(sorted(entries.items()))}
    with atomic_file(Path(directory) / LEDGER) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def forget(path: Path) -> None:
    """Drop `path` from its directory's ledger (after recsys moved it away itself)."""
    path = Path(path)
    with dir_lock(path.parent):
        entries = read_ledger(path.parent)
        if entries.pop(path.name, None) is None:
            return
        _write_ledger(path.parent, entries)


def _check_still_ours(path: Path, kind: str) -> None:
    """Re-check just before the rename: a file that appeared or changed since the claim is the user's."""
    problem = blocker(Target(path, kind, "output"))
    if problem is not None:
        raise RecsysError(f"{problem}; nothing was replaced", exit_code=2)


@contextmanager
def _temp_sibling(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A new empty file beside `path` (same directory, so a rename is atomic), with the umask's
    mode; removed on the way out unless it was renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """recsys's one atomic single-file write: yield a temporary sibling to write; on success one
    rename puts it at `path`, on failure or interrupt it is removed (the old file stays whole).
    No ownership check: for files recsys keeps for itself (ledgers, result files); outputs a user
    names go through `write_file`."""
    path = Path(path)
    with _temp_sibling(path, suffix) as tmp:
        yield tmp
        os.replace(tmp, path)


@contextmanager
def write_file(path: Path, kind: str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces `path` (only if `path` is missing or
    recsys's own of `kind`) and is recorded in the ledger; on failure or interrupt the temp file is removed.
    `suffix` lets writers that choose a format by extension (matplotlib) see the right one."""
    path = Path(path)
    with _temp_sibling(path, suffix) as tmp:
        yield tmp
        with dir_lock(path.parent):
            _check_still_ours(path, kind)
            os.replace(tmp, path)
            record(path, kind)


@contextmanager
def write_dir(path: Path, kind: str) -> Iterator[Path]:
    """Like `write_file`, for a directory: build it in a temporary sibling, then swap it in. The old
    directory (recsys's own, checked) is moved aside first and removed only after the swap."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        with dir_lock(path.parent):
            _check_still_ours(path, kind)
            old = None
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", suffix=".tmp", dir=path.parent))
                os.replace(path, old / path.name)
            os.replace(tmp, path)
            record(path, kind)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str, kind: str) -> None:
    with write_file(path, kind) as tmp:
        tmp.write_text(text)


def write_json(obj: object, path: Path, kind: str) -> None:
    with write_file(path, kind) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
