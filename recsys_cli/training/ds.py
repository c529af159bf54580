"""DeepSpeed integration: ZeRO-2/3 with the torch AdamW (no C++ op compiles).

Several GPUs (one process per GPU):
    deepspeed --num_gpus 8 -m recsys_cli.main pretrain --data R --config recipes/pretrain/paper-multi-gpu.yaml
    torchrun --nproc_per_node 8 -m recsys_cli.main pretrain --data R --config recipes/pretrain/paper-multi-gpu.yaml
Single process on CPU (what CI tests): recsys pretrain ... --deepspeed recipes/deepspeed/zero2.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from recsys_cli.errors import InputError, RecsysError


def read_config(path: str | Path, recipe, bf16: bool) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: DeepSpeed config not found (shipped: recipes/deepspeed/zero2.json, zero3.json)", exit_code=2)
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError.at(path, exc.lineno, f"invalid JSON ({exc.msg})")
    cfg["train_micro_batch_size_per_gpu"] = recipe.train.batch_size
    cfg["gradient_accumulation_steps"] = recipe.train.grad_accum
    cfg.pop("train_batch_size", None)
    cfg.setdefault("gradient_clipping", recipe.train.max_grad_norm)
    cfg["bf16"] = {"enabled": bool(bf16)}
    cfg.setdefault("steps_per_print", 10**9)
    cfg.setdefault("wall_clock_breakdown", False)
    return cfg


def init_distributed(device: str) -> None:
    """One process without a launcher gets a world of size 1; on CPU use gloo and skip the
    shared-memory comm op (a ~50 s C++ compile that a gloo world does not need)."""
    import deepspeed

    for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(k, v)
    if "MASTER_PORT" not in os.environ:
        import socket

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
    return int(config.get("zero_optimization", {}).get("stage", 0))


def gathered(lm, config: dict):
    """Context in which ZeRO-3 partitioned parameters are whole (for saving)."""
    import contextlib

    if zero_stage(config) < 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(list(lm.parameters()), modifier_rank=None)
