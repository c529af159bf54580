"""Pretrain recipes: YAML files under recipes/pretrain/, overridden by CLI flags.

    python -c "from recsys_cli.training.recipe import load_recipe; print(load_recipe('recipes/pretrain/tiny-cpu.yaml'))"

Every key is optional; unknown keys are an error naming the file and line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from recsys_cli.errors import InputError, RecsysError


@dataclass
class Recipe:
    model: str | None = None  # None -> the embedded SmolLM2
    positions: str = "glm"  # glm | linear (ablation)
    max_intra: int = 64
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None  # None -> every attention and MLP projection
    # modules trained in full next to LoRA and saved whole in the adapter (peft modules_to_save),
    # e.g. [embed_tokens] for a randomly initialised model; a tied output head follows the embedding
    modules_to_save: list[str] | None = None
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int | None = 200
    epochs: float | None = None  # when set (and max_steps is null): steps = epochs * train examples / global batch
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 256
    corpus_ratio: float = 0.5  # share of examples drawn from corpus.parquet; the rest are training prompts
    family_weights: dict[str, float] = field(
        default_factory=lambda: {"rating": 1.0, "sequential": 1.0, "explanation": 1.0, "review": 1.0, "direct": 1.0}
    )
    level_weights: dict[str, float] = field(default_factory=lambda: {"entity": 0.6, "sentence": 0.2, "document": 0.2})
    entity_ratio: float = 0.15
    poisson_lambda: float = 3.0
    sentence_ratio: float = 0.15
    doc_min: float = 0.5
    doc_max: float = 1.0
    eval_every: int = 50
    eval_prompts: int = 64  # valid prompts used for the validation loss
    save_every: int = 100
    seed: int = 0
    precision: str = "auto"  # auto (bf16 on a GPU that supports it) | fp32 | bf16
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    trust_remote_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _line_of(text: str, key: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(f"{key}:"):
            return i
    return None


def _check(r: Recipe, where: str) -> None:
    def bad(msg: str) -> RecsysError:
        return RecsysError(f"{where}: {msg}")

    if r.positions not in ("glm", "linear"):
        raise bad(f"positions must be glm or linear, got {r.positions!r}")
    if r.precision not in ("auto", "fp32", "bf16"):
        raise bad(f"precision must be auto, fp32 or bf16, got {r.precision!r}")
    if r.max_steps is None and r.epochs is None:
        raise bad("set max_steps or epochs")
    for k in ("lora_rank", "batch_size", "grad_accum", "max_intra", "eval_every", "save_every"):
        if int(getattr(r, k)) < 1:
            raise bad(f"{k} must be >= 1")
    if r.max_length < 16:
        raise bad("max_length must be >= 16")
    if not 0.0 <= r.corpus_ratio <= 1.0:
        raise bad("corpus_ratio must be in [0, 1]")
    if r.lr <= 0:
        raise bad("lr must be > 0")
    for k in ("lora_targets", "modules_to_save"):
        v = getattr(r, k)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) and x for x in v)):
            raise bad(f"{k} must be a list of module names, got {v!r}")


def load_recipe(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Recipe:
    """Recipe from YAML (or defaults when `path` is None), then non-None `overrides` on top."""
    import yaml

    r = Recipe()
    known = {f.name for f in fields(Recipe)}
    where = "command line"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise RecsysError(f"{path}: recipe not found (see recipes/pretrain/)", exit_code=2)
        text = path.read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise InputError.at(path, mark.line + 1 if mark else None, f"invalid YAML ({getattr(exc, 'problem', exc)})")
        if not isinstance(data, dict):
            raise InputError.at(path, 1, "expected a mapping of recipe keys")
        for k, v in data.items():
            if k not in known:
                raise InputError.at(path, _line_of(text, str(k)), f"unknown recipe key {k!r} (expected one of {', '.join(sorted(known))})")
            setattr(r, k, v)
        where = str(path)
    for k, v in (overrides or {}).items():
        if v is not None:
            if k not in known:
                raise RecsysError(f"internal: unknown recipe override {k!r}")
            setattr(r, k, v)
    _check(r, where)
    return r
