"""Reference answers for the rating and text families, computed from the training part only
(every (user, item) pair with a valid or test prompt is left out, as in baselines/mf.py):

* `mean` (rating family): the global mean rating, or the user's mean (global mean when the
  user has no training rating); like/dislike prompts get `ratings.like_answer` of the mean.
* `retrieval` (explanation and review families): the user's most similar training text. For
  an explanation prompt, the user's training explanation whose item title + explanation is
  closest to the prompt (TF-IDF cosine over words); for a review summary, the summary of the
  user's closest training review; for a review's star rating, that review's rating. Users
  without training text fall back to every user's training texts.

    recsys baseline mean --data runs/mi --by user
    recsys baseline retrieval --data runs/mi
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data.ratings import like_answer
from recsys_cli.data.templates import RATING, YES_NO_ANSWER, answer_types
from recsys_cli.errors import RecsysError

_WORD = re.compile(r"[a-z0-9]+")
_PROMPT_COLS = ["prompt_id", "family", "template_id", "seen", "split", "user_id", "item_id", "source", "target"]


def _pairs(df: pl.DataFrame) -> pl.Series:
    return df["user_id"] + "\x1f" + df["item_id"]


def _train_and_prompts(data: Path, split: str, families: tuple[str, ...]) -> tuple[pl.DataFrame, pl.DataFrame]:
    inter = read_artifact(data, schemas.INTERACTIONS)
    prompts = read_artifact(data, schemas.PROMPTS, _PROMPT_COLS)
    held = prompts.filter(pl.col("split").is_in(["valid", "test"]))
    train = inter.filter(~_pairs(inter).is_in(_pairs(held).implode()))
    part = prompts.filter((pl.col("split") == split) & pl.col("family").is_in(list(families))).sort("prompt_id")
    if part.is_empty():
        raise RecsysError(
            (
                f"{Path(data) / schemas.PROMPTS}: no {'/'.join(families)} prompts in split {split!r}; expected data "
                f"with reviews"
            ),
            1,
        )
    return train, part


def _frame(part: pl.DataFrame, outputs: list[str]) -> pl.DataFrame:
    return part.select("prompt_id", "family", "template_id", "seen").with_columns(
        pl.Series("output", outputs, dtype=pl.Utf8),
        pl.lit(None, dtype=pl.List(pl.Utf8)).alias("ranked"),
        pl.lit(None, dtype=pl.List(pl.Float64)).alias("scores"),
        pl.lit(True).alias("valid"),
    )


def mean_ratings(data: Path, split: str, by: str) -> tuple[pl.DataFrame, dict]:
    """Rating prompts answered with the global or the per-user training mean."""
    if by not in ("global", "user"):
        raise RecsysError(f"--by {by!r}: expected global or user", 2)
    train, part = _train_and_prompts(data, split, ("rating",))
    rated = train.drop_nulls("rating")
    if rated.is_empty():
        raise RecsysError(f"{Path(data) / schemas.INTERACTIONS}: no training ratings; expected a rating column", 2)
    mu = float(rated["rating"].mean())
    per_user = dict(rated.group_by("user_id").agg(pl.col("rating").mean()).iter_rows()) if by == "user" else {}
    outputs = []
    answers = answer_types(part["template_id"], str(Path(data) / schemas.PROMPTS))
    for user, answer in zip(part["user_id"], answers):
        m = per_user.get(user, mu)
        outputs.append(like_answer(m) if answer == YES_NO_ANSWER else f"{m:.2f}")
    return _frame(part, outputs), {
        "by": by,
        "train_ratings": rated.height,
        "global_mean": round(mu, 4),
        "users_with_mean": len(per_user),
    }


def _words(text: str | None) -> list[str]:
    return _WORD.findall((text or "").lower())


class _Index:
    """TF-IDF cosine over word counts; idf from every training text of the data."""

    def __init__(self, texts: list[str]):
        df = Counter(w for t in texts for w in set(_words(t)))
        self.idf = {w: math.log((1 + len(texts)) / (1 + n)) + 1.0 for w, n in df.items()}

    def vector(self, text: str) -> dict[str, float]:
        tf = Counter(_words(text))
        v = {w: c * self.idf.get(w, 1.0) for w, c in tf.items()}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {w: x / norm for w, x in v.items()}

    @staticmethod
    def cosine(a: dict[str, float], b: dict[str, float]) -> float:
        if len(a) > len(b):
            a, b = b, a
        return sum(x * b.get(w, 0.0) for w, x in a.items())


def retrieval_texts(data: Path, split: str) -> tuple[pl.DataFrame, dict]:
    """Explanation and review prompts answered with the user's closest training text."""
    train, part = _train_and_prompts(data, split, ("explanation", "review"))
    titles = dict(read_artifact(data, schemas.ITEMS, ["item_id", "title"]).iter_rows())
    rows = train.filter(pl.col("review").is_not_null() | pl.col("explanation").is_not_null()).sort("user_id", "item_id")
    if rows.is_empty():
        raise RecsysError(
            f"{Path(data) / schemas.INTERACTIONS}: no training reviews or explanations; expected review text", 2
        )
    entries = [dict(r, title=titles.get(r["item_id"], "")) for r in rows.iter_rows(named=True)]
    index = _Index([f"{e['title']} {e['review'] or ''}" for e in entries])
    vectors = {
        "explain": [index.vector(f"{e['title']} {e['explanation'] or ''} {e['feature'] or ''}") for e in entries],
        "review": [index.vector(e["review"] or "") for e in entries],
    }
    by_user: dict[str, list[int]] = {}
    for n, e in enumerate(entries):
        by_user.setdefault(e["user_id"], []).append(n)
    everyone = list(range(len(entries)))
    outputs, fallback = [], 0
    answers = answer_types(part["template_id"], str(Path(data) / schemas.PROMPTS)).to_list()
    for r, answer in zip(part.iter_rows(named=True), answers):
        kind = "explain" if r["family"] == "explanation" else "review"
        field = {"explain": "explanation", "review": "summary"}[kind]
        pool = [n for n in by_user.get(r["user_id"], []) if entries[n][field] is not None]
        if not pool:
            pool, fallback = [n for n in everyone if entries[n][field] is not None], fallback + 1
        q = index.vector(r["source"])
        best = max(pool, key=lambda n: (index.cosine(q, vectors[kind][n]), -n))  # ties: the earliest entry
        e = entries[best]
        if answer == RATING:  # the review's star rating
            outputs.append(f"{e['rating']:.0f}" if e["rating"] is not None else "")
        else:
            outputs.append(e[field] or "")
    return _frame(part, outputs), {"training_texts": len(entries), "prompts_without_own_texts": fallback}
