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
  leaves those files alone), and an output directory may not contain its own inputs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from recsys_cli.artifacts import schemas
from recsys_cli.errors import RecsysError

STALE_DIR = "stale"
RUN_OWNERS: dict[str, tuple[str, ...]] = {
    "textualize": (*schemas.TEXTUALIZE_FILES, schemas.MANIFEST),
    "build-entities": (schemas.ENTITIES, schemas.ENTITIES_MINHASH, schemas.NEAR_DUPLICATES, schemas.ENTITIES_MANIFEST),
    "baseline": (schemas.PREDICTIONS_DIR, schemas.BASELINE_MODELS_DIR),
}
CKPT_OWNERS: dict[str, tuple[str, ...]] = {
    "pretrain": (schemas.CKPT_ADAPTER, schemas.CKPT_TOKENIZER, schemas.CKPT_EXTRAS, schemas.CKPT_CONFIG,
                 schemas.CKPT_METRICS, schemas.CKPT_STATE, schemas.MANIFEST),
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
        if entry.name in names or _is_temp(entry.name):
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
            raise RecsysError(f"{flag} {out}: contains the input {p}; choose an output directory outside the inputs", exit_code=2)


def move_aside(root: Path, names: Iterable[str], tag: str) -> list[str]:
    """Move the existing `names` of `root` into root/stale/<tag>/ (never deleting anything);
    returns what was moved, as paths relative to root."""
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
        os.replace(src, dest)
        moved.append(str(dest.relative_to(root)))
    return moved


def claim_run_dir(out: Path, inputs: Iterable[Path], force: bool) -> str:
    """Before textualize writes R: R is new or empty, or a recsys run directory (only
    textualize's files get replaced), or holds other files (refused unless `force`, and
    even then they are left alone). Returns 'new', 'rerun' or 'forced'."""
    out = Path(out)
    check_not_inside(out, inputs)
    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: exists and is not a directory", exit_code=2)
    if not out.exists() or not any(out.iterdir()):
        return "new"
    foreign = foreign_entries(out, RUN_OWNERS)
    has_run = is_run_dir(out)
    if foreign and not force:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        what = "files recsys did not write" if has_run else "files that are not a recsys run directory"
        raise RecsysError(f"--out {out}: holds {what} ({shown}); choose an empty directory, or pass --force to write beside them (they are never deleted)", exit_code=2)
    if not has_run and any((out / n).exists() for n in RUN_OWNERS["textualize"]):
        if not force:
            raise RecsysError(f"--out {out}: holds artifact-named files without a recsys manifest.json; pass --force to replace them", exit_code=2)
    return "forced" if foreign else "rerun"


def retire_downstream(out: Path, old_fingerprint: str | None, new_fingerprint: str | None) -> list[str]:
    """After textualize replaced R's data: when it changed, move what was computed from the
    old data (entities, baseline predictions) into stale/<old fingerprint>/."""
    if old_fingerprint is None or old_fingerprint == new_fingerprint:
        return []
    return move_aside(out, DOWNSTREAM_OF_DATA, old_fingerprint[:12])


def claim_checkpoint_dir(out: Path, resume: bool, overwrite: bool) -> str:
    """Before pretrain writes C: 'new' (missing or empty), 'resume' or 'overwrite'. A trained
    checkpoint is never replaced without --overwrite; other files make C unusable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RecsysError(f"--out {out}: exists and is not a directory", exit_code=2)
    if resume and overwrite:
        raise RecsysError("--resume and --overwrite exclude each other", exit_code=2)
    empty = not out.exists() or not any(out.iterdir())
    if empty:
        if resume:
            raise RecsysError(f"{out}: nothing to resume (no checkpoint there); drop --resume to start fresh", exit_code=2)
        return "new"
    foreign = foreign_entries(out, CKPT_OWNERS)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise RecsysError(f"--out {out}: holds files that are not part of a recsys checkpoint ({shown}); choose another directory", exit_code=2)
    if resume:
        return "resume"
    if not overwrite:
        step = _step_of(out)
        raise RecsysError(f"--out {out}: already holds a trained checkpoint{step}; pass --resume to continue it or --overwrite to replace it", exit_code=2)
    return "overwrite"


def _step_of(ckpt: Path) -> str:
    try:
        return f" (step {json.loads((ckpt / schemas.CKPT_CONFIG).read_text())['step']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""
