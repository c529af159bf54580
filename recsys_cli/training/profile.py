"""Where a `pretrain` optimizer step spends its time: a per-phase breakdown of the real loop.

    python bench/pretrain.py --profile --data runs/toys --config recipes/pretrain/quality-cpu.yaml --steps 5

`Trainer.timer` is `NO_TIMER` (free) unless a profile is running. A `StepTimer` times each
phase of a step with `time.perf_counter`, and on CUDA calls `torch.cuda.synchronize()` at both
ends of every phase, so a phase's time is the work it queued, not the time it took to queue it:

* examples  - building the step's examples (masking, cutting, restricting; tokens are cached)
* collate   - right-padding (or packing) into host tensors, the mask's inputs
* h2d       - host-to-device copies, and the GLM mask built on the device
* forward   - the model and the loss; backward; optimizer (clipping included)
* sync      - host reads of device values (`.item()`, `tolist()`) and `all_sum`
* log       - metrics.jsonl rows and the progress bar (validation, when due, too: profiles skip it)
* other     - the rest of the step (step time minus the phases)

Syncing at every phase boundary costs time on a GPU, so a profile also runs `plain` steps that
sync only at step ends: their step time is the figure to quote; the phases say where it goes.
Model FLOPs per step use the usual estimate 6 * N * T: N every parameter of the model (frozen
and trainable), T the real (non-padding) tokens; attention's own FLOPs are not counted. MFU is
that rate over the device's dense bf16 peak (`PEAK_BF16_TFLOPS`, vendor datasheets).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time

import torch

PHASES = ("examples", "collate", "h2d", "forward", "backward", "optimizer", "sync", "log")
DEVICE_WORK = ("forward", "backward", "optimizer")  # everything else is host-side work

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' datasheets; the first
# pattern that matches torch.cuda.get_device_name() wins (so H100 PCIe before H100, A100 before A10).
PEAK_BF16_TFLOPS = (
    (r"H200", 989.0),  # H200 SXM: same tensor cores as the H100 SXM
    (r"H100.*PCIe", 756.0),
    (r"H100", 989.0),  # SXM (HBM3)
    (r"A100", 312.0),
    (r"L40S", 362.0),
    (r"L4\b", 121.0),
    (r"A10G", 70.0),  # AWS A10G (a cut-down A10)
    (r"A10\b", 125.0),
    (r"RTX 6000 Ada", 364.0),
    (r"RTX A6000", 155.0),
    (r"RTX 4090", 165.0),  # with fp32 accumulation, as PyTorch computes bf16 matmuls
)


def peak_bf16_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU named like torch.cuda.get_device_name(), or None if unknown."""
    for pattern, tflops in PEAK_BF16_TFLOPS:
        if device_name and re.search(pattern, device_name):
            return tflops
    return None


