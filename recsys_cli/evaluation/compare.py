"""`recsys score --compare A B ...`: is each method better than the first file beyond noise?

    rows = score_files(data, paths, task="sequential")
    add_paired_intervals(data, paths, rows)   # rows of B, C, ... gain "vs_first"

For every ranking table row (family, seen or unseen templates) of a method after the first, the
prompts both that method's file and the first file answered are paired, and the paired bootstrap
(evaluation/bootstrap.py) gives the mean NDCG@10 and HR@10 difference (method - first) with its
95% interval. The row's own metrics stay those of all its prompts (or of the --common-prompts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.evaluation import metrics, report
from recsys_cli.evaluation.bootstrap import RESAMPLES, paired_bootstrap

PAIRED_METRICS = ("NDCG@10", "HR@10")


def _ranks(data: Path, path: Path, prompts: pl.DataFrame) -> pl.DataFrame:
    """prompt_id, family, seen and the target's 0-based rank for one file's ranking prompts."""
    joined = report.join_prompts(read_predictions(path, data, strict_lists=False), prompts, Path(path))
    ranking = joined.filter(report.metric_kinds(joined) == "ranking")
    rank = metrics.truth_ranks(ranking["ranked"], ranking["item_id"])
    return ranking.select("prompt_id", "family", "seen").with_columns(rank=pl.Series(rank, dtype=pl.Int64))


def add_paired_intervals(
    data: Path, paths: Sequence[Path], rows: list[dict], resamples: int = RESAMPLES, seed: int = 0
) -> None:
    """Attach `vs_first` ({"against", "n", "NDCG@10": interval, "HR@10": interval}) to the ranking rows
    of every method but the first, in place. Rows of other kinds are left as they are."""
    names = report.method_names(paths)
    if len(paths) < 2 or not any(r["kind"] == "ranking" for r in rows):
        return
    cols = ["prompt_id", "family", "template_id", "seen", "split", "item_id", "target", "candidates"]
    prompts = read_artifact(data, schemas.PROMPTS, cols)
    first = _ranks(data, paths[0], prompts)
    for name, path in zip(names[1:], paths[1:]):
        pairs = _ranks(data, path, prompts).join(first.select("prompt_id", first_rank="rank"), on="prompt_id")
        for row in (r for r in rows if r["method"] == name and r["kind"] == "ranking"):
            part = pairs.filter((pl.col("family") == row["family"]) & (pl.col("seen") == row["seen"]))
            a, b = part["rank"].to_numpy(), part["first_rank"].to_numpy()
            found: dict[str, Any] = {"against": names[0], "n": part.height}
            found.update({m: paired_bootstrap(a, b, m, resamples, seed) for m in PAIRED_METRICS})
            row["vs_first"] = found
