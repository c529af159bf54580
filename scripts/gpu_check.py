"""Checks for scripts/gpu-check.sh, run with the machine's own python (no install needed:
PYTHONPATH holds the repository).

    python scripts/gpu_check.py cuda                 # exit 2 with one line unless a CUDA GPU is visible
    python scripts/gpu_check.py rows FILE N          # FILE is a predictions parquet with N rows
    python scripts/gpu_check.py ckpt DIR STEP        # a complete checkpoint at STEP, files as recorded
    python scripts/gpu_check.py embedded             # the embedded model resolves (converted once)
    python scripts/gpu_check.py deepspeed            # deepspeed imports (exit 3 if not)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cuda() -> int:
    try:
        import torch
    except ImportError as exc:
        print(f"gpu-check: {sys.executable} cannot import torch ({exc}); nothing was run", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(
            f"gpu-check: no CUDA GPU visible to {sys.executable} (torch {torch.__version__}, "
            "torch.cuda.is_available() is False); nothing was run. "
            "GPU_CHECK_ALLOW_CPU=1 runs the tiny-model steps on the CPU",
            file=sys.stderr,
        )
        return 2
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
    return 0


def rows(path: str, want: str) -> int:
    import polars as pl

    df = pl.read_parquet(path)
    valid = int(df["valid"].sum())
    print(f"{path}: {df.height} rows, {valid} valid")
    if df.height != int(want):
        print(f"expected {want} rows", file=sys.stderr)
        return 1
    return 0


def ckpt(path: str, step: str) -> int:
    from recsys_cli.artifacts.checkpoint import CheckpointConfig, verify_files

    c = Path(path)
    cfg = CheckpointConfig.read(c)
    verify_files(c, cfg)
    steps = [json.loads(line)["step"] for line in (c / "metrics.jsonl").read_text().splitlines()]
    print(f"{c}: step {cfg.step}, {len(cfg.files_sha256 or {})} files hashed, metrics steps {steps[0]}..{steps[-1]}")
    if cfg.step != int(step) or steps != list(range(1, int(step) + 1)) or not cfg.files_sha256:
        print(f"expected step {step}, metrics rows 1..{step} and recorded file hashes", file=sys.stderr)
        return 1
    return 0


def embedded() -> int:
    from recsys_cli.modeling.registry import resolve_model

    print(resolve_model(None).path)
    return 0


def deepspeed() -> int:
    try:
        import deepspeed as ds
    except Exception as exc:  # not installed, or no compiler/CUDA toolkit for its ops
        print(f"deepspeed not usable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    print(f"deepspeed {ds.__version__}")
    return 0


def main(argv: list[str]) -> int:
    commands = {"cuda": cuda, "rows": rows, "ckpt": ckpt, "embedded": embedded, "deepspeed": deepspeed}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
