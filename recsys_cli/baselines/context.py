"""What every baseline shares: the leave-one-out context of a split and the predictions
file it writes (PREDICTIONS_SCHEMA, one row per prompt of the families it answers).

Leave-one-out on `sequences.parquet` (data/split.py): items[-1] is the test target, items[-2]
the valid target, the rest train; a prompt sees the items before its target. Sequential prompts get a full ranking over all items (top `k`); nothing is
excluded, history items included, as P5 and the paper rank. Direct prompts get their
candidates ranked. A prompt whose user has no sequence gets an empty list (valid=False).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact, write_parquet
from recsys_cli.data import split as loo
from recsys_cli.errors import RecsysError

BASELINE_SPLITS = ("test", "valid")


@dataclass
class Context:
    items: list[str]  # all item ids (items.parquet, plus any only seen in sequences), sorted
    index: dict[str, int]  # item id -> column 0..N-1
    histories: dict[str, list[str]]  # user -> history visible for the split
    train: dict[str, list[str]]  # user -> training part (items[:-2])
    sequences: dict[str, list[str]]  # user -> full sequence (for models that hold out the tail themselves)
    prompts: pl.DataFrame  # the split's prompts of the ranking families


def load_context(data: Path, split: str, families=schemas.RANKING_FAMILIES) -> Context:
    if split not in BASELINE_SPLITS:
        raise RecsysError(f"--split {split!r}: expected one of {', '.join(BASELINE_SPLITS)}", 2)
    seqs = read_artifact(data, schemas.SEQUENCES, ["user_id", "items"])
    item_ids = read_artifact(data, schemas.ITEMS, ["item_id"])["item_id"].to_list()
    all_items = sorted(set(item_ids) | {i for s in seqs["items"].to_list() for i in s})
    users = seqs["user_id"].to_list()
    lists = seqs["items"].to_list()
    cols = ["prompt_id", "family", "template_id", "seen", "split", "user_id", "item_id", "candidates"]
    prompts = read_artifact(data, schemas.PROMPTS, cols).filter(
        (pl.col("split") == split) & pl.col("family").is_in(list(families))
    )
    return Context(
        items=all_items,
        index={i: n for n, i in enumerate(all_items)},
        histories={u: loo.history(s, split) for u, s in zip(users, lists)},
        train={u: loo.train_items(s) for u, s in zip(users, lists)},
        sequences=dict(zip(users, lists)),
        prompts=prompts.sort("prompt_id"),
    )


def is_ranking_prompt(prompts: pl.DataFrame) -> pl.Series:
    """Sequential prompts and direct prompts with candidates (yes/no prompts are not ranked)."""
    return (pl.col("family") == "sequential") | pl.col("candidates").is_not_null()


def rank_prompts(ctx: Context, score_user, k: int = 20) -> pl.DataFrame:
    """Predictions rows for the context's ranking prompts. `score_user(user)` returns a float
    array over ctx.items (higher is better) or None for an unknown user."""
    prompts = ctx.prompts.filter(is_ranking_prompt(ctx.prompts))
    cache: dict[str, np.ndarray | None] = {}
    rows = {c: [] for c in schemas.PREDICTIONS_SCHEMA}
    for pid, fam, tid, seen, user, cands in prompts.select(
        "prompt_id", "family", "template_id", "seen", "user_id", "candidates"
    ).iter_rows():
        if user not in cache:
            cache[user] = score_user(user)
        scores = cache[user]
        if scores is None:
            ranked, vals = [], []
        elif cands is None:  # full ranking over all items
            top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
            top = top[np.lexsort((top, -scores[top]))]  # by score, ties by item order
            ranked, vals = [ctx.items[j] for j in top], [float(scores[j]) for j in top]
        else:  # rank the prompt's candidates; unknown candidate ids go last
            cidx = np.array([ctx.index.get(c, -1) for c in cands])
            cs = np.where(cidx >= 0, scores[np.maximum(cidx, 0)], -np.inf)
            order = np.lexsort((np.arange(len(cands)), -cs))
            ranked, vals = [cands[j] for j in order], [float(cs[j]) for j in order]
        rows["prompt_id"].append(pid)
        rows["family"].append(fam)
        rows["template_id"].append(tid)
        rows["seen"].append(seen)
        rows["output"].append(ranked[0] if ranked else "")
        rows["ranked"].append(ranked)
        rows["scores"].append(vals)
        rows["valid"].append(bool(ranked))
    return pl.DataFrame(rows, schema=schemas.PREDICTIONS_SCHEMA)


def write_predictions(df: pl.DataFrame, out: Path) -> Path:
    write_parquet(df, Path(out), schemas.PREDICTIONS_SCHEMA)
    return Path(out)
