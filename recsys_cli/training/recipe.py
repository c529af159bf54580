"""Pretrain recipes: grouped, typed settings (model, lora, mask, train, eval, rerank, listwise,
hybrid), loaded from YAML under recipes/pretrain/ and overridden generically with `--set key=value`.

    python -c "from recsys_cli.training.recipe import load_recipe as l; print(l('recipes/pretrain/tiny-cpu.yaml'))"
    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --set train.lr=1e-4 --set lora.rank=16

A YAML recipe is a mapping of sections to keys (`train: {lr: 0.001}`); every key is optional.
Values are type-checked against the field's annotation when loaded (an unknown key or a
wrong type is an error naming the file and line); `--set section.key=VALUE` parses VALUE as
YAML and checks it the same way. Adding a setting is one edit: a field in its section
(training/recipe_sections.py).
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from recsys_cli.errors import InputError, RecsysError
from recsys_cli.options import RECIPE_RANGES
from recsys_cli.training.recipe_sections import (
    EvalArgs,
    HybridArgs,
    ListwiseArgs,
    LoraArgs,
    MaskArgs,
    ModelArgs,
    RerankArgs,
    TrainArgs,
    mask_problem,
)


@dataclass
class Recipe:
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    mask: MaskArgs = field(default_factory=MaskArgs)
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


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def key_type(dotted: str) -> Any:
    """The annotation of a recipe key: 'train.lr' -> float, 'model.positions' -> Literal['glm', 'linear']."""
    section, _, key = dotted.partition(".")
    return _hints(_hints(Recipe)[section])[key]


def _fits(value: Any, tp: Any) -> bool:
    """Does `value` (parsed YAML) fit the annotation `tp`? ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return value in typing.get_args(tp)
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
    if (
        typing.get_origin(tp) in (typing.Union, types.UnionType)
        and float in typing.get_args(tp)
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        return float(value)
    return value


def _line_of(text: str, key: str, after: int = 1) -> int | None:
    """The line of `key:` in a recipe's YAML: the first at or after line `after` (its section's)."""
    for i, line in enumerate(text.splitlines(), 1):
        if i >= after and line.lstrip().startswith(f"{key}:"):
            return i
    return None


def choices_of(tp: Any) -> tuple | None:
    """The values a Literal annotation allows (also inside Optional[...]); None for any other type."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return choices_of(inner[0]) if len(inner) == 1 else None
    return None


def _range_problem(dotted: str, value: Any) -> str | None:
    """None when `value` suits the key's range (RECIPE_RANGES), else what was expected."""
    rule = RECIPE_RANGES.get(dotted)
    if rule is not None and value is not None and rule.violation(value) is not None:
        return f"{dotted} in the range {rule.text}; got {value!r}"
    return None


def set_value(r: Recipe, dotted: str, value: Any, where: str, line: int | None = None) -> None:
    """r.<section>.<key> = value, type- and range-checked. `where` names the source for errors."""
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise InputError.at(
            where, line, f"a recipe key section.key with section one of {', '.join(SECTIONS)}; got {dotted!r}"
        )
    obj = getattr(r, section)
    hints = _hints(type(obj))
    if key not in hints:
        raise InputError.at(where, line, f"a key of {section!r} ({', '.join(hints)}); got {key!r}")
    if not _fits(value, hints[key]):
        choices = choices_of(hints[key])
        if choices is not None and value is not None:
            raise InputError.at(where, line, f"{dotted} one of {', '.join(map(str, choices))}; got {value!r}")
        raise InputError.at(where, line, f"{dotted} as {_type_name(hints[key])}; got {value!r}")
    expected = _range_problem(dotted, value)
    if expected is not None:
        raise InputError.at(where, line, expected)
    setattr(obj, key, _coerce(value, hints[key]))


REMOTE_CODE_KEY = "model.trust_remote_code"  # set only by the --trust-remote-code flag, never by a recipe or --set


def parse_set(items: list[str] | None) -> list[tuple[str, Any]]:
    """['train.lr=1e-4', ...] -> [('train.lr', 0.0001), ...]; values are YAML scalars/lists."""
    import yaml  # here, like data.listwise in check(): commands/pretrain.py imports this module for --help

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
            raise RecsysError(
                f"--set {REMOTE_CODE_KEY}=true: remote code is enabled only by --trust-remote-code", exit_code=2
            )
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
            raise InputError.at(
                path, 1, "a mapping of recipe sections (model, lora, mask, train, eval, rerank, listwise, hybrid)"
            )
        for section, keys in data.items():
            at = _line_of(text, str(section))
            if section not in SECTIONS:
                raise InputError.at(path, at, f"a recipe section ({', '.join(SECTIONS)}); got {section!r}")
            if not isinstance(keys, dict):
                raise InputError.at(path, at, f"section {section!r} as a mapping of keys")
            for k, v in keys.items():
                line = _line_of(text, str(k), at or 1) or at
                if f"{section}.{k}" == REMOTE_CODE_KEY and v is True:  # only the user's flag runs a model's own code
                    raise InputError.at(
                        path,
                        line,
                        f"no {REMOTE_CODE_KEY}: true (a recipe cannot enable remote code; "
                        "remove the key and pass --trust-remote-code)",
                    )
                set_value(r, f"{section}.{k}", v, str(path), line)
                origins[f"{section}.{k}"] = f"{path}, line {line}" if line else str(path)
    for dotted, value in overrides or []:
        if value is not None:
            set_value(r, dotted, value, "command line")
            origins[dotted] = "command line"
    check(r, str(path) if path is not None else "command line", origins)
    return r


def check(r: Recipe, where: str, origins: dict[str, str] | None = None) -> None:
    """Rules between keys (each key's own type, choices and range are checked as it is set: set_value).
    An error names where the first of its keys that was set came from (`origins`), else `where`."""

    def bad(msg: str, *keys: str) -> RecsysError:
        source = next((origins[k] for k in keys if origins and k in origins), where)
        return RecsysError(f"{source}: {msg}", exit_code=2)

    if r.train.max_steps is None and r.train.epochs is None:
        raise bad("set train.max_steps or train.epochs", "train.max_steps", "train.epochs")
    from recsys_cli.data.listwise import MAX_K

    if r.listwise.k > MAX_K or r.rerank.weight + r.listwise.weight > 1.0:
        raise bad(
            f"listwise.k must be <= {MAX_K} (one-token labels) and rerank.weight + listwise.weight <= 1",
            "listwise.k",
            "listwise.weight",
            "rerank.weight",
        )
    h = r.hybrid
    if r.listwise.candidate_ids and h.embeddings is None:
        raise bad(
            "listwise.candidate_ids needs an RSLLM run (hybrid.embeddings: the SASRec file of "
            "`recsys baseline sasrec`)",
            "listwise.candidate_ids",
            "hybrid.embeddings",
        )
    if r.listwise.head == "pointer" and h.embeddings is not None:
        raise bad(
            "listwise.head pointer scores text-only checkpoints; an RSLLM run (hybrid.embeddings) uses the labels head",
            "listwise.head",
            "hybrid.embeddings",
        )
    if h.embeddings is None and (h.stage1_steps or h.init_checkpoint):
        raise bad(
            "hybrid.stage1_steps / hybrid.init_checkpoint need hybrid.embeddings "
            "(the SASRec file of `recsys baseline sasrec`)",
            "hybrid.stage1_steps",
            "hybrid.init_checkpoint",
        )
    if r.train.max_steps is not None and h.embeddings is not None and h.stage1_steps >= r.train.max_steps:
        raise bad(
            f"hybrid.stage1_steps ({h.stage1_steps}) must be below train.max_steps ({r.train.max_steps}) "
            "so stage 2 runs",
            "hybrid.stage1_steps",
            "train.max_steps",
        )
    problem = mask_problem(r.mask)
    if problem is not None:
        raise bad(problem, *(f"mask.{f.name}" for f in fields(MaskArgs)))


def recipe_from_saved(saved: dict[str, Any] | None) -> Recipe:
    """A checkpoint's recorded recipe (CheckpointConfig.recipe, a plain dict) read back into a typed
    Recipe: keys it lacks (an older checkpoint) keep today's defaults, keys this version no longer
    has are ignored. No check(): the recipe was checked when it was trained."""
    r = Recipe()
    for section, keys in (saved or {}).items():
        sec = getattr(r, section, None)
        if sec is None or not isinstance(keys, dict):
            continue
        names = {f.name for f in fields(sec)}
        for key, value in keys.items():
            if key in names:
                setattr(sec, key, value)
    return r
