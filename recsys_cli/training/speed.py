"""The training loop's fast path: the optimizer, the attention kernel, compiled layers, and loss
values left on the device and read back every `train.log_every` steps. None of these changes
what a step computes (docs/design.md; tests/unit/test_packing.py checks the kernels agree).

    recsys pretrain ... --set train.attention=sdpa --set train.compile=true --set train.log_every=10
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.training import dist

# torch is imported inside the functions, as `recsys --help` must never load it:
# training/recipe.py imports this module (Attention).

Attention = Literal["eager", "sdpa"]  # the recipe's train.attention
ATTENTION: tuple[str, ...] = get_args(Attention)


def make_optimizer(params, lr: float, weight_decay: float, device: str, fused_ok: bool = True):
    """AdamW; the fused (single-kernel) implementation on CUDA unless `fused_ok` is False
    (DeepSpeed drives its own steps)."""
    import torch

    fused = {"fused": True} if str(device).startswith("cuda") and fused_ok else {}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fused)


def _inner(lm):
    """The transformers model inside RecsysLM (under peft's wrappers, if any)."""
    base = lm.base
    return base.get_base_model() if hasattr(base, "get_base_model") else base


def set_attention(lm, impl: str) -> None:
    """Attention kernel of every layer: eager (matmul + softmax) or sdpa. Both add the float GLM
    mask to the scores; a bool mask would mean the opposite to each, so RecsysLM refuses one."""
    if impl not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION)}, got {impl!r}")
    model = _inner(lm)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(impl)
    else:  # older transformers read the config at each forward
        model.config._attn_implementation = impl


def prepare(lm, train) -> None:
    """Apply a recipe's train.attention and train.compile to `lm`."""
    set_attention(lm, train.attention)
    if train.compile:
        compile_layers(lm)


def compile_layers(lm) -> int:
    """torch.compile every decoder layer in place (parameter names, hence checkpoints, unchanged);
    returns how many. Sequence lengths vary, so the second shape compiles a dynamic graph."""
    from recsys_cli.modeling.wrapper import _decoder

    layers = list(_decoder(lm.base).layers)
    for layer in layers:
        layer.compile()
    return len(layers)


@dataclass
class LossParts:
    """One step's loss terms, summed over its micro-batches: the LM loss weighted by target tokens (a
    0-d device tensor, or a float), and an RSLLM stage-2 step's item / user InfoNCE means with their counts."""

    lm: Any = 0.0
    item: float = 0.0
    item_n: int = 0
    user: float = 0.0
    user_n: int = 0

    def add_terms(self, terms: dict, n_targets: int) -> None:
        """Add a stage-2 micro-batch's terms (training/rsllm.hybrid_step: lm_loss, item_loss, user_loss)."""
        self.lm += terms["lm_loss"].detach().item() * n_targets
        if terms["item_loss"] is not None:
            self.item, self.item_n = self.item + terms["item_loss"].detach().item(), self.item_n + 1
        if terms["user_loss"] is not None:
            self.user, self.user_n = self.user + terms["user_loss"].detach().item(), self.user_n + 1

    def values(self) -> list:
        """The fields in order, for LossWindow.add (summed over the ranks when read back)."""
        return [getattr(self, f.name) for f in fields(self)]

    @staticmethod
    def row(stage: int, values: list[float], n_global: float) -> dict:
        """metrics.jsonl columns of a hybrid run from `values()` read back: the stage and each loss term
        (null: not computed in that step)."""
        p = LossParts(*values)

        def mean(total: float, n: float) -> float | None:
            return round(total / n, 6) if n else None

        return {
            "stage": stage,
            "lm_loss": round(p.lm / max(n_global, 1), 6),
            "item_loss": mean(p.item, p.item_n),
            "user_loss": mean(p.user, p.user_n),
        }


class LossWindow:
    """Per-step values (loss sums as 0-d device tensors or host numbers) kept until `read`, which
    turns a whole window into host floats with one device read and one all_sum over the ranks."""

    def __init__(self, every: int, device: str):
        self.every, self.device = max(1, int(every)), device
        self.steps: list[tuple[int, list, dict]] = []
        self.since = time.perf_counter()  # start of the window's first step (its tokens/s)

    def begin(self) -> None:
        """A step starts: an empty window starts with it."""
        if not self.steps:
            self.since = time.perf_counter()

    def add(self, step: int, values: list, **meta) -> None:
        self.steps.append((step, values, meta))

    def due(self, step: int, force: bool = False) -> bool:
        return bool(self.steps) and (force or step % self.every == 0)

    def read(self) -> list[tuple[int, list[float], dict]]:
        """(step, values summed over the ranks, meta) of each pending step; empties the window."""
        import torch

        on_device = [v for _, vals, _ in self.steps for v in vals if isinstance(v, torch.Tensor)]
        read = iter(torch.stack([v.reshape(()).double() for v in on_device]).tolist() if on_device else [])
        flat = [next(read) if isinstance(v, torch.Tensor) else float(v) for _, vals, _ in self.steps for v in vals]
        flat = dist.all_sum(flat, self.device)
        out, i = [], 0
        for step, vals, meta in self.steps:
            out.append((step, flat[i : i + len(vals)], meta))
            i += len(vals)
        self.steps = []
        return out


def metrics_rows(done: list, since: float, part_row=None) -> list[dict]:
    """metrics.jsonl rows of steps read back together: (step, [loss sum, stop, tokens, *parts],
    meta) each; tokens/s is the window's (tokens over the time since `since`); `part_row` adds a
    hybrid run's columns."""
    rate = sum(v[2] for _, v, _ in done) / max(time.perf_counter() - since, 1e-9)
    rows = []
    for step, (loss_sum, _, _, *parts), m in done:
        row = {
            "step": step,
            "loss": round(loss_sum / max(m["n"], 1), 6),
            "lr": m["lr"],
            "tokens_per_s": round(rate, 2),
            "elapsed": round(m["elapsed"], 3),
        }
        if part_row is not None:
            row.update(part_row(m["stage"], parts, m["n"]))
        rows.append(row)
    return rows


def log_window(
    trainer, window: LossWindow, evaluate: bool, part_row, mf, prog, task
) -> tuple[float, float | None, bool]:
    """Read the window back (the profile's `sync`) and write its rows (`log`): `log_steps`."""
    with trainer.timer.phase("sync"):
        done = window.read()
    with trainer.timer.phase("log"):
        return log_steps(trainer, done, window.since, evaluate, part_row, mf, prog, task)


def log_steps(
    trainer, done: list, since: float, evaluate: bool, part_row, mf, prog, task
) -> tuple[float, float | None, bool]:
    """Write the metrics rows of steps read back together (LossWindow.read) on rank 0, with the
    validation loss on the last when `evaluate`; `part_row` makes a hybrid run's columns.
    -> (last loss, validation loss or None, whether a rank asked to stop)"""

    rows = metrics_rows(done, since, part_row if trainer.hyb is not None else None)
    val = trainer.evaluate(done[-1][2]["stage"]) if evaluate else None
    if val is not None:
        rows[-1]["val_loss"] = round(val, 6)
    if trainer.main:
        mf.write("".join(json.dumps(row) + "\n" for row in rows))
        mf.flush()
        outputs.record(trainer.out / schemas.CKPT_METRICS, outputs.CHECKPOINT)  # the ledger follows every appended row
    prog.update(task, advance=len(rows), loss=f"{rows[-1]['loss']:.4f}")
    return done[-1][1][0] / max(done[-1][2]["n"], 1), val, any(v[1] for _, v, _ in done)
