"""Pretrain recipes: grouped, typed settings (model, lora, mask, train, eval, rerank, listwise,
hybrid), loaded from YAML under recipes/pretrain/ and overridden generically with `--set key=value`.

    python -c "from recsys_cli.training.recipe import load_recipe; print(load_recipe('recipes/pretrain/tiny-cpu.yaml').train)"
    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --set train.lr=1e-4 --set lora.rank=16

A YAML recipe is a mapping of sections to keys (`train: {lr: 0.001}`); every key is optional.
Values are type-checked against the field's annotation when loaded (an unknown key or a
wrong type is an error naming the file and line); `--set section.key=VALUE` parses VALUE as
YAML and checks it the same way. Adding a setting is one edit: a field in its section.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from recsys_cli.data.masking import MaskConfig
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.options import RECIPE_RANGES


@dataclass
class ModelArgs:
    name: str | None = None  # None -> the embedded SmolLM2 (`--model`)
    positions: str = "glm"  # glm (2D: inter + intra) | linear (plain positions, the ablation)
    max_intra: int | None = None  # rows of the intra table; None -> longest pool entity + 2
    trust_remote_code: bool = False  # only from the --trust-remote-code flag (a recipe or --set saying true is refused)


@dataclass
class LoraArgs:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] | None = None  # None -> every attention and MLP projection
    # modules trained in full next to LoRA and saved whole in the adapter (peft modules_to_save),
    # e.g. [embed_tokens] for a randomly initialised model; a tied output head follows the embedding
    modules_to_save: list[str] | None = None


@dataclass
class TrainArgs:
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int | None = 200
    epochs: float | None = None  # when max_steps is null: steps = epochs * train examples / global batch
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 256
    corpus_ratio: float = 0.5  # share of examples drawn from corpus.parquet; the rest are training prompts
    rating_stars: bool = True  # a one-star answer's loss: CE over the 5 star tokens at [START] (inference/rating.py)
    family_weights: dict[str, float] = field(
        default_factory=lambda: {"rating": 1.0, "sequential": 1.0, "explanation": 1.0, "review": 1.0, "direct": 1.0}
    )
    save_every: int = 100
    seed: int = 0
    precision: str = "auto"  # auto (bf16 where native: a bf16 GPU, a CPU with avx512_bf16/AMX; modeling/precision.py) | fp32 | bf16
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    # speed (training/packing.py, training/speed.py); none of these changes the loss curve
    packing: bool = False  # several examples per row, block-diagonal GLM mask: same loss terms, less padding
    attention: str = "eager"  # eager | sdpa (torch scaled_dot_product_attention, same float mask added)
    compile: bool = False  # torch.compile each decoder layer (the first steps compile)
    log_every: int = 1  # read the loss back from the device every N steps (metrics rows are still per step)


@dataclass
class EvalArgs:
    eval_every: int = 50
    eval_prompts: int = 64  # valid prompts used for the validation loss
    max_new_tokens: int = 64  # `infer` length limit for explanation / review answers


@dataclass
class RerankArgs:
    """Training prompts whose candidates are a retriever's top-K for training positions
    (docs/rerank.md): the answer's loss is taken over the candidates' titles only."""

    candidates: str | None = None  # predictions file of the retriever on split=train prompts
    k: int = 20
    weight: float = 0.0  # share of examples that are rerank prompts (0: off)


@dataclass
class ListwiseArgs:
    """Listwise examples (docs/rerank.md "Listwise scoring"): a training position's retriever
    top-K in one labelled prompt; the loss is the cross-entropy over the K labels."""

    candidates: str | None = None  # predictions file of the retriever on split=train prompts
    k: int = 20  # candidates per example (at most 52: one-token labels)
    weight: float = 0.0  # share of examples that are listwise prompts (0: off; with rerank.weight <= 1)
    max_length: int = 512  # the whole listwise example's length, in training and in `infer` (data/listwise.py)
    candidate_ids: bool = False  # RSLLM: each candidate title also carries its soft ID token (needs hybrid.embeddings)


@dataclass
class HybridArgs:
    """RSLLM Text-ID hybrid prompts (docs/rsllm.md)."""

    embeddings: str | None = None  # the SASRec file of `recsys baseline sasrec`; "{data}/..." = under --data
    projector: str = "mlp2"  # mlp2 (Linear-GELU-Linear, LLaRA's shape) | linear
    projector_hidden: int = 256
    projector_norm: str = "rms"  # rms: output RMS-normalised x a trained gain (init: token-embedding RMS) | none
    freeze_projector: bool = False  # ablation: the projector stays at its (seeded) random init
    id_tokens: bool = True  # ablation: False = stage 2 without soft tokens (same text, same losses)
    stage1_steps: int = 0  # text-only steps before the hybrid stage (0: single-stage, hybrid from the start)
    restart_schedule: bool = True  # stage 2 gets its own lr warmup + cosine decay
    init_checkpoint: str | None = None  # continue from this (stage-1, text-only) checkpoint's adapter and intra table
    item_loss_weight: float = 0.1  # InfoNCE: item ID <-> item text representation (0: off)
    user_loss_weight: float = 0.1  # InfoNCE: LLM user representation <-> recommender's (0: off)
    item_text: str = "hidden"  # title representation: hidden (last layer, mean over title tokens) | embedding
    temperature: float = 0.07


@dataclass
class Recipe:
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    mask: MaskConfig = field(default_factory=MaskConfig)
    train: TrainArgs = field(default_factory=TrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    rerank: RerankArgs = field(default_factory=RerankArgs)
    listwise: ListwiseArgs = field(default_factory=ListwiseArgs)
    hybrid: HybridArgs = field(default_factory=HybridArgs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flat(self) -> dict[str, Any]:
        """{'train.lr': 0.001, ...}: every setting under its dotted key."""
        return {f"{s}.{k}": v for s, sec in self.to_dict().items() for k, v in sec.items()}


SECTIONS = {f.name: f.type for f in fields(Recipe)}


def _section_class(name: str):
    return {"model": ModelArgs, "lora": LoraArgs, "mask": MaskConfig, "train": TrainArgs, "eval": EvalArgs,
            "rerank": RerankArgs, "listwise": ListwiseArgs, "hybrid": HybridArgs}[name]


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, tp: Any) -> bool:
    """Does `value` (parsed YAML) fit the annotation `tp`? ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        kt, vt = typing.get_args(tp)
        return isinstance(value, dict) and all(_fits(k, kt) and _fits(v, vt) for k, v in value.items())
    return False


