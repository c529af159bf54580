"""Where a predictions file came from, stored inside the file (Parquet key-value metadata
under the key `recsys`), so a copy keeps it and `score` / `infer` can check it.

    python -c "from recsys_cli.artifacts.provenance import read; \
        print(read('runs/toys/predictions/test/sasrec.parquet'))"

    {"data_fingerprint": sha256 of the textualize manifest.json the prompts came from,
     "producer": {"kind": "checkpoint" | "base-model" | "baseline", "name": ..., ...identity},
     "settings": {everything that changes the content: split, family, top_k, beams, ...},
     "extra": {facts about the run that do not change the content, e.g. retriever recall@K}}

`infer` appends to a file only when producer and settings match (`check_same`); `score`
refuses a file whose data fingerprint differs from --data's (`check_data`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli.artifacts.io import data_fingerprint
from recsys_cli.errors import InputError

KEY = "recsys"


def make(
    data_dir: Path, producer: dict[str, Any], settings: dict[str, Any], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "data_fingerprint": data_fingerprint(data_dir),
        "producer": producer,
        "settings": settings,
        "extra": extra or {},
    }


def encode(prov: dict[str, Any]) -> dict[str, str]:
    """The Parquet metadata mapping for `write_parquet(..., metadata=...)`."""
    return {KEY: json.dumps(prov, sort_keys=True, default=str)}


def read(path: Path) -> dict[str, Any] | None:
    """The provenance of a predictions file, or None for a file written without one."""
    path = Path(path)
    try:
        meta = pl.read_parquet_metadata(path)
    except Exception as exc:  # not Parquet, truncated
        raise InputError.at(path, None, f"a readable Parquet file ({type(exc).__name__})")
    raw = meta.get(KEY)
    if raw is None:
        return None
    try:
        prov = json.loads(raw)
    except ValueError:
        raise InputError.at(path, f"metadata {KEY!r}", "JSON provenance written by recsys")
    if not isinstance(prov, dict):
        raise InputError.at(path, f"metadata {KEY!r}", "a JSON object")
    return prov


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable fields in which two provenances differ (data, producer, settings)."""
    out = []
    if old.get("data_fingerprint") != new.get("data_fingerprint"):
        out.append("data (the textualize manifest differs)")
    for part in ("producer", "settings"):
        a, b = old.get(part) or {}, new.get(part) or {}
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{part}.{k} ({a.get(k)!r} -> {b.get(k)!r})")
    return out


def check_same(path: Path, new: dict[str, Any]) -> None:
    """Appending to `path` is allowed only for the same producer, settings and data."""
    old = read(path)
    if old is None:
        raise InputError.at(
            path, None, "predictions written with provenance; this file has none (use another --out or --overwrite)"
        )
    diff = differences(old, new)
    if diff:
        raise InputError.at(
            path,
            None,
            f"predictions made with the same settings to resume into; changed: {'; '.join(diff)} "
            "(use another --out, or --overwrite)",
        )


def check_data(path: Path, data_dir: Path) -> dict[str, Any] | None:
    """`score`: the predictions must come from `data_dir`'s prompts (same manifest hash).
    Files without provenance (made by other tools) are accepted; returns the provenance."""
    prov = read(path)
    if prov is None:
        return None
    want = data_fingerprint(data_dir)
    got = prov.get("data_fingerprint")
    if got != want:
        raise InputError.at(
            path,
            None,
            f"predictions for the data in {data_dir} (manifest sha256 {str(want)[:12]}); "
            f"this file was made on other data ({str(got)[:12]})",
        )
    return prov
