"""What a `recsys infer` predictions file records about itself (artifacts/provenance.py) and the
resume / overwrite rules built on it.

    python -c "from recsys_cli.artifacts.provenance import read; import json; \\
print(json.dumps(read('C/predictions/test.parquet'), indent=1))"

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
    return {
        "kind": "checkpoint",
        "path": str(ckpt),
        "step": cfg.step,
        "base_model": cfg.base_model,
        "base_fingerprint": cfg.base_fingerprint,
        "trained_on": cfg.data_fingerprint,
        "model_override": model_name,
        "config_sha256": file_sha256(ckpt / schemas.CKPT_CONFIG),
        "weights_sha256": weights_sha256(ckpt),
    }


def data_differences(cfg, data: Path) -> list[str]:
    """How `data` differs from the data checkpoint `cfg` was trained on ([] when it is the same:
    equal textualize manifest sha256): the manifest hash, then rows, inputs, options and command
    where the checkpoint recorded its training data's manifest (CheckpointConfig.data_summary)."""
    from recsys_cli.artifacts.checkpoint import data_summary
    from recsys_cli.artifacts.io import data_fingerprint

    now = data_fingerprint(data)
    if now == cfg.data_fingerprint:
        return []
    diffs = [f"manifest sha256 {str(cfg.data_fingerprint)[:12]} -> {str(now)[:12]}"]
    old, new = cfg.data_summary or {}, data_summary(data) or {}
    if not old:
        return diffs
    old_rows, new_rows = old.get("rows") or {}, new.get("rows") or {}
    for name in sorted(set(old_rows) | set(new_rows)):
        if old_rows.get(name) != new_rows.get(name):
            diffs.append(f"{name.removesuffix('.parquet')} {old_rows.get(name)} -> {new_rows.get(name)}")
    old_in, new_in = old.get("inputs") or {}, new.get("inputs") or {}
    for name in sorted(set(old_in) | set(new_in)):
        if old_in.get(name) != new_in.get(name):
            what = "missing" if name not in new_in else "new" if name not in old_in else "other content"
            diffs.append(f"input {name}: {what}")
    old_opt, new_opt = old.get("options") or {}, new.get("options") or {}
    for key in sorted(set(old_opt) | set(new_opt)):
        if key != "data_dir" and old_opt.get(key) != new_opt.get(key):
            diffs.append(f"option {key} {old_opt.get(key)!r} -> {new_opt.get(key)!r}")
    if old.get("command") != new.get("command"):
        diffs.append(f"made by {old.get('command')!r} -> {new.get('command')!r}")
    return diffs


def check_trained_on(ckpt: Path, cfg, data: Path, allow_other: bool) -> None:
    """`infer` on data other than the checkpoint's training data: refused in one line saying what
    differs, unless `allow_other` (--allow-other-data): then one warning line."""
    from recsys_cli import console
    from recsys_cli.errors import RecsysError

    if cfg.data_fingerprint is None:
        console.warn(f"{ckpt}: the checkpoint does not record its training data; not checked against {data}")
        return
    diffs = data_differences(cfg, data)
    if not diffs:
        return
    where = (cfg.data_summary or {}).get("path")
    shown = "; ".join(diffs[:6]) + (f"; {len(diffs) - 6} more" if len(diffs) > 6 else "")
    what = f"{data}: not the data checkpoint {ckpt} was trained on{f' ({where})' if where else ''}: {shown}"
    if not allow_other:
        raise RecsysError(f"{what}; pass --allow-other-data to use this checkpoint on it anyway", exit_code=2)
    console.warn(f"{what}; going on (--allow-other-data)")


def base_producer(model_name: str | None) -> dict[str, Any]:
    from recsys_cli.modeling.registry import resolve_model

    spec = resolve_model(model_name)
    return {
        "kind": "base-model",
        "name": spec.stored_name,
        "fingerprint": spec.fingerprint,
        "random_init_seed": spec.random_init_seed,
    }


def parts(out: Path) -> list[Path]:
    from recsys_cli.inference.chunks import parts_dir

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
        raise InputError.at(
            out,
            None,
            f"a file written by `recsys infer` to replace with --overwrite; this file {who} (choose another --out)",
        )


def clear(out: Path) -> None:
    """--overwrite: remove the old file and infer's own chunk files (nothing else: each is checked
    against the ledger, artifacts/outputs.py)."""
    from recsys_cli.artifacts import outputs
    from recsys_cli.inference.chunks import parts_dir

    outputs.remove(out, outputs.PREDICTIONS)
    for f in parts(out):
        outputs.remove(f, outputs.PREDICTIONS)
    outputs.remove_dir_if_bare(parts_dir(out))  # absent, or holds files infer did not write: left alone
