"""DeepSpeed integration: ZeRO-2/3 with the torch AdamW (no C++ op compiles), and its resume
state without pickles.

Several GPUs (one process per GPU; docs/distributed.md):
    deepspeed --num_gpus 8 --module recsys_cli.main pretrain --data R --config recipes/pretrain/paper-multi-gpu.yaml
    torchrun --nproc_per_node 8 -m recsys_cli.main pretrain --data R --config recipes/pretrain/paper-multi-gpu.yaml
On CPU (what the tests run, gloo): recsys pretrain ... --deepspeed recipes/deepspeed/zero3.json

The recipe owns the batch, accumulation, clipping and precision; the JSON only the ZeRO
settings. DeepSpeed's engine.save_checkpoint/load_checkpoint are not used: load_checkpoint
unpickles (torch.load(weights_only=False)). Each rank instead saves its ZeRO optimizer's own
state_dict() reduced to tensors and plain Python values (`optimizer_state`), which loads back
with torch.load(weights_only=True) into the optimizer's own load_state_dict().
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from enum import Enum
from pathlib import Path

import torch

from recsys_cli.errors import InputError, RecsysError

LOSS_SCALER = "loss_scaler"  # an object in DeepSpeed's state: saved as its plain attributes
# universal-checkpoint bookkeeping (objects, unused by a same-world load_state_dict)
DROPPED = ("param_slice_mappings", "universal_checkpoint_info")
COUNTERS = ("global_steps", "global_samples", "skipped_steps", "micro_steps")


def read_config(path: str | Path, recipe, bf16: bool) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecsysError(
            f"{path}: DeepSpeed config not found (shipped: recipes/deepspeed/zero2.json, zero3.json)", exit_code=2
        )
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError.at(path, exc.lineno, f"invalid JSON ({exc.msg})")
    if not isinstance(cfg, dict) or zero_stage(cfg) not in (1, 2, 3):
        raise InputError.at(
            path,
            None,
            "a DeepSpeed config with zero_optimization.stage 1, 2 or 3 (without ZeRO, leave out --deepspeed: "
            "torchrun then trains with DDP)",
        )
    cfg["train_micro_batch_size_per_gpu"] = recipe.train.batch_size
    cfg["gradient_accumulation_steps"] = recipe.train.grad_accum
    cfg.pop("train_batch_size", None)
    cfg["gradient_clipping"] = recipe.train.max_grad_norm  # train.max_grad_norm, as without DeepSpeed
    cfg["bf16"] = {"enabled": bool(bf16)}
    cfg.setdefault("steps_per_print", 10**9)
    cfg.setdefault("wall_clock_breakdown", False)
    return cfg


def init_distributed(device: str) -> None:
    """One process without a launcher gets a world of size 1; on CPU use gloo and skip the
    shared-memory comm op (a ~50 s C++ compile that a gloo world does not need)."""

    import deepspeed

    # DeepSpeed's ZeRO calls torch collectives that torch 2.13 renamed; nothing for a user to do
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if device == "cpu":
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder

        deepspeed.ops.__compatible_ops__[ShareMemCommBuilder.NAME] = False
    deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl")


def initialize(lm, optimizer, config: dict, device: str):
    """-> DeepSpeed engine wrapping `lm` and the client torch optimizer."""
    import deepspeed

    init_distributed(device)
    engine, _, _, _ = deepspeed.initialize(model=lm, optimizer=optimizer, config=config)
    return engine


def zero_stage(config: dict) -> int:
    """zero_optimization.stage (0 when absent, -1 when not a number)."""
    z = config.get("zero_optimization", {})
    stage = z.get("stage", 0) if isinstance(z, dict) else None
    return stage if type(stage) is int else -1


def gathered(lm, config: dict):
    """Context in which the tensors a checkpoint exports are whole on every rank: the
    trainable ones and the input embedding (its new-token rows). ZeRO-3 partitions them;
    entering is collective (every rank), ZeRO-2 keeps them whole (nothing to do)."""
    if zero_stage(config) < 3:
        return contextlib.nullcontext()
    import deepspeed

    params = [p for p in lm.parameters() if p.requires_grad]
    seen = {id(p) for p in params}
    params += [p for p in lm.base.get_input_embeddings().parameters() if id(p) not in seen]
    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def _plain(obj, where: str):
    """Tensors and plain Python values (what torch.load(weights_only=True) accepts), with
    enums as their values; anything else is an error naming its place in the state."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, Enum):
        return obj.value
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if type(obj) in (list, tuple):
        return type(obj)(_plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in obj.items()}
    raise RecsysError(
        f"DeepSpeed optimizer state {where} is a {type(obj).__name__}; recsys saves only tensors and plain values "
        "(unsupported DeepSpeed version?)"
    )


def optimizer_state(engine) -> dict:
    """This rank's ZeRO optimizer state (its partition of the fp32 master weights and of the
    AdamW moments, loss scale, paddings) + the engine's step counters, pickle-free."""
    sd = dict(engine.optimizer.state_dict())
    scaler = sd.pop(LOSS_SCALER, None)
    for k in DROPPED:
        sd.pop(k, None)
    out = {"zero": _plain(sd, "state_dict")}
    out["loss_scaler"] = (
        {k: v for k, v in vars(scaler).items() if v is None or type(v) in (bool, int, float)}
        if scaler is not None
        else {}
    )
    out["counters"] = {k: int(getattr(engine, k)) for k in COUNTERS}
    return out


def load_optimizer_state(engine, state: dict) -> None:
    """Inverse of `optimizer_state` on the same world size: the ZeRO optimizer's own
    load_state_dict (fp32 masters from the saved partition, not from the model weights)."""
    import deepspeed.comm as dcomm

    opt = engine.optimizer
    sd = dict(state["zero"])
    for k, v in state["loss_scaler"].items():
        setattr(opt.loss_scaler, k, v)
    sd[LOSS_SCALER] = opt.loss_scaler
    per_rank = [None] * dcomm.get_world_size()
    per_rank[dcomm.get_rank(group=opt.dp_process_group)] = sd
    opt.load_state_dict(per_rank, load_optimizer_states=True, load_from_fp32_weights=True)
    for k, v in state["counters"].items():
        setattr(engine, k, v)
