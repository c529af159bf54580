"""Exact resume state for `pretrain --resume` (C/train_state/): trainable weights (safetensors),
optimizer state + torch RNG (torch.save, read back with weights_only=True) and the step.

    python -c "from recsys_cli.training.state import read_step; print(read_step('runs/ckpt'))"
"""

from __future__ import annotations

import json
from pathlib import Path

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import atomic_dir
from recsys_cli.errors import RecsysError

WEIGHTS = "trainable.safetensors"
OPTIM = "optimizer.pt"
META = "state.json"


def save_state(out: Path, lm, optimizer, step: int, rng_state, engine=None) -> None:
    import torch
    from safetensors.torch import save_file

    with atomic_dir(Path(out) / schemas.CKPT_STATE) as tmp:
        weights = {n: p.detach().float().contiguous().cpu() for n, p in lm.named_parameters() if p.requires_grad}
        save_file(weights, str(tmp / WEIGHTS))
        if engine is not None:  # DeepSpeed keeps (partitioned) optimizer state itself
            engine.save_checkpoint(str(tmp / "deepspeed"), tag="last")
        else:
            torch.save({"optimizer": optimizer.state_dict(), "rng": rng_state}, tmp / OPTIM)
        (tmp / META).write_text(json.dumps({"step": step, "deepspeed": engine is not None}) + "\n")


def read_step(out: Path) -> int:
    f = Path(out) / schemas.CKPT_STATE / META
    if not f.is_file():
        raise RecsysError(f"{out}: nothing to resume (no {schemas.CKPT_STATE}/{META}); drop --resume to start fresh", exit_code=2)
    return int(json.loads(f.read_text())["step"])


def load_state(out: Path, lm, optimizer, engine=None) -> int:
    """Restore weights, optimizer and RNG in place; returns the step to continue from."""
    import torch
    from safetensors.torch import load_file

    d = Path(out) / schemas.CKPT_STATE
    step = read_step(out)
    weights = load_file(str(d / WEIGHTS))
    params = dict(lm.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise RecsysError(f"{d / WEIGHTS}: lacks {len(missing)} trainable tensors (e.g. {missing[0]}); the recipe changed since it was saved")
    with torch.no_grad():
        for n, w in weights.items():
            if n not in params or params[n].shape != w.shape:
                raise RecsysError(f"{d / WEIGHTS}: tensor {n} does not fit this model (changed LoRA rank or model?)")
            params[n].copy_(w.to(params[n].dtype))
    if engine is not None:
        engine.load_checkpoint(str(d / "deepspeed"), tag="last", load_module_strict=False)
    else:
        st = torch.load(d / OPTIM, weights_only=True)
        optimizer.load_state_dict(st["optimizer"])
        torch.set_rng_state(st["rng"])
    return step


def _flat(recipe: dict) -> dict:
    return {f"{s}.{k}": v for s, sec in recipe.items() if isinstance(sec, dict) for k, v in sec.items()}


def check_resume(out: Path, recipe, data_fp: str | None, base_fp: str, allow: list[str]) -> None:
    """`--resume` continues only the run that wrote C: same data (textualize manifest hash),
    same base model and the same recipe, except the keys named in `allow` ('data' accepts
    other data). The error names every field that differs."""
    from recsys_cli.artifacts.checkpoint import CheckpointConfig

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
            + "; ".join(diffs) + " (pass --allow-changed KEY to accept a change, e.g. --allow-changed train.max_steps)",
            exit_code=2,
        )
