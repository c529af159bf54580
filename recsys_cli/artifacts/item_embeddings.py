"""A trained sequential recommender's state as safetensors: the item embeddings RSLLM's
projector reads, and the sequence encoder that gives its user representations.

    python -c "from recsys_cli.artifacts.item_embeddings import load; \
        e = load('runs/toys/baselines/sasrec.safetensors'); print(e.item_ids[:3], e.table.shape)"

File: `R/baselines/<name>.safetensors` (owned by `recsys baseline`), tensors
  item_embeddings   [N + 1, d] float32, row 0 = padding, row j = item_ids[j - 1]
  encoder.<param>   the encoder's state_dict (SASRec: positions, blocks, final norm)
and string metadata
  recsys            JSON: {"format": 1, "model": "sasrec", "data_fingerprint": ..., "config": {...},
                    "item_ids": [...]}
Loading never unpickles anything. `load` checks the format and, when given a run directory,
that the embeddings were trained on that data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys_cli.errors import InputError, RecsysError

FORMAT = 1
TABLE = "item_embeddings"
ENCODER_PREFIX = "encoder."


@dataclass
class ItemEmbeddings:
    item_ids: list[str]  # row j + 1 of `table` is item_ids[j]
    table: Any  # torch.FloatTensor [N + 1, d], row 0 = padding
    model: str
    config: dict[str, Any]
    data_fingerprint: str | None
    encoder: dict[str, Any] = field(default_factory=dict)  # name -> tensor (without the prefix)

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    def rows(self, item_ids: list[str]) -> list[int]:
        """Table rows of `item_ids` (0, the padding row, for an unknown id)."""
        index = {i: n + 1 for n, i in enumerate(self.item_ids)}
        return [index.get(i, 0) for i in item_ids]


def save(path: Path, emb: ItemEmbeddings) -> None:
    """Write atomically (temp file + rename), replacing only recsys's own baseline model file,
    and record it in the folder's ledger (artifacts/outputs.py)."""
    from safetensors.torch import save_file

    from recsys_cli.artifacts import outputs

    path = Path(path)
    tensors = {TABLE: emb.table.detach().float().contiguous().cpu()}
    tensors.update({ENCODER_PREFIX + k: v.detach().float().contiguous().cpu() for k, v in emb.encoder.items()})
    meta = {
        "format": FORMAT,
        "model": emb.model,
        "data_fingerprint": emb.data_fingerprint,
        "config": emb.config,
        "item_ids": emb.item_ids,
    }
    with outputs.write_file(path, outputs.BASELINE_MODEL) as tmp:
        save_file(tensors, str(tmp), metadata={"recsys": json.dumps(meta, sort_keys=True)})


def load(path: Path, data_dir: Path | None = None) -> ItemEmbeddings:
    """Read and check an embeddings file (and its data fingerprint against `data_dir`)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise RecsysError(
            f"{path}: item embeddings not found (write them with `recsys baseline sasrec --data R`)", exit_code=2
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("recsys")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError.at(path, None, f"a readable safetensors file ({' '.join(str(exc).split())[:120]})")
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError.at(
            path, "metadata 'recsys'", f"item embeddings written by `recsys baseline` (format {FORMAT})"
        )
    if TABLE not in tensors:
        raise InputError.at(path, None, f"a tensor {TABLE!r}")
    table, ids = tensors[TABLE], list(meta.get("item_ids") or [])
    if table.ndim != 2 or table.shape[0] != len(ids) + 1:
        raise InputError.at(
            path,
            f"tensor {TABLE!r}",
            f"shape [{len(ids) + 1}, d] (padding row + one per item id); found {tuple(table.shape)}",
        )
    if data_dir is not None:
        from recsys_cli.artifacts.io import other_data

        if (differ := other_data(meta.get("data_fingerprint"), Path(data_dir))) is not None:
            want, got = differ
            msg = f"embeddings trained on the data in {data_dir}; they were trained on other data"
            raise InputError.at(path, None, f"{msg} (manifest sha256 {got}, expected {want})")
    encoder = {k[len(ENCODER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    return ItemEmbeddings(
        ids, table, str(meta.get("model")), dict(meta.get("config") or {}), meta.get("data_fingerprint"), encoder
    )
