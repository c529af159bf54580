"""Prompts for the five task families (`prompts.parquet`).

Template choice per example: train and valid use one seen template drawn with the seed;
test uses one seen template plus every unseen template of the family (zero-shot prompts).

Sequential / direct (leave-one-out on the sequence s of n items): test target s[n-1] with
history s[:n-1], valid target s[n-2] with history s[:n-2], train targets s[t] for up to
`per_user` positions 1 <= t <= n-3 with history s[:t]; histories show the last 10 items.
Direct valid/test "rank" prompts carry 100 `candidates`: the target plus 99 items the user
never interacted with, seeded, in a seeded order (fewer when the catalogue has fewer than 99
such items; the summary says so). Direct "yesno" prompts ask about one item:
the target ("yes") or a never-interacted item ("no"); valid/test have both variants.
Rating / explanation / review prompts come from review rows split 80/10/10 (`review_rows`).
Both writers only plan the rows (`render.PromptPlan`); `render.render` makes the text.

    python -c "import random; from recsys_cli.data import prompts, templates; \\
print(prompts.template_picker(random.Random(0))(2, templates.by_family('direct')))"
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl

from recsys_cli.data import split as loo
from recsys_cli.data import templates
from recsys_cli.data.ratings import likes
from recsys_cli.data.render import ANSWERS, SPLIT_CODE, TEMPLATE_INDEX, PromptPlan
from recsys_cli.data.templates import Template, by_family
from recsys_cli.data.text import short

MAX_HISTORY = 10
N_CANDIDATES = 100
REVIEW_WORDS = 80
TRAIN, VALID, TEST = SPLIT_CODE["train"], SPLIT_CODE["valid"], SPLIT_CODE["test"]
YES, NO = ANSWERS.index(templates.YES), ANSWERS.index(templates.NO)  # plan answer codes


def _rating_text(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else f"{r:g}"


def template_picker(rng: random.Random):
    """choose(split, pool) -> indices into TEMPLATES: one seen template of `pool` drawn with
    `rng`, plus every unseen one when split is the test split (split: a SPLIT_CODE value)."""
    pools: dict[int, tuple[list[int], list[int]]] = {}

    def choose(split: int, pool: list[Template]) -> list[int]:
        got = pools.get(id(pool))
        if got is None:
            got = pools[id(pool)] = (
                [TEMPLATE_INDEX[id(t)] for t in pool if t.seen],
                [TEMPLATE_INDEX[id(t)] for t in pool if not t.seen],
            )
        seen, unseen = got
        picked = [seen[rng.randrange(len(seen))]] if seen else []
        return picked + unseen if split == TEST else picked

    return choose


def negatives(seq: list[int], n_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct item codes the user never interacted with (fewer if the catalogue is small)."""
    banned = np.asarray(sorted(set(seq)), dtype=np.int64)
    k = min(k, n_items - len(banned))
    got = np.empty(0, dtype=np.int64)
    while len(got) < k:
        draw = rng.integers(0, n_items, size=2 * (k - len(got)) + 8)
        draw = draw[~np.isin(draw, banned)]
        draw = draw[~np.isin(draw, got)]
        _, first = np.unique(draw, return_index=True)
        got = np.concatenate([got, draw[np.sort(first)]])[:k]
    return got


