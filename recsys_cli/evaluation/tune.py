"""Choosing the second stage's scorer, depth K and fusion weight W on the VALIDATION split, without
re-running the LLM (`recsys tune`, docs/rerank.md).

    recsys tune --data R --rerank R/rerank-valid-k20.parquet R/rerank-valid-k50.parquet \
        --retriever R/predictions/valid/sasrec.parquet --out R/tuning.json
    recsys infer --data R --checkpoint C --split test --candidates-from R/predictions/test/sasrec.parquet \
        --tuning R/tuning.json

Input: `recsys infer --split valid --candidates-from RET --rerank-k K --fusion 1` files (their
scores for the first K items are the LLM's log-softmax over those candidates; the scorer is the
run's --item-scoring) and RET itself. For every W, the list `infer --rerank-k K --fusion W` would
write is recomputed exactly: W only mixes two stored, normalised score lists (inference/fusion.py).

The rule (RULE, applied by `decide` only): take the (scorer, K, W) with the best validation
NDCG@10; keep W = 0, the retriever alone, unless the paired 95% bootstrap interval
(evaluation/bootstrap.py) of its NDCG@10 gain over the retriever on the same prompts excludes 0.
The tuning file records the rule, the full validation table, the interval and the outcome, and
the data fingerprint, so `infer --tuning` refuses it on other data (the file's format and that
checked read: artifacts/tuning.py).

`sweep` (also used by bench/quality.py) adds smaller K (<= the run's K) from one file: exact
with `--item-scoring full`, full-norm or pmi (PER_ITEM_SCORINGS: each title's score does not
depend on the other candidates, and log-softmax over a subset is a shift); *approximate* with the constrained
walker, whose per-token softmax is over the tokens that continue the run's candidates. Such rows
are marked `exact: False` and never chosen. `recsys tune` uses each file's own K only.
Every function here refuses anything but validation-split W = 1 files of that retriever on --data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import data_fingerprint, read_artifact
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.artifacts.tuning import FORMAT, VERSION, scorer_of
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.evaluation.bootstrap import RESAMPLES, paired_bootstrap
from recsys_cli.evaluation.metrics import ranking_from_ranks, truth_ranks
from recsys_cli.inference import fusion, retriever
from recsys_cli.inference.candidates import PER_ITEM_SCORINGS
from recsys_cli.inference.options import history_of

# fine near 0 (a weak LLM's order may still add a little to a strong retriever's), then steps of 0.1
W_GRID = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
RULE_METRIC = "NDCG@10"
RULE = (
    "keep W = 0 (the retriever alone) unless the paired 95% bootstrap interval of the NDCG@10 gain of the best "
    "(scorer, K, W) over the retriever, on the same validation prompts, excludes 0"
)


def _check(rerank: Path, retr_path: Path, data: Path, split: str = "valid") -> dict[str, Any]:
    prov = provenance.check_data(rerank, data)
    settings = (prov or {}).get("settings") or {}
    if not settings.get("retriever"):
        raise InputError.at(
            rerank, None, "a two-stage predictions file from `recsys infer --candidates-from ... --rerank-k K`"
        )
    if settings.get("split") != split:
        raise InputError.at(
            rerank,
            None,
            f"predictions on the validation split (scorer, K and W are chosen on valid "
            f"only; tuning on test is never allowed); this file is split "
            f"{settings.get('split')!r}",
        )
    if settings.get("fusion") != 1.0:
        raise InputError.at(
            rerank,
            None,
            f"a run with --fusion 1 (its scores are the LLM's alone); this file has fusion {settings.get('fusion')!r}",
        )
    want = settings["retriever"]
    got = retriever.identity_of(retr_path, provenance.read(retr_path))
    key = "provenance_sha256" if "provenance_sha256" in want else "file_sha256"
    if got.get(key) != want.get(key):
        raise InputError.at(
            retr_path, None, f"the retriever {rerank} was reranked from ({want.get('path')}); this file differs ({key})"
        )
    return settings


def load_cases(data: Path, rerank: Path, retr_path: Path, split: str = "valid") -> tuple[dict[str, Any], list[tuple]]:
    """(the run's settings, [(prompt_id, target, first K_run items, their retriever scores, their LLM
    scores, the rest of the retriever's list)]) for the ranking prompts of a W = 1 run on `split`."""
    data, rerank, retr_path = Path(data), Path(rerank), Path(retr_path)
    settings = _check(rerank, retr_path, data, split)
    k_run = int(settings["rerank_k"])
    preds = read_predictions(rerank, data, need_scores=True).select("prompt_id", "ranked", "scores")
    prompts = read_artifact(data, schemas.PROMPTS, ["prompt_id", "user_id", "item_id", "candidates"])
    joined = preds.with_row_index("_row").join(prompts, on="prompt_id", how="inner")
    joined = joined.filter(pl.col("ranked").is_not_null())
    retr = retriever.load(retr_path, data, split, joined.select("prompt_id", "candidates"), k_run)
    histories = {}
    if settings.get("exclude_history"):
        seqs = read_artifact(data, schemas.SEQUENCES)
        histories = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    cases = []
    for row, pid, ranked, scores, user, target in joined.select(
        "_row", "prompt_id", "ranked", "scores", "user_id", "item_id"
    ).iter_rows():
        excl = history_of(histories.get(user, []), split, target) if histories else set()
        head, ret, rest = retriever.head(*retr.lists[pid], excl, k_run)
        llm = {i: s for i, s in zip(ranked, scores) if s is not None}
        if set(llm) != set(head):
            raise InputError.at(
                rerank,
                f"row {row}",
                f"scores for exactly the retriever's first {k_run} items of prompt {pid!r}; they differ",
            )
        cases.append((pid, target, head, ret, [llm[i] for i in head], rest))
    return settings, cases


def ranking(case: tuple, k: int, w: float) -> list[str]:
    """The list for this prompt at (k, w): what `infer --rerank-k k --fusion w` writes when k is
    the run's K or the run used a PER_ITEM_SCORINGS scorer such as full (see the module docstring)."""
    _, _, head, ret, llm, rest = case
    return fusion.rerank(head[:k], ret[:k], llm[:k], head[k:] + rest, w)[0]


def fused_rankings(data: Path, rerank: Path, retr_path: Path, w: float, split: str) -> dict[str, list[str]]:
    """prompt_id -> the list `infer --fusion w` would write at the run's K, from one W = 1 run of
    any split: applying a weight chosen on validation to a test run needs no second LLM pass."""
    settings, cases = load_cases(data, rerank, retr_path, split)
    return {c[0]: ranking(c, int(settings["rerank_k"]), w) for c in cases}


def target_ranks(cases: Sequence[tuple], k: int, w: float) -> np.ndarray:
    """0-based rank of each case's target in its (k, w) list (10 when outside the first 10): int64 [N]."""
    lists = pl.Series([ranking(c, k, w) for c in cases], dtype=pl.List(pl.Utf8))
    return truth_ranks(lists, pl.Series([c[1] for c in cases], dtype=pl.Utf8))


def _recall(cases: Sequence[tuple], k: int) -> float:
    return float(np.mean([c[1] in c[2][:k] for c in cases])) if cases else 0.0


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
        exact = k == k_run or scorer_of(settings) in PER_ITEM_SCORINGS
        for w in ws:
            rows.append(
                {
                    "k": k,
                    "w": w,
                    "exact": exact,
                    "recall@K": _recall(cases, k),
                    "n": len(cases),
                    **ranking_from_ranks(target_ranks(cases, k, w)),
                }
            )
    return {
        "rerank": str(rerank),
        "retriever": str(retr_path),
        "k_run": k_run,
        "prompts": len(cases),
        "rows": rows,
        "best": best_row(rows),
    }


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Highest NDCG@10 among exact rows (then HR@10, then the smaller K, then the smaller W)."""
    exact = [r for r in rows if r.get("exact", True)]
    return max(exact, key=lambda r: (r["NDCG@10"], r["HR@10"], -r["k"], -r["w"])) if exact else None


def decide(best: dict[str, Any], gain: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """RULE, the one place it is applied: (the chosen scorer, K and W; the outcome in words)."""
    what = f"scorer {best['scorer']}, K {best['k']}, W {best['w']}"
    interval = f"{gain['diff']:+.4f} [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}]"
    if best["w"] > 0 and gain["diff"] > 0 and gain["excludes_0"]:
        return (
            {"scorer": best["scorer"], "k": best["k"], "w": best["w"]},
            f"chose {what}: its NDCG@10 gain over the retriever on validation, {interval}, excludes 0",
        )
    why = (
        "the retriever alone is the best" if best["w"] == 0 else f"the best ({what}) gains {interval}, which includes 0"
    )
    return {"scorer": best["scorer"], "k": best["k"], "w": 0.0}, f"kept W = 0 (the retriever alone): {why}"


def _runs(data: Path, reranks: Sequence[Path], retr_path: Path) -> list[dict[str, Any]]:
    """Each W = 1 file's scorer, K and cases, all restricted to the prompts every file answers."""
    runs: list[dict[str, Any]] = []
    for path in reranks:
        settings, cases = load_cases(data, path, retr_path)
        run: dict[str, Any] = {
            "path": Path(path),
            "scorer": scorer_of(settings),
            "k": int(settings["rerank_k"]),
            "cases": cases,
        }
        twin = next((r for r in runs if (r["scorer"], r["k"]) == (run["scorer"], run["k"])), None)
        if twin is not None:
            raise InputError.at(
                path,
                None,
                f"one file per (scorer, K); {twin['path']} is also scorer {run['scorer']!r} with K {run['k']}",
            )
        runs.append(run)
    common = set.intersection(*({c[0] for c in r["cases"]} for r in runs))
    if not common:
        raise RecsysError(
            f"{', '.join(str(r['path']) for r in runs)}: no ranking prompt is answered by every file; "
            "rerank the same validation prompts (--prompt-ids FILE) with each scorer and K",
            2,
        )
    for run in runs:
        run["answered"] = len(run["cases"])
        run["cases"] = sorted((c for c in run["cases"] if c[0] in common), key=lambda c: c[0])
    return runs


def tune(
    data: Path,
    reranks: Sequence[Path],
    retr_path: Path,
    ws: Sequence[float] = W_GRID,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """The tuning record: every (scorer, K, W) on the common validation prompts, the best one, the
    paired interval of its NDCG@10 gain over the retriever, and what RULE chose."""
    data, retr_path = Path(data), Path(retr_path)
    runs = _runs(data, reranks, retr_path)
    rows, ranks = [], {}
    for n, run in enumerate(runs):
        for w in ws:
            ranks[n, w] = target_ranks(run["cases"], run["k"], w)
            rows.append(
                {
                    "scorer": run["scorer"],
                    "k": run["k"],
                    "w": w,
                    "file": str(Path(run["path"]).resolve()),
                    "n": len(run["cases"]),
                    "recall@K": _recall(run["cases"], run["k"]),
                    **ranking_from_ranks(ranks[n, w]),
                    "_run": n,
                }
            )
    best = best_row(rows)
    if best is None:
        raise RecsysError(f"{', '.join(map(str, reranks))}: no exact (scorer, K, W) row to tune on", 2)
    n_best = best["_run"]
    base = ranks[n_best, 0.0] if (n_best, 0.0) in ranks else target_ranks(runs[n_best]["cases"], best["k"], 0.0)
    gain = paired_bootstrap(ranks[n_best, best["w"]], base, RULE_METRIC, resamples, seed)
    rows = [{k: v for k, v in r.items() if k != "_run"} for r in rows]
    best = {k: v for k, v in best.items() if k != "_run"}
    chosen, outcome = decide(best, gain)
    retr_prov = provenance.read(retr_path)
    return {
        "format": FORMAT,
        "version": VERSION,
        "split": "valid",
        "data_fingerprint": data_fingerprint(data),
        "retriever": {**retriever.identity_of(retr_path, retr_prov), "producer": (retr_prov or {}).get("producer")},
        "rerank": [
            {
                "scorer": r["scorer"],
                "k": r["k"],
                "answered": r["answered"],
                **retriever.identity_of(r["path"], provenance.read(r["path"])),
            }
            for r in runs
        ],
        "prompts": len(runs[0]["cases"]),
        "w_grid": list(ws),
        "rule": RULE,
        "bootstrap": {"metric": RULE_METRIC, "resamples": resamples, "seed": seed},
        "best": best,
        "gain": gain,
        "chosen": chosen,
        "outcome": outcome,
        "rows": rows,
    }
