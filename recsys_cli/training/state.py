"""Exact resume state for `pretrain --resume` (C/train_state/), written by every rank together:

    trainable.safetensors   rank 0: every trainable tensor, whole (gathered under ZeRO-3)
    rank-<r>.pt             rank r: its optimizer state (torch AdamW, or its ZeRO partition,
                            training/ds.py) and RNG; tensors and plain values only, read with
                            torch.load(weights_only=True): nothing is unpickled
    state.json              rank 0, last: step, world size, engine, sha256 of every file

All ranks write into one temporary directory beside it, which rank 0 then swaps in, so a kill
at any moment leaves the previous complete state. C must be on a filesystem every rank sees.

    python -c "from recsys_cli.training.state import read_step; print(read_step('runs/ckpt'))"
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from recsys_cli.artifacts import layout, outputs, schemas
from recsys_cli.artifacts.checkpoint import CheckpointConfig
from recsys_cli.artifacts.io import data_fingerprint, require
from recsys_cli.console import log
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.registry import resolve_model
from recsys_cli.training import dist

WEIGHTS = "trainable.safetensors"
RANK_FILE = "rank-{}.pt"
META = "state.json"
FORMAT = 2


def _old(out: Path) -> Path:
    return Path(out) / f".{schemas.CKPT_STATE}.old.tmp"


def state_dir(out: Path) -> Path:
    """C/train_state; after a kill between the two renames of a swap, the previous state."""
    d, old = Path(out) / schemas.CKPT_STATE, _old(out)
    return old if not d.exists() and (old / META).is_file() else d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_state(out: Path, step: int, weights: dict | None, optimizer: dict, engine: str) -> None:
    """Collective: every rank passes its optimizer state (torch state_dict or ds.optimizer_state;
    its RNG is added here), rank 0 also `weights` (name -> whole tensor)."""
    rank_state = {"optimizer": optimizer, "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        rank_state["cuda_rng"] = torch.cuda.get_rng_state()
    out, main = Path(out), dist.is_main()
    final, tmp = out / schemas.CKPT_STATE, out / f".{schemas.CKPT_STATE}.new.tmp"
    if main:
        if not final.exists() and (_old(out) / META).is_file():  # finish a swap cut short
            os.replace(_old(out), final)
        shutil.rmtree(tmp, ignore_errors=True)  # a save cut short earlier
        tmp.mkdir(parents=True)
    dist.barrier()
    torch.save(rank_state, tmp / RANK_FILE.format(dist.rank()))
    if main:
        empty = [n for n, w in weights.items() if w.numel() == 0]
        if empty:  # a ZeRO-3 placeholder instead of the gathered tensor: a bug, never a silent loss
            raise RecsysError(
                f"internal: trainable tensor {empty[0]} is empty (partitioned) at save; the resume state was not "
                "written"
            )
        save_file(weights, str(tmp / WEIGHTS))
    dist.barrier()
    if main:
        names = [WEIGHTS] + [RANK_FILE.format(r) for r in range(dist.world())]
        missing = [n for n in names if not (tmp / n).is_file()]
        if missing:
            raise RecsysError(
                f"{tmp}: {missing} missing after every rank saved; --out must be on a filesystem all ranks (nodes) "
                "share"
            )
        meta = {
            "format": FORMAT,
            "step": step,
            "world_size": dist.world(),
            "engine": engine,
            "sha256": {n: _sha256(tmp / n) for n in names},
        }
        (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
        outputs.claim([outputs.Target(final, outputs.CHECKPOINT, "--out")])  # still recsys's own state
        shutil.rmtree(_old(out), ignore_errors=True)
        if final.exists():
            os.replace(final, _old(out))
        os.replace(tmp, final)
        outputs.record(final, outputs.CHECKPOINT)  # in C's ledger, like every checkpoint entry
        shutil.rmtree(_old(out), ignore_errors=True)
    dist.barrier()


def _meta(out: Path) -> dict:
    f = state_dir(out) / META
    if not f.is_file():
        raise RecsysError(
            f"{out}: nothing to resume (no {schemas.CKPT_STATE}/{META}); drop --resume to start fresh", exit_code=2
        )
    try:
        return json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        raise RecsysError(
            f"{f}: not readable JSON; the resume state is damaged (start again with --overwrite)", exit_code=2
        )


def read_step(out: Path) -> int:
    return int(_meta(out)["step"])


def _checked(d: Path, name: str, meta: dict) -> Path:
    """`name` in d, refused unless its sha256 is the one recorded when recsys saved it."""
    f = d / name
    want = meta.get("sha256", {}).get(name)
    if not f.is_file() or want is None or _sha256(f) != want:
        raise RecsysError(
            f"{f}: missing or not the file recsys saved (sha256 differs from {META}); resume refused", exit_code=2
        )
    return f


def load_state(out: Path, engine: str) -> tuple[int, dict, dict]:
    """-> (step, trainable weights, this rank's optimizer state) and this rank's RNG restored,
    after checking that the same kind of run (engine, number of ranks) wrote it and that
    every file is the one it wrote."""
    meta, d = _meta(out), state_dir(out)
    if meta.get("format") != FORMAT:
        raise RecsysError(
            f"{d / META}: resume state of another recsys version (format {meta.get('format')!r}, this one reads "
            f"{FORMAT}); start again with --overwrite",
            exit_code=2,
        )
    was = (meta["engine"], meta["world_size"])
    if was != (engine, dist.world()):
        raise RecsysError(
            f"{d}: saved by {was[1]} process(es) with {was[0]}; this run is {dist.world()} with {engine}: resume "
            "with the same launcher, process count and --deepspeed config",
            exit_code=2,
        )
    weights = load_file(str(_checked(d, WEIGHTS, meta)))
    # on the CPU: the optimizer's load_state_dict moves each moment to its parameter's device
    rank_state = torch.load(_checked(d, RANK_FILE.format(dist.rank()), meta), weights_only=True, map_location="cpu")
    torch.set_rng_state(rank_state["rng"])
    if "cuda_rng" in rank_state and torch.cuda.is_available():
        torch.cuda.set_rng_state(rank_state["cuda_rng"])
    return int(meta["step"]), weights, rank_state["optimizer"]


def apply_weights(lm, weights: dict, out: Path, partitioned: bool = False) -> None:
    """Copy the saved trainable tensors into `lm` (checked: names and shapes). `partitioned`
    (ZeRO-3): only checked against the full shapes; the ZeRO state restores the partitions."""
    where = Path(out) / schemas.CKPT_STATE / WEIGHTS
    params = dict(lm.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise RecsysError(
            f"{where}: lacks {len(missing)} trainable tensors (e.g. {missing[0]}); the recipe changed since it was "
            "saved"
        )
    with torch.no_grad():
        for n, w in weights.items():
            shape = tuple(getattr(params[n], "ds_shape" if partitioned else "shape")) if n in params else None
            if shape != tuple(w.shape):
                raise RecsysError(f"{where}: tensor {n} does not fit this model (changed LoRA rank or model?)")
            if not partitioned:
                params[n].copy_(w.to(params[n].dtype))


def _flat(recipe: dict) -> dict:
    return {f"{s}.{k}": v for s, sec in recipe.items() if isinstance(sec, dict) for k, v in sec.items()}


def check_resume(out: Path, recipe, data_fp: str | None, base_fp: str, allow: list[str]) -> None:
    """`--resume` continues only the run that wrote C: same data (textualize manifest hash),
    same base model and the same recipe, except the keys named in `allow` ('data' accepts
    other data). The error names every field that differs."""
    cfg = CheckpointConfig.read(out)
    read_step(out)  # train_state must exist
    diffs = []
    if cfg.data_fingerprint != data_fp and "data" not in allow:
        diffs.append(f"data (manifest sha256 {str(cfg.data_fingerprint)[:12]} -> {str(data_fp)[:12]})")
    if cfg.base_fingerprint != base_fp:
        diffs.append(f"base model ({cfg.base_model!r}, fingerprint {cfg.base_fingerprint} -> {base_fp})")
    old, new = _flat(cfg.recipe), recipe.flat()
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key) and key not in allow:
            diffs.append(f"{key} ({old.get(key)!r} -> {new.get(key)!r})")
    if diffs:
        raise RecsysError(
            f"{out / schemas.CKPT_CONFIG}: --resume needs the settings the checkpoint was trained with; changed: "
            + "; ".join(diffs)
            + " (pass --allow-changed KEY to accept a change, e.g. --allow-changed train.max_steps)",
            exit_code=2,
        )


def claim_output(
    out: Path, r, data_dir: Path, resume: bool, overwrite: bool, allow: list[str], main: bool = True
) -> list[str]:
    """Checks on C before the (slow) model load: never replace a trained checkpoint without
    --overwrite, resume only the same run (training/state.check_resume). With --overwrite the
    old predictions under C are moved into C/stale/ (returned) by the main process only."""
    require(data_dir, schemas.CORPUS, schemas.PROMPTS)
    inputs = [Path(data_dir) / n for n in (*schemas.TEXTUALIZE_FILES, schemas.MANIFEST)]
    mode = layout.claim_checkpoint_dir(out, resume, overwrite, inputs)
    if mode == "resume":
        check_resume(out, r, data_fingerprint(data_dir), resolve_model(r.model.name).fingerprint, allow)
    if mode == "overwrite" and main:
        moved = layout.move_aside(
            out,
            layout.CKPT_OWNERS["infer"],
            "overwritten" + layout._step_of(out).replace(" (step ", "-step-").rstrip(")"),
        )
        if moved:
            log(f"pretrain --overwrite: moved the old checkpoint's predictions aside: {', '.join(moved)}")
        return moved
    return []