def _type_name(tp: Any) -> str:
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _coerce(value: Any, tp: Any) -> Any:
    """ints become floats where the field is a float (YAML writes 1 for 1.0)."""
    if tp is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(tp) is dict and isinstance(value, dict):
        _, vt = typing.get_args(tp)
        return {k: _coerce(v, vt) for k, v in value.items()}
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and float in typing.get_args(tp) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _line_of(text: str, key: str, after: int = 1) -> int | None:
    """The line of `key:` in a recipe's YAML: the first at or after line `after` (its section's)."""
    for i, line in enumerate(text.splitlines(), 1):
        if i >= after and line.lstrip().startswith(f"{key}:"):
            return i
    return None


# string keys with a fixed set of values (train.precision's: modeling/precision.py)
CHOICES = {"model.positions": ("glm", "linear"), "train.attention": ("eager", "sdpa"), "hybrid.projector": ("mlp2", "linear"),
           "hybrid.projector_norm": ("rms", "none"), "hybrid.item_text": ("hidden", "embedding")}


def _allowed(dotted: str, value: Any) -> str | None:
    """None when `value` suits the key's range or choices (RECIPE_RANGES, CHOICES), else what was expected."""
    from recsys_cli.modeling.precision import PRECISIONS

    rule = RECIPE_RANGES.get(dotted)
    if rule is not None and value is not None and rule.violation(value) is not None:
        return f"{dotted} in the range {rule.text}; got {value!r}"
    choices = PRECISIONS if dotted == "train.precision" else CHOICES.get(dotted)
    if choices is not None and value not in choices:
        return f"{dotted} one of {', '.join(choices)}; got {value!r}"
    return None


def set_value(r: Recipe, dotted: str, value: Any, where: str, line: int | None = None) -> None:
    """r.<section>.<key> = value, type- and range-checked. `where` names the source for errors."""
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise InputError.at(where, line, f"a recipe key section.key with section one of {', '.join(SECTIONS)}; got {dotted!r}")
    obj = getattr(r, section)
    hints = _hints(type(obj))
    if key not in hints:
        raise InputError.at(where, line, f"a key of {section!r} ({', '.join(hints)}); got {key!r}")
    if not _fits(value, hints[key]):
        raise InputError.at(where, line, f"{dotted} as {_type_name(hints[key])}; got {value!r}")
    expected = _allowed(dotted, value)
    if expected is not None:
        raise InputError.at(where, line, expected)
    setattr(obj, key, _coerce(value, hints[key]))


