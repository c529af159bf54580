"""The first stage of two-stage ranking: a predictions file whose ranked lists (with scores)
`recsys infer --candidates-from PRED --rerank-k K` reranks (docs/rerank.md).

    recsys baseline itemknn --data R --split valid --top-k 100 --out R/predictions/valid/itemknn.parquet
    recsys infer --data R --checkpoint C --split valid \
        --candidates-from R/predictions/valid/itemknn.parquet --rerank-k 50

Everything is checked before the model loads, each failure one line naming the file and row:
the predictions contract with scores (artifacts/predictions.py: Parquet, columns, provenance of
--data, distinct real items, one score per item); then, here, the same split; every selected
ranking prompt has a row; a direct prompt's list names only its candidates; a finite score for
each of its first K items.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli.artifacts import provenance
from recsys_cli.artifacts.io import file_sha256
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.errors import InputError, RecsysError


@dataclass
class Retriever:
    path: Path
    identity: dict[str, Any]  # {"path", "provenance_sha256"} or {"path", "file_sha256"} (no provenance)
    producer: dict[str, Any] | None  # the retriever's own producer (from its provenance)
    lists: dict[str, tuple[list[str], list[float]]]  # prompt_id -> (ranked ids, scores), best first


def identity_of(path: Path, prov: dict[str, Any] | None) -> dict[str, Any]:
    """How a rerank run names its retriever: the hash of its provenance (data, producer,
    settings; not `extra`), or of the file's bytes when it has none."""
    path = Path(path).resolve()
    if prov is None:
        return {"path": str(path), "file_sha256": file_sha256(path)}
    core = {k: prov.get(k) for k in ("data_fingerprint", "producer", "settings")}
    digest = hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()
    return {"path": str(path), "provenance_sha256": digest}


def load(path: Path, data: Path, split: str, prompts: pl.DataFrame, k: int) -> Retriever:
    """Read and check the retriever for `prompts` (the selected ranking prompts: prompt_id,
    candidates). Only the rows of those prompts are kept."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(
            (
                f"{path}: --candidates-from file not found (write one with `recsys baseline itemknn|sasrec --top-k N` "
                f"or `recsys infer`)"
            ),
            exit_code=2,
        )
    df = read_predictions(path, data, need_scores=True).select("prompt_id", "ranked", "scores")
    df = df.with_row_index("_row")
    prov = provenance.read(path)
    got_split = ((prov or {}).get("settings") or {}).get("split")
    if got_split is not None and got_split != split:
        raise InputError.at(path, None, f"ranked lists for split {split!r}; this file answers split {got_split!r}")
    need = prompts.select("prompt_id", "candidates")
    joined = need.join(df, on="prompt_id", how="left")
    missing = joined["_row"].is_null()
    if missing.any():
        pid = joined["prompt_id"][int(missing.arg_true()[0])]
        raise InputError.at(
            path,
            None,
            (
                f"a ranked list for every selected ranking prompt; prompt {pid!r} ({int(missing.sum())} of "
                f"{joined.height}) has none"
            ),
        )
    lists = {}
    for pid, cands, row, ranked, scores in joined.iter_rows():
        lists[pid] = _check_row(path, row, pid, ranked, scores, cands, k)
    return Retriever(path, identity_of(path, prov), (prov or {}).get("producer"), lists)


def _check_row(path, row, pid, ranked, scores, cands, k) -> tuple[list[str], list[float]]:
    """What only a reranker needs of a (contract-checked) row: a direct prompt's candidates, finite head scores."""
    where = f"row {row}"
    ranked = list(ranked or [])
    scores = list(scores or [])
    if cands is not None and len(cands) > 1:
        allowed = set(cands)
        bad = [i for i in ranked if i not in allowed]
        if bad:
            raise InputError.at(path, where, f"the prompt's candidates; prompt {pid!r} ranks {bad[0]!r}")
    for n, s in enumerate(scores[:k]):
        if s is None or not math.isfinite(s):
            raise InputError.at(
                path, where, f"a finite score for each of the first {k} items; item {n} of prompt {pid!r} has {s!r}"
            )
    return ranked, scores


def head(ranked: list[str], scores: list[float], excluded: set, k: int) -> tuple[list[str], list[float], list[str]]:
    """The first k of the list after dropping `excluded` items: (items, scores, the rest in order)."""
    if excluded:
        kept = [(i, s) for i, s in zip(ranked, scores) if i not in excluded]
        ranked, scores = [i for i, _ in kept], [s for _, s in kept]
    return ranked[:k], scores[:k], ranked[k:]


def recall_at_k(retr: Retriever, targets: dict[str, str], excluded: dict[str, set], k: int) -> dict[str, Any]:
    """Share of the answered prompts whose target is in the retriever's first k: the ceiling of
    any reranking of those k (hits and prompts kept as integers so shards add up exactly)."""
    hits = 0
    for pid, target in targets.items():
        ranked, scores = retr.lists[pid]
        top, _, _ = head(ranked, scores, excluded.get(pid, set()), k)
        hits += target in top
    n = len(targets)
    return {"hits": hits, "prompts": n, "recall_at_k": hits / n if n else 0.0}
