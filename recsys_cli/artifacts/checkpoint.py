"""The checkpoint contract: `C/recsys_checkpoint.json` as a typed dataclass, with its format
version checked on load. Written by `pretrain`, read by `infer` and by `pretrain --resume`.

    python -c "from recsys_cli.artifacts.checkpoint import CheckpointConfig; help(CheckpointConfig)"

`base_model` is stored so that the checkpoint works from any directory: 'embedded', a hub id
from the local cache, or an absolute path. `data_fingerprint` is the sha256 of the
textualize manifest.json the model was trained on (see artifacts/layout.py), `data_summary`
what that manifest said (inputs, options, rows), so `infer` can say what differs on other data.
`files_sha256` holds the sha256 of every file `load_checkpoint` reads (adapter/, tokenizer/,
extras.safetensors), checked before loading; checkpoints saved before it (None) load unchecked,
with one warning.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.artifacts.io import write_json
from recsys_cli.errors import InputError, RecsysError

CHECKPOINT_FORMAT = 2
REQUIRED = (
    "base_model",
    "base_fingerprint",
    "positions",
    "max_intra",
    "vocab_size",
    "special_tokens",
    "new_token_ids",
    "lora",
)


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
    hybrid: dict[str, Any] | None = None  # RSLLM hybrid prompts (training/rsllm.py), when used
    data_summary: dict[str, Any] | None = None  # the training data's manifest: path, command, inputs, options, rows
    files_sha256: dict[str, str] | None = None  # path relative to C -> sha256 (set by save_checkpoint)
    format: int = CHECKPOINT_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, ckpt: Path) -> None:
        write_json(self.to_dict(), Path(ckpt) / schemas.CKPT_CONFIG, kind=outputs.CHECKPOINT)

    @classmethod
    def read(cls, ckpt: Path) -> "CheckpointConfig":
        f = Path(ckpt) / schemas.CKPT_CONFIG
        if not f.is_file():
            raise RecsysError(
                f"{ckpt}: not a recsys checkpoint (no {schemas.CKPT_CONFIG}; run `recsys pretrain --out {ckpt}`)",
                exit_code=2,
            )
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
            raise InputError.at(
                f,
                None,
                f"checkpoint format {CHECKPOINT_FORMAT}; found {fmt!r} "
                "(written by another recsys version: re-run `recsys pretrain`)",
            )
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
        for name, kind in (
            ("max_intra", int),
            ("vocab_size", int),
            ("step", int),
            ("base_model", str),
            ("positions", str),
        ):
            if not isinstance(getattr(cfg, name), kind):
                raise InputError.at(f, f"key {name!r}", f"a {kind.__name__}; found {getattr(cfg, name)!r}")
        return cfg


# the files a checkpoint cannot load without (besides recsys_checkpoint.json)
REQUIRED_FILES = (
    f"{schemas.CKPT_ADAPTER}/adapter_config.json",
    f"{schemas.CKPT_ADAPTER}/adapter_model.safetensors",
    f"{schemas.CKPT_TOKENIZER}/tokenizer.json",
    f"{schemas.CKPT_TOKENIZER}/tokenizer_config.json",
    schemas.CKPT_EXTRAS,
)


_warned_unhashed: set[str] = set()  # one warning per checkpoint and process


def hash_files(ckpt: Path) -> dict[str, str]:
    """sha256 of every file under C/adapter and C/tokenizer and of C/extras.safetensors, by path relative to C."""
    from recsys_cli.artifacts.io import file_sha256

    ckpt = Path(ckpt)
    found = [ckpt / schemas.CKPT_EXTRAS]
    for sub in (schemas.CKPT_ADAPTER, schemas.CKPT_TOKENIZER):
        found += sorted(p for p in (ckpt / sub).rglob("*") if p.is_file() and not outputs.is_bookkeeping(p.name))
    return {p.relative_to(ckpt).as_posix(): file_sha256(p) for p in found if p.is_file()}


def verify_files(ckpt: Path, cfg: CheckpointConfig) -> None:
    """Every file the checkpoint needs is there and, where `cfg` records hashes, is the one
    `recsys pretrain` saved: else one line naming the first bad file (exit 2). Run before any
    model, tokenizer or adapter is loaded."""
    from recsys_cli import console
    from recsys_cli.artifacts.io import file_sha256

    ckpt = Path(ckpt)
    recorded = cfg.files_sha256 or {}
    for rel in sorted(set(REQUIRED_FILES) | set(recorded)):
        if not (ckpt / rel).is_file():
            raise RecsysError(f"{ckpt / rel}: missing; the checkpoint is incomplete", exit_code=2)
    for rel, want in sorted(recorded.items()):
        if file_sha256(ckpt / rel) != want:
            raise RecsysError(
                f"{ckpt / rel}: sha256 differs from the one {schemas.CKPT_CONFIG} records; "
                "the file was changed or damaged after `recsys pretrain` saved it",
                exit_code=2,
            )
    if cfg.files_sha256 is None and str(ckpt.resolve()) not in _warned_unhashed:
        _warned_unhashed.add(str(ckpt.resolve()))
        console.warn(f"{ckpt}: saved without file hashes (an older recsys); its files are not checked")


def data_summary(data_dir: Path) -> dict[str, Any] | None:
    """What `infer` compares on other data: the training data's path and its manifest's command,
    inputs (name -> sha256), options and rows. None without a readable manifest."""
    data_dir = Path(data_dir)
    try:
        man = json.loads((data_dir / schemas.MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(man, dict):
        return None
    inputs = {str(i.get("name")): i.get("sha256") for i in man.get("inputs") or [] if isinstance(i, dict)}
    return {
        "path": str(data_dir.resolve()),
        "command": man.get("command"),
        "inputs": inputs,
        "options": man.get("options") or {},
        "rows": man.get("rows") or {},
    }
