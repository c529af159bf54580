"""The first stage of two-stage ranking: a predictions file whose ranked lists (with scores)
`recsys infer --candidates-from PRED --rerank-k K` reranks (docs/rerank.md).

    recsys baseline itemknn --data R --split valid --top-k 100 --out R/predictions/valid/itemknn.parquet
    recsys infer --data R --checkpoint C --split valid --candidates-from R/predictions/valid/itemknn.parquet --rerank-k 50

Everything is checked before the model loads, each failure one line naming the file and row:
the file is Parquet with prompt_id / ranked / scores; when it carries provenance it was made
on --data's textualize output and on the same split; every selected ranking prompt has a row;
a list names real, distinct items (a direct prompt's list only its candidates) and has a
finite score for each of its first K items.
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


def _frame(path: Path) -> pl.DataFrame:
    try:
        df = pl.read_parquet(path)
    except Exception as exc:
        raise InputError.at(path, None, f"a readable Parquet predictions file ({type(exc).__name__})")
    missing = [c for c in ("prompt_id", "ranked", "scores") if c not in df.columns]
    if missing:
        raise InputError.at(path, None, f"a predictions file with columns prompt_id, ranked, scores; missing {missing} (found {df.columns})")
    want = {"prompt_id": pl.Utf8, "ranked": pl.List(pl.Utf8)}
    for col, dtype in want.items():
        if df.schema[col] != dtype:
            raise InputError.at(path, f"column {col}", f"{dtype}; found {df.schema[col]}")
    if not isinstance(df.schema["scores"], pl.List) or not df.schema["scores"].inner.is_numeric():
        raise InputError.at(path, "column scores", f"a list of numbers per row; found {df.schema['scores']}")
    return df.select("prompt_id", "ranked", pl.col("scores").cast(pl.List(pl.Float64)))


def load(path: Path, data: Path, split: str, prompts: pl.DataFrame, k: int, items: set[str]) -> Retriever:
    """Read and check the retriever for `prompts` (the selected ranking prompts: prompt_id,
    candidates). Only the rows of those prompts are kept."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: --candidates-from file not found (write one with `recsys baseline itemknn|sasrec --top-k N` or `recsys infer`)", exit_code=2)
    prov = provenance.check_data(path, data)
    got_split = ((prov or {}).get("settings") or {}).get("split")
    if got_split is not None and got_split != split:
        raise InputError.at(path, None, f"ranked lists for split {split!r}; this file answers split {got_split!r}")
    df = _frame(path).with_row_index("_row")
    dup = df["prompt_id"].is_duplicated()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise InputError.at(path, f"row {row}", f"prompt_id {df['prompt_id'][row]!r} repeated; expected one row per prompt")
    need = prompts.select("prompt_id", "candidates")
    joined = need.join(df, on="prompt_id", how="left")
    missing = joined["_row"].is_null()
    if missing.any():
        pid = joined["prompt_id"][int(missing.arg_true()[0])]
        raise InputError.at(path, None, f"a ranked list for every selected ranking prompt; prompt {pid!r} ({int(missing.sum())} of {joined.height}) has none")
    lists = {}
    for pid, cands, row, ranked, scores in joined.iter_rows():
        lists[pid] = _check_row(path, row, pid, ranked, scores, cands, k, items)
    return Retriever(path, identity_of(path, prov), (prov or {}).get("producer"), lists)


def _check_row(path, row, pid, ranked, scores, cands, k, items) -> tuple[list[str], list[float]]:
    where = f"row {row}"
    ranked = list(ranked or [])
    scores = list(scores or [])
    if len(scores) != len(ranked):
        raise InputError.at(path, where, f"one score per ranked item for prompt {pid!r}; found {len(ranked)} items and {len(scores)} scores")
    if len(set(ranked)) != len(ranked):
        dupe = next(i for n, i in enumerate(ranked) if i in ranked[:n])
        raise InputError.at(path, where, f"distinct item ids; {dupe!r} appears twice in prompt {pid!r}'s list")
    allowed = set(cands) if cands is not None and len(cands) > 1 else items
    bad = [i for i in ranked if i is None or i not in allowed]
    if bad:
        what = "the prompt's candidates" if allowed is not items else "item ids of items.parquet"
        raise InputError.at(path, where, f"{what}; prompt {pid!r} ranks {bad[0]!r}")
    for n, s in enumerate(scores[:k]):
        if s is None or not math.isfinite(s):
            raise InputError.at(path, where, f"a finite score for each of the first {k} items; item {n} of prompt {pid!r} has {s!r}")
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
