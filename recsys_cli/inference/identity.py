"""What a `recsys infer` predictions file records about itself (artifacts/provenance.py) and the
resume / overwrite rules built on it.

    python -c "from recsys_cli.artifacts.provenance import read; import json; print(json.dumps(read('C/predictions/test.parquet'), indent=1))"

* producer: the checkpoint (absolute path, training step, base model + fingerprint, the data it
  was trained on, sha256 of its config and weights) or the bare base model (--checkpoint none).
* settings: everything that changes an answer: split, family/template/seen/kind filters, top_k,
  beams, item_scoring, dynamic positions, unconstrained, max_new_tokens, text_beams,
  exclude_history, the retriever (path + provenance hash), rerank_k, fusion, shard.
* extra: facts that do not change an answer: how many prompts were selected (before sharding),
  --limit / --users / --prompt-ids, the retriever's recall@K.

`--limit`, `--users` and `--prompt-ids` only choose *which* prompts are answered, so a longer
run with the same settings resumes the file; any change in producer or settings is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import file_sha256
from recsys_cli.errors import InputError

INFER_KINDS = ("checkpoint", "base-model")  # producer kinds only `recsys infer` writes


def weights_sha256(ckpt: Path) -> str:
    """One hash over the adapter weights and extras.safetensors (what changes when retrained)."""
    h = hashlib.sha256()
    files = sorted((ckpt / schemas.CKPT_ADAPTER).glob("*.safetensors")) + [ckpt / schemas.CKPT_EXTRAS]
    for f in files:
        if f.is_file():
            h.update(f.name.encode())
            h.update(file_sha256(f).encode())
    return h.hexdigest()


def checkpoint_producer(ckpt: Path, cfg, model_name: str | None) -> dict[str, Any]:
    ckpt = Path(ckpt).resolve()
    return {"kind": "checkpoint", "path": str(ckpt), "step": cfg.step, "base_model": cfg.base_model,
            "base_fingerprint": cfg.base_fingerprint, "trained_on": cfg.data_fingerprint, "model_override": model_name,
            "config_sha256": file_sha256(ckpt / schemas.CKPT_CONFIG), "weights_sha256": weights_sha256(ckpt)}


def base_producer(model_name: str | None) -> dict[str, Any]:
    from recsys_cli.modeling.registry import resolve_model

    spec = resolve_model(model_name)
    return {"kind": "base-model", "name": spec.stored_name, "fingerprint": spec.fingerprint,
            "random_init_seed": spec.random_init_seed}


def parts(out: Path) -> list[Path]:
    from recsys_cli.inference.runner import parts_dir

    return sorted(parts_dir(out).glob("part-*.parquet"))


def check_resume(out: Path, prov: dict[str, Any]) -> None:
    """Appending to `out` (and its unfinished chunks) needs the same data, producer and settings."""
    if out.exists() and not out.is_file():
        raise InputError.at(out, None, "a predictions file path; this is a directory (choose another --out)")
    for f in ([out] if out.exists() else []) + parts(out):
        provenance.check_same(f, prov)


def check_overwrite(out: Path) -> None:
    """--overwrite replaces only a predictions file `recsys infer` (or merge-predictions) wrote."""
    if not out.exists():
        return
    if not out.is_file():
        raise InputError.at(out, None, "a predictions file to replace; this is a directory (choose another --out)")
    prov = provenance.read(out)
    kind = ((prov or {}).get("producer") or {}).get("kind")
    if kind not in INFER_KINDS:
        who = "has no recsys provenance" if prov is None else f"was written by a {kind!r} producer"
        raise InputError.at(out, None, f"a file written by `recsys infer` to replace with --overwrite; this file {who} (choose another --out)")


def clear(out: Path) -> None:
    """--overwrite: remove the old file and infer's own chunk files (nothing else)."""
    from recsys_cli.inference.runner import parts_dir

    out.unlink(missing_ok=True)
    for f in parts(out):
        f.unlink()
    try:
        parts_dir(out).rmdir()
    except OSError:
        pass  # absent, or holds files infer did not write: left alone