REMOTE_CODE_KEY = "model.trust_remote_code"  # set only by the --trust-remote-code flag, never by a recipe or --set


def parse_set(items: list[str] | None) -> list[tuple[str, Any]]:
    """['train.lr=1e-4', ...] -> [('train.lr', 0.0001), ...]; values are YAML scalars/lists."""
    import yaml

    out = []
    for item in items or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise RecsysError(f"--set {item!r}: expected section.key=value (e.g. train.lr=1e-4)", exit_code=2)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)
        if key.strip() == REMOTE_CODE_KEY and value is True:
            raise RecsysError(f"--set {REMOTE_CODE_KEY}=true: remote code is enabled only by --trust-remote-code",
                              exit_code=2)
        out.append((key.strip(), value))
    return out


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_recipe(path: str | Path | None, overrides: list[tuple[str, Any]] | None = None) -> Recipe:
    """Recipe from YAML (or the defaults when `path` is None), then `overrides`
    (dotted key, value) on top, in order; None values are skipped (flag not given).
    A bad value is an error naming where it came from: the recipe file and line, or the command line."""
    import yaml

    r = Recipe()
    origins: dict[str, str] = {}  # dotted key -> where its value came from, for check()'s messages
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
            raise InputError.at(path, 1, "a mapping of recipe sections (model, lora, mask, train, eval, rerank, listwise, hybrid)")
        for section, keys in data.items():
            at = _line_of(text, str(section))
            if section not in SECTIONS:
                raise InputError.at(path, at, f"a recipe section ({', '.join(SECTIONS)}); got {section!r}")
            if not isinstance(keys, dict):
                raise InputError.at(path, at, f"section {section!r} as a mapping of keys")
            for k, v in keys.items():
                line = _line_of(text, str(k), at or 1) or at
                if f"{section}.{k}" == REMOTE_CODE_KEY and v is True:  # only the user's flag runs a model's own code
                    raise InputError.at(path, line, f"no {REMOTE_CODE_KEY}: true (a recipe cannot enable remote code; "
                                                    "remove the key and pass --trust-remote-code)")
                set_value(r, f"{section}.{k}", v, str(path), line)
                origins[f"{section}.{k}"] = f"{path}, line {line}" if line else str(path)
    for dotted, value in overrides or []:
        if value is not None:
            set_value(r, dotted, value, "command line")
            origins[dotted] = "command line"
    check(r, str(path) if path is not None else "command line", origins)
    return r


def check(r: Recipe, where: str, origins: dict[str, str] | None = None) -> None:
    """Rules between keys (each key's own range and choices are checked as it is set: set_value).
    An error names where the first of its keys that was set came from (`origins`), else `where`."""
    def bad(msg: str, *keys: str) -> RecsysError:
        source = next((origins[k] for k in keys if origins and k in origins), where)
        return RecsysError(f"{source}: {msg}", exit_code=2)

    if r.train.max_steps is None and r.train.epochs is None:
        raise bad("set train.max_steps or train.epochs", "train.max_steps", "train.epochs")
    from recsys_cli.data.listwise import MAX_K

    if r.listwise.k > MAX_K or r.rerank.weight + r.listwise.weight > 1.0:
        raise bad(f"listwise.k must be <= {MAX_K} (one-token labels) and rerank.weight + listwise.weight <= 1",
                  "listwise.k", "listwise.weight", "rerank.weight")
    h = r.hybrid
    if r.listwise.candidate_ids and h.embeddings is None:
        raise bad("listwise.candidate_ids needs an RSLLM run (hybrid.embeddings: the SASRec file of "
                  "`recsys baseline sasrec`)", "listwise.candidate_ids", "hybrid.embeddings")
    if h.embeddings is None and (h.stage1_steps or h.init_checkpoint):
        raise bad("hybrid.stage1_steps / hybrid.init_checkpoint need hybrid.embeddings (the SASRec file of `recsys baseline sasrec`)",
                  "hybrid.stage1_steps", "hybrid.init_checkpoint")
    if r.train.max_steps is not None and h.embeddings is not None and h.stage1_steps >= r.train.max_steps:
        raise bad(f"hybrid.stage1_steps ({h.stage1_steps}) must be below train.max_steps ({r.train.max_steps}) so stage 2 runs",
                  "hybrid.stage1_steps", "train.max_steps")
    try:
        MaskConfig(**asdict(r.mask))  # its own range checks
    except RecsysError as exc:
        raise bad(f"mask: {exc}", *(f"mask.{f.name}" for f in fields(MaskConfig)))
    assert all(is_dataclass(getattr(r, s)) for s in SECTIONS)
