"""What every baseline shares: the leave-one-out context of a split and the rows of the predictions
file it writes (artifacts/predictions.py: one row per ranking prompt, `output` the top item's title,
with provenance).

Leave-one-out on `sequences.parquet` (data/split.py): items[-1] is the test target, items[-2]
the valid target, the rest train. A prompt sees the items before its target: a test prompt
items[:-1], a valid prompt items[:-2], a train prompt at position t items[:t]
(`split.history(items, "train", target)`).

Ranking prompts: the prompts whose template answers an item (data/templates.py): sequential
prompts and direct "rank" prompts (with candidates; the train split's carry no list); yes/no
prompts are not ranked. A prompt without candidates gets a full ranking over all items (top
`k`, with scores). With `exclude_history` (the default) the user's own history items are left
out of that ranking: in P5-style data a sequence never repeats an item, so the next item is
always new. With it off every item is ranked, as P5 and the paper rank. A direct prompt's
candidates are always ranked as given. A prompt whose user has no sequence gets an empty list
(valid=False).

    python -c "from recsys_cli.baselines.context import load_context; \\
print(len(load_context('runs/toys', 'valid').items))"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data import split as loo
from recsys_cli.data.templates import ITEM, answer_types
from recsys_cli.errors import RecsysError

BASELINE_SPLITS = ("test", "valid", "train")


@dataclass
class Context:
    split: str
    items: list[str]  # all item ids (items.parquet, plus any only seen in sequences), sorted
    index: dict[str, int]  # item id -> column 0..N-1
    histories: dict[
        str, list[str]
    ]  # user -> what the split's models may count (valid/test: the prompt history; train: items[:-2])
    train: dict[str, list[str]]  # user -> training part (items[:-2])
    sequences: dict[str, list[str]]  # user -> full sequence (for models that hold out the tail themselves)
    prompts: pl.DataFrame  # the split's ranking prompts, by prompt_id
    titles: dict[str, str]  # item id -> title (a row's `output` is its top item's title)

    def prompt_history(self, user: str, target: str | None) -> list[str] | None:
        """The items a prompt of this split sees (None: unknown user)."""
        seq = self.sequences.get(user)
        if seq is None:
            return None
        return loo.history(seq, self.split, target if self.split == "train" else None)


def load_context(data: Path, split: str, families=schemas.RANKING_FAMILIES) -> Context:
    if split not in BASELINE_SPLITS:
        raise RecsysError(f"--split {split!r}: expected one of {', '.join(BASELINE_SPLITS)}", 2)
    seqs = read_artifact(data, schemas.SEQUENCES, ["user_id", "items"])
    items = read_artifact(data, schemas.ITEMS, ["item_id", "title"])
    item_ids = items["item_id"].to_list()
    all_items = sorted(set(item_ids) | {i for s in seqs["items"].to_list() for i in s})
    users = seqs["user_id"].to_list()
    lists = seqs["items"].to_list()
    cols = ["prompt_id", "family", "template_id", "seen", "split", "user_id", "item_id", "target", "candidates"]
    prompts = read_artifact(data, schemas.PROMPTS, cols).filter(
        (pl.col("split") == split) & pl.col("family").is_in(list(families))
    )
    ranking = answer_types(prompts["template_id"], str(Path(data) / schemas.PROMPTS)) == ITEM
    visible = "valid" if split == "train" else split  # train: items[:-2] (= the valid prompt's history)
    return Context(
        split=split,
        items=all_items,
        index={i: n for n, i in enumerate(all_items)},
        histories={u: loo.history(s, visible) for u, s in zip(users, lists)},
        train={u: loo.train_items(s) for u, s in zip(users, lists)},
        sequences=dict(zip(users, lists)),
        prompts=prompts.filter(ranking).sort("prompt_id"),
        titles=dict(zip(item_ids, items["title"].to_list())),
    )


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k best finite scores, best first, ties by column order."""
    finite = np.flatnonzero(np.isfinite(scores))
    if len(finite) > k:
        finite = finite[np.argpartition(-scores[finite], k - 1)[:k]]
    return finite[np.lexsort((finite, -scores[finite]))]


def per_user(score_user: Callable) -> Callable:
    """A scorer of `rank_prompts` from a per-user one (`score_user(user)` -> float [N] over
    ctx.items, or None); for models whose history is the user's (valid and test splits)."""

    def score(users: list[str], histories: list[list[str]]) -> np.ndarray:
        rows = [score_user(u) for u in users]
        n = next((len(r) for r in rows if r is not None), 0)
        return np.stack([np.full(n, np.nan) if r is None else np.asarray(r, dtype=np.float64) for r in rows])

    return score


def rank_prompts(
    ctx: Context, score: Callable, k: int = 20, exclude_history: bool = True, batch: int = 512
) -> pl.DataFrame:
    """Predictions rows for the context's ranking prompts. `score(users, histories)` maps a
    batch of prompt users and their histories (item id lists) to float scores
    [B, len(ctx.items)] (higher is better; a NaN row: the model does not know the user)."""
    rows = list(
        ctx.prompts.select("prompt_id", "family", "template_id", "seen", "user_id", "item_id", "candidates").iter_rows()
    )
    by_key: dict[tuple, list[int]] = {}
    for n, (_, _, _, _, user, target, _) in enumerate(rows):
        by_key.setdefault((user, target if ctx.split == "train" else None), []).append(n)
    ranked: list[list[str]] = [[] for _ in rows]
    vals: list[list[float]] = [[] for _ in rows]
    known = [(key, h) for key in by_key if (h := ctx.prompt_history(*key)) is not None]
    for start in range(0, len(known), batch):
        chunk = known[start : start + batch]
        block = np.asarray(score([key[0] for key, _ in chunk], [h for _, h in chunk]), dtype=np.float64)  # [B, N]
        for (key, hist), scores in zip(chunk, block):
            if np.isnan(scores).all():
                continue  # an unknown user: empty, invalid rows
            full = None
            for n in by_key[key]:
                cands = rows[n][6]
                if cands is None:  # full ranking over all items
                    if full is None:
                        s = scores.copy()
                        if exclude_history:
                            s[[ctx.index[i] for i in hist if i in ctx.index]] = -np.inf
                        top = _top(s, k)
                        full = ([ctx.items[j] for j in top], [float(s[j]) for j in top])
                    ranked[n], vals[n] = full
                else:  # rank the prompt's candidates; unknown candidate ids go last
                    cidx = np.array([ctx.index.get(c, -1) for c in cands])
                    cs = np.where(cidx >= 0, scores[np.maximum(cidx, 0)], -np.inf)
                    order = np.lexsort((np.arange(len(cands)), -cs))
                    ranked[n], vals[n] = [cands[j] for j in order], [float(cs[j]) for j in order]
    out = {
        "prompt_id": [r[0] for r in rows],
        "family": [r[1] for r in rows],
        "template_id": [r[2] for r in rows],
        "seen": [r[3] for r in rows],
        "output": [ctx.titles.get(r[0]) or r[0] if r else "" for r in ranked],
        "ranked": ranked,
        "scores": vals,
        "valid": [bool(r) for r in ranked],
    }
    return pl.DataFrame(out, schema=schemas.PREDICTIONS_SCHEMA)


def make_provenance(
    data: Path,
    name: str,
    config: dict[str, Any],
    split: str,
    top_k: int,
    exclude_history: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A baseline predictions file's provenance (artifacts/provenance.py)."""
    producer = {"kind": "baseline", "name": name, "config": config}
    settings = {"split": split, "top_k": top_k, "exclude_history": exclude_history}
    return provenance.make(Path(data), producer, settings, extra)