class Ragged:
    """Rows of item codes of varying length as one flat array + offsets (cheap to pickle
    between processes); rows[i] is a view."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        self.offsets = np.concatenate([[0], np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))])
        self.flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.flat[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def negatives_matrix(seqs: list[list[int]], n_items: int, k: int, rng: np.random.Generator) -> Ragged:
    """k never-interacted, distinct item codes per user, drawn for all users at once; users
    whose draw falls short (tiny catalogues) are redrawn one by one with `negatives`."""
    n_users = len(seqs)
    draws = rng.integers(0, n_items, size=(n_users, k + 32 + k // 4))  # [U, M]
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n_users)
    seen_keys = np.sort(
        np.repeat(np.arange(n_users, dtype=np.int64), lens) * n_items + np.concatenate(seqs).astype(np.int64)
    )
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + draws  # [U, M]
    at = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)  # [U, M]
    ok = seen_keys[at] != keys
    order = np.argsort(draws, axis=1, kind="stable")  # [U, M]
    srt = np.take_along_axis(draws, order, axis=1)
    dup = np.zeros_like(ok)
    np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
    ok &= ~dup
    take = ok & (np.cumsum(ok, axis=1) <= k)
    enough = take.sum(axis=1) == k
    out: list[np.ndarray] = [None] * n_users  # type: ignore[list-item]
    full_rows = np.flatnonzero(enough)
    picked = draws[full_rows][take[full_rows]].reshape(len(full_rows), k)
    for r, row in zip(full_rows.tolist(), picked):
        out[r] = row
    for r in np.flatnonzero(~enough).tolist():
        out[r] = negatives(seqs[r], n_items, k, rng)
    return Ragged(out)


def draw_negatives(seqs: list[list[int]], n_items: int, per_user: int, seed: int) -> tuple:
    """(valid, test, misc negatives per user, generator state after the draws): numpy only,
    so it can run in a child process; `sequence_prompts` continues from the state."""
    nrng = np.random.default_rng([seed, 23])
    valid_neg = negatives_matrix(seqs, n_items, N_CANDIDATES - 1, nrng)
    test_neg = negatives_matrix(seqs, n_items, N_CANDIDATES - 1, nrng)
    misc_neg = negatives_matrix(seqs, n_items, per_user + 2, nrng)
    return valid_neg, test_neg, misc_neg, nrng.bit_generator.state


def sequence_prompts(
    plan: PromptPlan, seqs: list[list[int]], n_items: int, per_user: int, seed: int, negs: tuple | None = None
) -> None:
    """Sequential and direct prompt rows for every user (seqs: item codes per user) into `plan`.
    negs: `draw_negatives(seqs, n_items, per_user, seed)` when drawn elsewhere."""
    rng = random.Random(seed * 7919 + 23)
    choose = template_picker(rng)
    seq_t, rank_t, yn_t = (
        by_family("sequential"),
        by_family("direct", kinds=("rank",)),
        by_family("direct", kinds=("yesno",)),
    )
    valid_neg, test_neg, misc_neg, state = negs if negs is not None else draw_negatives(seqs, n_items, per_user, seed)
    nrng = np.random.default_rng([seed, 23])
    nrng.bit_generator.state = state  # continue the stream after the negative draws
    add, history = plan.add, plan.history
    for u, s in enumerate(seqs):
        n = len(s)
        misc = misc_neg[u].tolist()
        train_pos = list(loo.train_positions(n))
        if len(train_pos) > per_user:
            train_pos = sorted(rng.sample(train_pos, per_user))
        for t in train_pos:
            target, h = s[t], history(s[max(0, t - MAX_HISTORY) : t])
            for tpl in choose(TRAIN, seq_t):
                add(tpl, TRAIN, u, target, h)
            if rng.random() < 0.5:
                for tpl in choose(TRAIN, rank_t):
                    add(tpl, TRAIN, u, target, h)
            else:
                code = target if (rng.random() < 0.5 or not misc) else misc.pop()
                for tpl in choose(TRAIN, yn_t):
                    add(tpl, TRAIN, u, code, h, YES if code == target else NO)
        for split, t, neg in (
            (VALID, loo.target_position(n, "valid"), valid_neg[u]),
            (TEST, loo.target_position(n, "test"), test_neg[u]),
        ):
            target, h = s[t], history(s[max(0, t - MAX_HISTORY) : t])
            for tpl in choose(split, seq_t):
                add(tpl, split, u, target, h)
            cands = np.concatenate([[target], neg]).astype(np.int64)
            c = plan.candidates(cands[nrng.permutation(len(cands))])
            for tpl in choose(split, rank_t):
                add(tpl, split, u, target, h, cand=c)
            no = misc.pop() if misc else None
            for tpl in choose(split, yn_t):
                add(tpl, split, u, target, h, YES)
                if no is not None:
                    add(tpl, split, u, no, h, NO)


def _review_splits(rev: pl.DataFrame, seed: int) -> pl.DataFrame:
    """Split review rows 80/10/10 by a seeded shuffle. A review of a user's sequential valid
    or test target goes to that split (no leak into training); then, in shuffled order, the
    first review of every user and of every item stays in train; the valid/test quotas are
    filled from the rest so that the totals are close to 10% each. rev: uidx, code, pos, n, order."""
    n = rev.height
    rng = np.random.default_rng([seed, 31])
    rev = rev.with_columns(shuf=pl.Series(rng.permutation(n))).sort("shuf")
    held = loo.split_of_position(pl.col("pos"), pl.col("n"))
    rev = rev.with_columns(loo=pl.when(held != "train").then(held))
    free = pl.col("loo").is_null()
    rev = rev.with_columns(
        keep=free
        & ((pl.int_range(pl.len()).over(["uidx", free]) == 0) | (pl.int_range(pl.len()).over(["code", free]) == 0))
    )
    qv = max(0, round(0.1 * n) - int((rev["loo"] == "valid").sum()))
    qt = max(0, round(0.1 * n) - int((rev["loo"] == "test").sum()))
    rest = free & ~pl.col("keep")
    rank = pl.when(rest).then(pl.int_range(pl.len()).over(rest))
    split = (
        pl.when(pl.col("loo").is_not_null())
        .then(pl.col("loo"))
        .when(rank < qv)
        .then(pl.lit("valid"))
        .when(rank < qv + qt)
        .then(pl.lit("test"))
        .otherwise(pl.lit("train"))
    )
    return rev.with_columns(split=split).drop("loo", "keep")


def _cap(rev: pl.DataFrame, cap: int) -> pl.DataFrame:
    """At most `cap` reviews per user and split feed prompts (shuffled order; 0 = all)."""
    if cap <= 0:
        return rev.sort("order")
    return rev.filter(pl.int_range(pl.len()).over(["uidx", "split"]) < cap).sort("order")


def review_rows(inter: pl.DataFrame, seed: int, cap: int) -> pl.DataFrame:
    """The review rows that feed `review_prompts`, in file order: uidx (user index; `inter`
    holds each user's rows together, users in order), code, rating, review, summary,
    explanation, feature and split. Splits are computed on narrow key columns; the texts are gathered for kept rows."""
    keys = (
        inter.select(
            row=pl.int_range(pl.len()),
            uidx=pl.col("user_id").rle_id(),
            code="code",
            pos="pos",
            n="n",
            order="order",
            has=pl.col("rating").is_not_null() | pl.col("review").is_not_null(),
        )
        .filter("has")
        .drop("has")
    )
    kept = _cap(_review_splits(keys, seed), cap)
    cols = ["code", "rating", "review", "summary", "explanation", "feature"]
    return inter.select(pl.col(cols).gather(kept["row"])).with_columns(uidx=kept["uidx"], split=kept["split"])


def review_prompts(plan: PromptPlan, reviews: pl.DataFrame, seed: int) -> None:
    """Rating / explanation / review prompt rows into `plan`. reviews: uidx (user index), code
    (item code), rating, review, summary, explanation, feature, split."""
    rng = random.Random(seed * 7919 + 29)
    choose = template_picker(rng)
    rating_t = by_family("rating", kinds=("rating",)) + by_family("rating", kinds=("like",))
    expl_t, expl_feat_t = (
        by_family("explanation", kinds=("explain",)),
        by_family("explanation", kinds=("explain_feature",)),
    )
    expl_all = expl_t + expl_feat_t
    summary_t, review_rating_t = by_family("review", kinds=("summary",)), by_family("review", kinds=("review_rating",))
    review_pools = {(True, True): summary_t + review_rating_t, (True, False): summary_t, (False, True): review_rating_t}
    cols = ["uidx", "code", "rating", "review", "summary", "explanation", "feature", "split"]
    uidx, codes, ratings, texts, summaries, expls, feats, splits = (reviews[c].to_list() for c in cols)
    first = plan.add_reviews(
        rating=["" if r is None else _rating_text(r) for r in ratings],
        explanation=[e or "" for e in expls],
        feature=[f or "" for f in feats],
        review=[short(t, REVIEW_WORDS) if t else "" for t in texts],
        summary=[s or "" for s in summaries],
    )
    rows = zip(uidx, codes, ratings, texts, summaries, expls, feats, splits)
    for r, (u, code, rating, review, summary, expl, feat, split) in enumerate(rows, first):
        sp = SPLIT_CODE[split]
        if rating is not None:
            for tpl in choose(sp, rating_t):
                plan.add(tpl, sp, u, code, answer=YES if likes(rating) else NO, review=r)
        if expl:
            for tpl in choose(sp, expl_all if feat else expl_t):
                plan.add(tpl, sp, u, code, review=r)
        if review:
            pool = review_pools.get((bool(summary), rating is not None))
            if pool:
                for tpl in choose(sp, pool):
                    plan.add(tpl, sp, u, code, review=r)
