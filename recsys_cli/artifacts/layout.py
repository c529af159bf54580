"""The run layout: which command owns which files of a run directory R and of a checkpoint
C, and how a command claims an output directory without ever deleting what it did not write.

    python -c "from recsys_cli.artifacts.layout import RUN_OWNERS; print(RUN_OWNERS)"

    R/ (textualize --out R)                     C/ (pretrain --out C)
      items, users, interactions, sequences,      adapter/ tokenizer/ extras.safetensors
      corpus, prompts .parquet, manifest.json     recsys_checkpoint.json metrics.jsonl
        -> textualize                             train_state/ manifest.json -> pretrain
      entities*.parquet, entities.manifest.json   predictions/<split>.parquet -> infer
        -> build-entities
      predictions/<split>/<name>.parquet, baselines/<name>.safetensors -> baseline
      stale/<fingerprint>/ -> outputs moved aside when their inputs were replaced

Rules every command follows:
* it writes only the files it owns, each through a temporary file and a rename;
* it never deletes a file it did not write; outputs that a rerun makes stale are moved
  into `stale/<old fingerprint>/` with a message, never removed;
* a directory holding anything else is refused (textualize accepts `--force`, and even then
  leaves those files alone), and an output directory may not contain its own inputs;
* textualize replaces its files only where R's ledger proves they are its own, and as one run
  (artifacts/runswap.py): an interrupt leaves the old run or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.errors import RecsysError

STALE_DIR = "stale"
RUN_OWNERS: dict[str, tuple[str, ...]] = {
    "textualize": (*schemas.TEXTUALIZE_FILES, schemas.MANIFEST),
    "build-entities": (schemas.ENTITIES, schemas.ENTITIES_MINHASH, schemas.NEAR_DUPLICATES, schemas.ENTITIES_MANIFEST),
    "baseline": (schemas.PREDICTIONS_DIR, schemas.BASELINE_MODELS_DIR),
}
CKPT_OWNERS: dict[str, tuple[str, ...]] = {
    "pretrain": (
        schemas.CKPT_ADAPTER,
        schemas.CKPT_TOKENIZER,
        schemas.CKPT_EXTRAS,
        schemas.CKPT_CONFIG,
        schemas.CKPT_METRICS,
        schemas.CKPT_STATE,
        schemas.MANIFEST,
    ),
    "infer": (schemas.PREDICTIONS_DIR,),
}
# what goes stale when textualize replaces R's data (everything computed from it)
DOWNSTREAM_OF_DATA = RUN_OWNERS["build-entities"] + RUN_OWNERS["baseline"]


def _is_temp(name: str) -> bool:
    """Leftovers of our own atomic writes (.<name>.<random>.tmp files and directories)."""
    return name.startswith(".") and name.endswith(".tmp")


def owned_names(owners: dict[str, tuple[str, ...]]) -> set[str]:
    return {n for names in owners.values() for n in names} | {STALE_DIR}


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / schemas.CKPT_CONFIG).is_file()


def is_run_dir(path: Path) -> bool:
    """R holds a manifest.json written by `recsys textualize`."""
    f = Path(path) / schemas.MANIFEST
    if not f.is_file():
        return False
    try:
        return str(json.loads(f.read_text()).get("command", "")).startswith("textualize")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return False


def foreign_entries(path: Path, owners: dict[str, tuple[str, ...]]) -> list[str]:
    """Entries of `path` that no recsys command owns (a checkpoint directory inside a run
    directory counts as recsys's)."""
    names = owned_names(owners)
    out = []
    for entry in sorted(Path(path).iterdir()):
        if entry.name in names or _is_temp(entry.name) or outputs.is_bookkeeping(entry.name):
            continue
        if entry.is_dir() and (is_checkpoint(entry) or is_run_dir(entry)):
            continue
        out.append(entry.name)
    return out


def check_not_inside(out: Path, inputs: Iterable[Path], flag: str = "--out") -> None:
    """An output directory may not equal or contain an input file."""
    o = Path(out).resolve()
    for p in inputs:
        q = Path(p).resolve()
        if q == o or o in q.parents:
            raise RecsysError(
                f"{flag} {out}: contains the input {p}; choose an output directory outside the inputs", exit_code=2
            )


def move_aside(root: Path, names: Iterable[str], tag: str) -> list[str]:
    """Move the existing `names` of `root` into root/stale/<tag>/ (never deleting anything);
    returns what was moved, as paths relative to root. A ledger entry moves along (a rename keeps
    the content, so its recorded hash still proves the file is recsys's there)."""
    moved = []
    for name in names:
        src = Path(root) / name
        if not src.exists():
            continue
        dest_dir = Path(root) / STALE_DIR / tag
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest, k = dest_dir / name, 1
        while dest.exists():
            dest, k = dest_dir / f"{name}.{k}", k + 1
        entry = outputs.read_ledger(Path(root)).get(name)
        os.replace(src, dest)
        if entry is not None:
            outputs.forget(src)
            outputs.record_known(dest_dir, {dest.name: entry})
        moved.append(str(dest.relative_to(root)))
    return moved


def check_run_out(out: Path, inputs: Iterable[Path]) -> None:
    """What textualize checks before it locks --out: a directory or nothing yet, holding none of
    its inputs, and not inside another command's output."""
    out = Path(out)
    check_not_inside(out, inputs)
    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: exists and is not a directory; choose another path", exit_code=2)
    above = outputs.inside_owned(out)
    if above is not None:
        raise RecsysError(f"--out {out}: {above}; choose another directory", exit_code=2)


def claim_run_dir(out: Path, inputs: Iterable[Path], force: bool) -> str:
    """Before textualize writes R (holding R's lock). Returns 'new', 'rerun' or 'forced'.
    * A file with one of textualize's names (the six tables, manifest.json) is replaced only when
      R's ledger proves it is textualize's own (artifacts/outputs.py). Anything else under those
      names, a user's file or a run from a recsys that kept no ledger, is refused even with
      --force, and no flag is suggested.
    * Other files the run layout does not know are refused unless --force, and then left alone.
    Every refusal lists every file that blocks."""
    out = Path(out)
    check_run_out(out, inputs)
    if not out.is_dir():
        return "new"
    present = [n for n in RUN_OWNERS["textualize"] if (out / n).exists() or (out / n).is_symlink()]
    theirs = outputs.unowned(out, outputs.TEXTUALIZE, present)
    foreign = foreign_entries(out, RUN_OWNERS)
    if theirs:
        blocking = ", ".join(sorted(set(theirs) | (set() if force else set(foreign))))
        legacy = is_run_dir(out) and schemas.MANIFEST not in outputs.read_ledger(out)
        what = (
            "a run from an older recsys, which kept no record of the files it wrote"
            if legacy
            else "files with recsys artifact names that recsys did not write (or that changed since)"
        )
        raise RecsysError(
            f"--out {out}: holds {what} ({blocking}); recsys never replaces them and nothing was "
            "written: textualize into a new directory",
            exit_code=2,
        )
    if foreign and not force:
        raise RecsysError(
            f"--out {out}: holds files that are not part of a recsys run ({', '.join(foreign)}); nothing "
            "was written: choose an empty directory, or pass --force to write beside them (they are "
            "left untouched)",
            exit_code=2,
        )
    return "forced" if foreign else ("rerun" if present else "new")


def retire_downstream(out: Path, old_fingerprint: str | None, new_fingerprint: str | None) -> list[str]:
    """After textualize replaced R's data: when it changed, move what was computed from the
    old data (entities, baseline predictions) into stale/<old fingerprint>/."""
    if old_fingerprint is None or old_fingerprint == new_fingerprint:
        return []
    return move_aside(out, DOWNSTREAM_OF_DATA, old_fingerprint[:12])


def claim_checkpoint_dir(out: Path, resume: bool, overwrite: bool, inputs: Iterable[Path] = ()) -> str:
    """Before pretrain writes C: 'new' (missing, empty, or no checkpoint in it yet), 'resume' or
    'overwrite'. Every entry of C must be recsys's: pretrain's files recorded in C's ledger as
    `checkpoint` outputs with their content (artifacts/outputs.py), infer's predictions/, stale/.
    Anything else is listed and refused; no flag ever touches it, so none is suggested."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: exists and is not a directory; choose another path", exit_code=2)
    if resume and overwrite:
        raise RecsysError("--resume and --overwrite exclude each other", exit_code=2)
    check_not_inside(out, inputs)
    above = outputs.inside_owned(out)
    if above is not None:
        raise RecsysError(f"--out {out}: {above}; choose another directory", exit_code=2)
    ckpt_names = CKPT_OWNERS["pretrain"]
    present = [n for n in ckpt_names if (out / n).exists() or (out / n).is_symlink()]
    foreign = foreign_entries(out, CKPT_OWNERS) if out.is_dir() else []
    blocking = sorted(foreign + outputs.unowned(out, outputs.CHECKPOINT, present))
    if blocking:
        raise RecsysError(
            f"--out {out}: holds files recsys's pretrain did not write, or that changed since "
            f"({', '.join(blocking)}); nothing was written: choose another directory (recsys never replaces "
            "them)",
            exit_code=2,
        )
    if not present:
        if resume:
            raise RecsysError(
                f"{out}: nothing to resume (no checkpoint there); drop --resume to start fresh", exit_code=2
            )
        return "new"
    if resume:
        return "resume"
    if not overwrite:
        step = _step_of(out)
        raise RecsysError(
            f"--out {out}: already holds a trained checkpoint{step}; "
            "pass --resume to continue it or --overwrite to replace it",
            exit_code=2,
        )
    return "overwrite"


def _step_of(ckpt: Path) -> str:
    try:
        return f" (step {json.loads((ckpt / schemas.CKPT_CONFIG).read_text())['step']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
