"""The checkpoint contract: `C/recsys_checkpoint.json` as a typed dataclass, with its format
version checked on load. Written by `pretrain`, read by `infer` and by `pretrain --resume`.

    python -c "from recsys_cli.artifacts.checkpoint import CheckpointConfig; help(CheckpointConfig)"

`base_model` is stored so that the checkpoint works from any directory: 'embedded', a hub id
from the local cache, or an absolute path. `data_fingerprint` is the sha256 of the
textualize manifest.json the model was trained on (see artifacts/layout.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import write_json
from recsys_cli.errors import InputError, RecsysError

CHECKPOINT_FORMAT = 2
REQUIRED = ("base_model", "base_fingerprint", "positions", "max_intra", "vocab_size", "special_tokens", "new_token_ids", "lora")


@dataclass
class LoraSettings:
    rank: int
    alpha: int
    dropout: float
    targets: list[str] | None = None  # None: every attention and MLP projection
    modules_to_save: list[str] | None = None  # modules trained in full (peft modules_to_save)


@dataclass
class CheckpointConfig:
    base_model: str
    base_fingerprint: str
    positions: str  # glm | linear
    max_intra: int  # rows of the intra-position table
    vocab_size: int  # tokenizer size, special tokens included
    special_tokens: dict[str, int]
    new_token_ids: list[int]
    lora: LoraSettings | None  # None: the bare base model (infer --checkpoint none)
    step: int = 0
    recipe: dict[str, Any] = field(default_factory=dict)  # the resolved recipe (training/recipe.py)
    data_fingerprint: str | None = None
    hybrid: dict[str, Any] | None = None  # RSLLM hybrid prompts (training/hybrid.py), when used
    format: int = CHECKPOINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, ckpt: Path) -> None:
        write_json(self.to_dict(), Path(ckpt) / schemas.CKPT_CONFIG)

    @classmethod
    def read(cls, ckpt: Path) -> "CheckpointConfig":
        f = Path(ckpt) / schemas.CKPT_CONFIG
        if not f.is_file():
            raise RecsysError(f"{ckpt}: not a recsys checkpoint (no {schemas.CKPT_CONFIG}; run `recsys pretrain --out {ckpt}`)", exit_code=2)
        try:
            raw = json.loads(f.read_text())
        except json.JSONDecodeError as exc:
            raise InputError.at(f, exc.lineno, f"invalid JSON ({exc.msg})")
        except UnicodeDecodeError:
            raise InputError.at(f, None, "a UTF-8 JSON file")
        if not isinstance(raw, dict):
            raise InputError.at(f, 1, "a JSON object")
        fmt = raw.get("format")
        if fmt != CHECKPOINT_FORMAT:
            raise InputError.at(f, None, f"checkpoint format {CHECKPOINT_FORMAT}; found {fmt!r} (written by another recsys version: re-run `recsys pretrain`)")
        known = {x.name for x in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InputError.at(f, None, f"known checkpoint keys; found unknown {unknown}")
        need = [k for k in REQUIRED if k not in raw]
        if need:
            raise InputError.at(f, None, f"keys {need} in the checkpoint config")
        lora = raw.get("lora")
        try:
            raw["lora"] = LoraSettings(**lora) if isinstance(lora, dict) else None
        except TypeError as exc:
            raise InputError.at(f, "key 'lora'", f"rank, alpha, dropout, targets, modules_to_save ({exc})")
        cfg = cls(**raw)
        for name, kind in (("max_intra", int), ("vocab_size", int), ("step", int), ("base_model", str), ("positions", str)):
            if not isinstance(getattr(cfg, name), kind):
                raise InputError.at(f, f"key {name!r}", f"a {kind.__name__}; found {getattr(cfg, name)!r}")
        return cfg
