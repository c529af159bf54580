"""Scoring speed: 1,000,000 ranking predictions (top-10 lists) and BLEU/ROUGE on 100,000 pairs.

    python bench/score.py                 # writes bench/results/score.json
    python bench/score.py --rows 200000 --pairs 20000   # quicker

Targets (issue 6): ranking <= 10 s end to end (`score_files`: read Parquet, join to the
prompts, metrics); BLEU + ROUGE-1/2/L on 100,000 pairs <= 60 s on 2 cores. Text pairs are
real review sentences (Amazon Musical Instruments 2014); the reference is rouge-score,
timed on a sample and measured side by side in the same run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import tempfile
import time
from pathlib import Path

import common

MUSICAL = (
    common.ROOT.parent / "shared" / "data" / "amazon" / "musical_instruments" / "reviews_Musical_Instruments_5.json.gz"
)


def ranking_bench(rows: int, seed: int) -> dict:
    import numpy as np
    import polars as pl

    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import file_records, write_json, write_parquet
    from recsys_cli.evaluation.report import score_files

    rng = np.random.default_rng(seed)
    n_items = 11_924
    item_ids = np.array([str(i) for i in range(1, n_items + 1)])
    truth = item_ids[rng.integers(0, n_items, rows)]
    top = rng.integers(0, n_items + 50, (rows, 10))  # ids past n_items are not real items
    flat = np.array([str(i) for i in range(1, n_items + 51)])[top.ravel()]
    hit = rng.random(rows) < 0.1  # plant the truth at a random position in 10% of the lists
    flat = flat.reshape(rows, 10)
    flat[hit, rng.integers(0, 10, int(hit.sum()))] = truth[hit]
    ranked = pl.Series("ranked", flat.tolist(), dtype=pl.List(pl.Utf8))
    pid = pl.Series("prompt_id", [f"p{i:07d}" for i in range(rows)])
    seen = pl.Series("seen", rng.random(rows) < 0.5)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_parquet(pl.DataFrame({"item_id": item_ids}), d / schemas.ITEMS, {"item_id": pl.Utf8})
        prompts = pl.DataFrame(
            {
                "prompt_id": pid,
                "family": ["sequential"] * rows,
                "template_id": ["sequential-1"] * rows,
                "seen": seen,
                "split": ["test"] * rows,
                "item_id": truth,
                "target": truth,
                "candidates": pl.Series([None] * rows, dtype=pl.List(pl.Utf8)),
            }
        )
        write_parquet(prompts, d / schemas.PROMPTS, {c: schemas.PROMPTS_SCHEMA[c] for c in prompts.columns})
        run_files = file_records(
            d, [schemas.ITEMS, schemas.PROMPTS]
        )  # a run's manifest: commands read only complete runs
        write_json({"command": "textualize (bench data)", "files": run_files}, d / schemas.MANIFEST)
        preds = pl.DataFrame(
            {
                "prompt_id": pid,
                "family": ["sequential"] * rows,
                "template_id": ["sequential-1"] * rows,
                "seen": seen,
                "output": flat[:, 0],
                "ranked": ranked,
                "scores": pl.Series([None] * rows, dtype=pl.List(pl.Float64)),
                "valid": [True] * rows,
            }
        )
        write_parquet(preds, d / "preds.parquet", schemas.PREDICTIONS_SCHEMA)
        t0 = time.perf_counter()
        out = score_files(d, [d / "preds.parquet"], task="sequential")
        seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "target_seconds": 10.0,
        "ok": seconds <= 10.0,
        "HR@10_seen": round(out[0]["metrics"]["HR@10"], 4),
    }


def sentences(limit: int, seed: int) -> list[str]:
    texts = []
    with gzip.open(MUSICAL, "rt") as fh:
        for line in fh:
            texts.extend(
                s.strip() for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["reviewText"]) if len(s.split()) >= 3
            )
    random.Random(seed).shuffle(texts)
    return texts[:limit]


def text_bench(pairs: int, seed: int) -> dict:
    from rouge_score import rouge_scorer

    from recsys_cli.evaluation import metrics as M

    pool = sentences(2 * pairs, seed)
    rng = random.Random(seed)
    refs = [pool[i % len(pool)] for i in range(pairs)]
    # hypotheses: a related sentence (half the reference's words + a random sentence's words)
    hyps = []
    for i, ref in enumerate(refs):
        words = ref.split()
        other = pool[rng.randrange(len(pool))].split()
        hyps.append(" ".join(words[: len(words) // 2] + other[: len(other) // 2]))
    result = {"pairs": pairs, "mean_ref_words": round(sum(len(r.split()) for r in refs) / pairs, 1)}
    for name, p5, order in (("standard", False, 4), ("p5", True, 4)):
        t0 = time.perf_counter()
        bleu = M.bleu_p5(hyps, refs, order) if p5 else M.bleu_standard(hyps, refs, order)
        t_bleu = time.perf_counter() - t0
        rouge = M.rouge_matrix(hyps, refs, p5=p5, workers=2)
        total = time.perf_counter() - t0
        result[name] = {
            "BLEU-4": round(bleu, 4),
            "ROUGE-L": round(float(rouge[:, 2].mean() * 100), 4),
            "bleu_seconds": round(t_bleu, 2),
            "total_seconds": round(total, 2),
            "target_seconds": 60.0,
            "ok": total <= 60.0,
        }
    sample = min(5000, pairs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    t0 = time.perf_counter()
    ref_scores = [scorer.score(r, h) for h, r in zip(hyps[:sample], refs[:sample])]
    t_ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = M.rouge_matrix(hyps[:sample], refs[:sample], workers=1)
    t_ours = time.perf_counter() - t0
    max_diff = max(abs(ours[i, 2] - s["rougeL"].fmeasure) for i, s in enumerate(ref_scores))
    result["rouge_score_reference"] = {
        "sample": sample,
        "rouge_score_seconds": round(t_ref, 2),
        "ours_1_process_seconds": round(t_ours, 2),
        "speedup": round(t_ref / max(t_ours, 1e-9), 2),
        "rouge_score_projected_seconds_for_all": round(t_ref * pairs / sample, 1),
        "max_abs_diff_rougeL": max_diff,
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "score.json")
    args = ap.parse_args()
    import polars as pl

    result = {
        "stage": "score",
        "ranking": ranking_bench(args.rows, args.seed),
        "text": text_bench(args.pairs, args.seed),
        "machine": common.machine(polars=pl.__version__),
    }
    common.write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
