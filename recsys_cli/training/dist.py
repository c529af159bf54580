"""Several training processes: rank and world from the launcher's environment, the process
group, DistributedDataParallel, and the few collectives the loop needs.

    torchrun --nproc_per_node 2 -m recsys_cli.main pretrain --data R --config recipes/pretrain/tiny-cpu.yaml --out C

torchrun and the deepspeed launcher set RANK, LOCAL_RANK and WORLD_SIZE; without them this is
one process and every helper here is a no-op. Plain torch uses gloo on CPU and nccl on GPUs;
DeepSpeed initialises its own group (training/ds.py), which these helpers then use too.
"""

from __future__ import annotations

import os
import signal

# torch is imported inside the functions, as `recsys --help` must never load it:
# commands/pretrain.py imports this module.


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def device() -> str:
    """'cpu', or this process's GPU ('cuda:<LOCAL_RANK>' under a launcher, else 'cuda')."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    if world() == 1:
        return "cuda"
    torch.cuda.set_device(local_rank())
    return f"cuda:{local_rank()}"


def _active() -> bool:
    import torch.distributed as td

    return td.is_available() and td.is_initialized()


def init(device_name: str) -> None:
    """The process group of a torchrun world (plain DDP); nothing for one process."""
    import torch.distributed as td

    if world() > 1 and not _active():
        td.init_process_group(backend="gloo" if device_name == "cpu" else "nccl")


def wrap_ddp(lm, device_name: str, find_unused: bool = False):
    """`lm` inside DistributedDataParallel: gradients averaged over the ranks in backward
    (rank 0's initial weights broadcast to all). `find_unused`: some parameters may get no
    gradient in a step (RSLLM: the projector in stage 1, a head whose loss weight is 0)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [local_rank()] if device_name.startswith("cuda") else None
    return DistributedDataParallel(lm, device_ids=ids, find_unused_parameters=find_unused)


def barrier() -> None:
    if _active():
        import torch.distributed as td

        td.barrier()


def all_sum(values: list[float], device_name: str = "cpu") -> list[float]:
    """Element-wise sum of `values` over the ranks (float64); the values themselves alone."""
    if not _active():
        return list(values)
    import torch
    import torch.distributed as td

    t = torch.tensor(values, dtype=torch.float64, device=device_name)  # [n]
    td.all_reduce(t, op=td.ReduceOp.SUM)
    return t.tolist()


class StopOnSignal:
    """Several processes: Ctrl-C / SIGTERM (torchrun forwards both) only sets `requested`; the
    loop sums it over the ranks after each step, so all stop and save at the same step. A
    second Ctrl-C stops at once, without saving. One process: nothing (Ctrl-C interrupts)."""

    def __init__(self):
        self.requested = False
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "StopOnSignal":
        if world() > 1:
            self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
