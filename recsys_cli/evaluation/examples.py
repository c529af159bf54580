"""Predictions as text a person reads: a prompt with the model's answer and the reference, and
one user's history beside the top of their ranked list (`recsys show`).

    recsys show answers --data runs/mi --predictions runs/mi/pred.parquet --family rating -n 1
    recsys show user --data runs/toys --predictions runs/toys/pred-sequential.parquet -k 5
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.data import split as loo
from recsys_cli.errors import RecsysError
from recsys_cli.evaluation.report import join_prompts


def _titles(data: Path) -> dict[str, str]:
    items = read_artifact(data, schemas.ITEMS, ["item_id", "title"])
    return dict(zip(items["item_id"].to_list(), items["title"].to_list()))


def answers(
    data: Path, predictions: Path, family: str | None = None, prompt_ids: list[str] | None = None, n: int = 1
) -> list[dict]:
    """The first `n` answered prompts (of `family`, or exactly `prompt_ids`), in file order:
    prompt text, the model's output (and top-5 titles for ranked families), the reference."""
    preds = read_predictions(predictions, data, strict_lists=False)  # shown as written, unknown ids too
    prompts = read_artifact(
        data,
        schemas.PROMPTS,
        ["prompt_id", "family", "template_id", "seen", "split", "user_id", "source", "target", "item_id"],
    )
    df = join_prompts(preds, prompts, predictions)
    if family is not None:
        df = df.filter(pl.col("family") == family)
    if prompt_ids:
        df = df.filter(pl.col("prompt_id").is_in(prompt_ids))
    if df.is_empty():
        what = f"family {family}" if family else "the given prompt ids"
        raise RecsysError(f"{predictions}: no answered prompt of {what}")
    titles = _titles(data)
    rows = []
    for r in df.head(n).iter_rows(named=True):
        row = {
            "prompt_id": r["prompt_id"],
            "family": r["family"],
            "template_id": r["template_id"],
            "seen": r["seen"],
            "prompt": r["source"],
            "output": r["output"],
            "reference": r["target"],
        }
        if r.get("ranked"):
            row["top_titles"] = [titles.get(i, i) for i in r["ranked"][:5]]
        rows.append(row)
    return rows


def user_view(data: Path, predictions: Path, user: str | None = None, k: int = 5, history: int = 10) -> dict:
    """One user's last `history` titles before a ranked prompt's target, the top-`k` titles the
    predictions file ranks for it, and whether the held-out item is among them. Default user:
    the first one with a ranked (sequential or direct) answer, in file order."""
    preds = read_predictions(predictions, data, strict_lists=False).filter(pl.col("ranked").list.len() > 0)
    prompts = read_artifact(data, schemas.PROMPTS, ["prompt_id", "family", "split", "user_id", "item_id"])
    df = join_prompts(preds, prompts, predictions)
    if user is not None:
        df = df.filter(pl.col("user_id") == user)
    if df.is_empty():
        raise RecsysError(f"{predictions}: no ranked answer{' for user ' + user if user else ''}")
    r = df.row(0, named=True)
    seqs = read_artifact(data, schemas.SEQUENCES).filter(pl.col("user_id") == r["user_id"])
    items = seqs["items"][0].to_list() if seqs.height else []
    past = loo.history(items, r["split"], r["item_id"]) if items else []
    titles = _titles(data)
    top = r["ranked"][:k]
    return {
        "user_id": r["user_id"],
        "prompt_id": r["prompt_id"],
        "family": r["family"],
        "split": r["split"],
        "history_titles": [titles.get(i, i) for i in past[-history:]],
        "history_length": len(past),
        "top_titles": [titles.get(i, i) for i in top],
        "held_out_title": titles.get(r["item_id"], r["item_id"]),
        "held_out_rank": (top.index(r["item_id"]) + 1) if r["item_id"] in top else None,
    }
