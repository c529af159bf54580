"""Choosing K and the fusion weight W on the validation split without re-running the LLM.

    python bench/fusion_sweep.py --data R --rerank R/rerank-valid-k20.parquet R/rerank-valid-k50.parquet \
        --retriever R/predictions/valid/sasrec.parquet --ws 0:1:0.1

Input: a `recsys infer --split valid --candidates-from RET --rerank-k K_run --fusion 1` file
(its scores for the first K_run items are the LLM's log-softmax over those candidates) and RET
itself. For every W, the ranking `infer --rerank-k K_run --fusion W` would write is recomputed
exactly: W only mixes two stored, normalised score lists.

Smaller K (<= K_run) from the same file: exact with `--item-scoring full` (each title's summed
log-prob does not depend on the other candidates, and log-softmax over a subset is a shift);
*approximate* with the default constrained scoring, whose per-token softmax is taken over
the tokens that continue the K_run candidates, so removing candidates changes the remaining
titles' relative scores where they share a prefix. Such rows are marked `exact: False`;
choose K among exact rows (one W = 1 run per candidate K). Refuses anything but a
validation-split W = 1 file of that retriever on --data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.errors import InputError
from recsys_cli.evaluation.metrics import ranking_from_ranks
from recsys_cli.inference import fusion, retriever
from recsys_cli.inference.runner import history_of


def _check(rerank: Path, retr_path: Path, data: Path, split: str = "valid") -> dict[str, Any]:
    prov = provenance.check_data(rerank, data)
    settings = (prov or {}).get("settings") or {}
    if not settings.get("retriever"):
        raise InputError.at(rerank, None, "a two-stage predictions file from `recsys infer --candidates-from ... --rerank-k K`")
    if settings.get("split") != split:
        raise InputError.at(rerank, None, f"predictions on the validation split (K and W are chosen on valid only); this file is split {settings.get('split')!r}")
    if settings.get("fusion") != 1.0:
        raise InputError.at(rerank, None, f"a run with --fusion 1 (its scores are the LLM's alone); this file has fusion {settings.get('fusion')!r}")
    want = settings["retriever"]
    got = retriever.identity_of(retr_path, provenance.read(retr_path))
    key = "provenance_sha256" if "provenance_sha256" in want else "file_sha256"
    if got.get(key) != want.get(key):
        raise InputError.at(retr_path, None, f"the retriever {rerank} was reranked from ({want.get('path')}); this file differs ({key})")
    return settings


def load_cases(data: Path, rerank: Path, retr_path: Path, split: str = "valid") -> tuple[dict[str, Any], list[tuple]]:
    """(the run's settings, [(prompt_id, target, first K_run items, their retriever scores, their LLM scores,
    the rest of the retriever's list)]) for the ranking prompts of a W = 1 run on `split`."""
    data, rerank, retr_path = Path(data), Path(rerank), Path(retr_path)
    settings = _check(rerank, retr_path, data, split)
    k_run = int(settings["rerank_k"])
    preds = pl.read_parquet(rerank, columns=["prompt_id", "ranked", "scores"]).with_row_index("_row")
    prompts = read_artifact(data, schemas.PROMPTS, ["prompt_id", "user_id", "item_id", "candidates"])
    joined = preds.join(prompts, on="prompt_id", how="inner").filter(pl.col("ranked").is_not_null())
    retr = retriever.load(retr_path, data, split, joined.select("prompt_id", "candidates"), k_run,
                          set(read_artifact(data, schemas.ITEMS, ["item_id"])["item_id"].to_list()))
    histories = {}
    if settings.get("exclude_history"):
        seqs = read_artifact(data, schemas.SEQUENCES)
        histories = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    cases = []
    for row, pid, ranked, scores, user, target in joined.select("_row", "prompt_id", "ranked", "scores", "user_id", "item_id").iter_rows():
        excl = history_of(histories.get(user, []), split, target) if histories else set()
        items, ret, rest = retriever.head(*retr.lists[pid], excl, k_run)
        llm = {i: s for i, s in zip(ranked, scores) if s is not None}
        if set(llm) != set(items):
            raise InputError.at(rerank, f"row {row}", f"scores for exactly the retriever's first {k_run} items of prompt {pid!r}; they differ")
        cases.append((pid, target, items, ret, [llm[i] for i in items], rest))
    return settings, cases


def ranking(case: tuple, k: int, w: float) -> list[str]:
    """The list for this prompt at (k, w): what `infer --rerank-k k --fusion w` writes when k is
    the run's K or the run used --item-scoring full (see the module docstring)."""
    _, _, items, ret, llm, rest = case
    return fusion.rerank(items[:k], ret[:k], llm[:k], items[k:] + rest, w)[0]


def fused_rankings(data: Path, rerank: Path, retr_path: Path, w: float, split: str) -> dict[str, list[str]]:
    """prompt_id -> the list `infer --fusion w` would write at the run's K, from one W = 1 run of
    any split: applying a weight chosen on validation to a test run needs no second LLM pass."""
    settings, cases = load_cases(data, rerank, retr_path, split)
    return {c[0]: ranking(c, int(settings["rerank_k"]), w) for c in cases}


def sweep(data: Path, rerank: Path, retr_path: Path, ks: Sequence[int], ws: Sequence[float]) -> dict[str, Any]:
    """HR/NDCG@{1,5,10} and the retriever's recall@K for every (K, W) on the file's prompts
    (`ks` empty: the run's K only). `best`: the exact row with the highest NDCG@10."""
    settings, cases = load_cases(data, rerank, retr_path)
    k_run = int(settings["rerank_k"])
    ks = list(ks) or [k_run]
    bad = [k for k in ks if not 1 <= k <= k_run]
    if bad:
        raise InputError.at(rerank, None, f"K values between 1 and the run's rerank_k {k_run}; got {bad}")
    rows = []
    for k in ks:
        recall = float(np.mean([c[1] in c[2][:k] for c in cases])) if cases else 0.0
        for w in ws:
            ranks = np.array([_rank(c[1], ranking(c, k, w)) for c in cases], dtype=np.int64)
            exact = k == k_run or settings.get("item_scoring") == "full"
            rows.append({"k": k, "w": w, "exact": exact, "recall@K": recall, "n": len(cases), **ranking_from_ranks(ranks)})
    best = best_row(rows)
    return {"rerank": str(rerank), "retriever": str(retr_path), "k_run": k_run, "prompts": len(cases), "rows": rows, "best": best}


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest NDCG@10 among exact rows (then HR@10, then the smaller K)."""
    exact = [r for r in rows if r["exact"]]
    return max(exact, key=lambda r: (r["NDCG@10"], r["HR@10"], -r["k"])) if exact else None


def _rank(target: str, ranked: list[str]) -> int:
    try:
        return ranked.index(target)
    except ValueError:
        return 1 << 30