def count_params(model) -> int:
    """Every parameter (frozen and trainable), each shared tensor once."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


class NullTimer:
    """The timer of an unprofiled run: every call does nothing."""

    active = False

    def phase(self, name: str):
        return contextlib.nullcontext()

    def start_step(self, step: int) -> None:
        pass

    def count(self, padded: int) -> None:
        pass

    def end_step(self, tokens: int) -> None:
        pass


NO_TIMER = NullTimer()


class StepTimer:
    """Records steps [warmup, warmup + detailed) phase by phase and the next `plain` steps by
    their total only; earlier steps (warm-up: lazy init, compilation) are not recorded."""

    active = True

    def __init__(self, device: str, warmup: int = 1, detailed: int = 3, plain: int = 0):
        self.cuda = str(device).startswith("cuda")
        self.first, self.detailed, self.plain = warmup, detailed, plain
        self.rows: list[dict] = []  # one per recorded step
        self._cur: dict | None = None
        self._detail = False
        self._t0 = 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def start_step(self, step: int) -> None:
        k = step - self.first
        self._cur = None
        if 0 <= k < self.detailed + self.plain:
            self._detail = k < self.detailed
            self._sync()
            self._cur = {"step": step + 1, "detailed": self._detail, "padded_tokens": 0, **{p: 0.0 for p in PHASES}}
            self._t0 = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        if self._cur is None or not self._detail:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self._cur[name] += time.perf_counter() - t0

    def count(self, padded: int) -> None:
        """Tokens the model computes in a micro-batch (padding included)."""
        if self._cur is not None:
            self._cur["padded_tokens"] += int(padded)

    def end_step(self, tokens: int) -> None:
        """Close the step: `tokens` real tokens."""
        if self._cur is None:
            return
        self._sync()
        row = self._cur
        row["step_s"] = time.perf_counter() - self._t0
        row["other"] = row["step_s"] - sum(row[p] for p in PHASES) if row["detailed"] else None
        row["tokens"] = int(tokens)
        self.rows.append(row)
        self._cur = None

    @property
    def done(self) -> bool:
        return len(self.rows) >= self.detailed + self.plain


def summarize(rows: list[dict], n_params: int, device_name: str | None, cuda: bool) -> dict:
    """Medians of the recorded steps: seconds and share of the step per phase, tokens/s, model
    FLOP/s (6 * n_params * real tokens) and, on a GPU with a known peak, MFU."""
    detailed = [r for r in rows if r["detailed"]]
    plain = [r for r in rows if not r["detailed"]] or detailed
    med = statistics.median
    step_d = med([r["step_s"] for r in detailed]) if detailed else None
    phases = {p: round(med([r[p] for r in detailed]), 6) for p in (*PHASES, "other")} if detailed else {}
    share = {p: round(v / step_d, 4) for p, v in phases.items()} if step_d else {}
    host = sum(v for p, v in phases.items() if p not in DEVICE_WORK)
    step_s = med([r["step_s"] for r in plain]) if plain else None
    tokens = med([r["tokens"] for r in plain]) if plain else 0
    padded = med([r["padded_tokens"] for r in plain]) if plain else 0
    flops = 6.0 * n_params * tokens / step_s if step_s else None
    peak = peak_bf16_tflops(device_name) if cuda else None
    return {
        "device": device_name,
        "steps_detailed": len(detailed),
        "steps_plain": len([r for r in rows if not r["detailed"]]),
        "step_s": round(step_s, 6) if step_s else None,
        "step_s_detailed": round(step_d, 6) if step_d else None,
        "phases_s": phases,
        "phases_share": share,
        "host_share": round(host / step_d, 4) if step_d else None,
        "tokens_per_step": tokens,
        "padded_tokens_per_step": padded,
        "tokens_per_s": round(tokens / step_s, 1) if step_s else None,
        "padded_tokens_per_s": round(padded / step_s, 1) if step_s else None,
        "params": n_params,
        "flops_formula": "6 * params (frozen + trainable) * real tokens per step",
        "model_tflops_per_s": round(flops / 1e12, 4) if flops else None,
        "peak_bf16_tflops": peak,
        "mfu": round(flops / (peak * 1e12), 4) if flops and peak else None,
        "rows": rows,
    }


def profile_trainer(trainer, steps: int = 3, warmup: int = 1, plain: int | None = None) -> dict:
    """Run `trainer`'s real loop for warmup + steps (+ plain) steps with a StepTimer; returns
    `summarize`'s breakdown. The trainer's output directory receives the usual checkpoint."""
    plain = steps if plain is None else plain
    timer = StepTimer(trainer.device, warmup, steps, plain)
    trainer.timer = timer
    try:
        trainer.train(stop_at=warmup + steps + plain)
    finally:
        trainer.timer = NO_TIMER
    name = None
    if timer.cuda:
        name = torch.cuda.get_device_name(torch.device(trainer.device))
    return summarize(timer.rows, count_params(trainer.lm), name or "cpu", timer.cuda)


def table(summary: dict) -> str:
    """The breakdown as a few lines of text (bench output, reports)."""
    lines = [f"{'phase':<10} {'s/step':>9} {'share':>7}"]
    for p, v in summary["phases_s"].items():
        lines.append(f"{p:<10} {v:>9.4f} {summary['phases_share'].get(p, 0):>7.1%}")
    step, plain = summary["step_s_detailed"] or 0, summary["step_s"] or 0
    lines.append(f"{'step':<10} {step:>9.4f}   (plain steps: {plain:.4f} s)")
    lines.append(
        f"host share {summary['host_share']:.1%}; {summary['tokens_per_s']} tokens/s "
        f"({summary['padded_tokens_per_s']} with padding); {summary['model_tflops_per_s']} model TFLOP/s"
        + (f"; MFU {summary['mfu']:.1%} of {summary['peak_bf16_tflops']:.0f}" if summary["mfu"] is not None else "")
    )
    return "\n".join(lines)
