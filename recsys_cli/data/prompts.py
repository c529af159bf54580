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
Rating / explanation / review prompts come from review rows with their split already set.

    python -c "from recsys_cli.data.prompts import choose_templates; print(choose_templates)"
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl

from recsys_cli.data.spans import Marked, Registry, entity_column, fill, join
from recsys_cli.data.templates import Template, by_family
from recsys_cli.data.text import short

MAX_HISTORY = 10
N_CANDIDATES = 100
REVIEW_WORDS = 80


_SPLIT_POOLS: dict[int, tuple] = {}  # id(pool) -> (seen, unseen, pool)


def choose_templates(split: str, pool: list[Template], rng: random.Random) -> list[Template]:
    cached = _SPLIT_POOLS.get(id(pool))
    if cached is None or cached[2] is not pool:
        cached = _SPLIT_POOLS[id(pool)] = ([t for t in pool if t.seen], [t for t in pool if not t.seen], pool)
    seen, unseen, _ = cached
    picked = [seen[rng.randrange(len(seen))]] if seen else []
    if split == "test":
        picked += unseen
    return picked


def _rating_text(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else f"{r:g}"


class PromptRows:
    """Accumulates prompt rows column by column."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []  # (family, template_id, seen, split, user, item, source, target)
        self.src_spans: list = []
        self.tgt_spans: list = []
        self.cand_rows: list[int] = []
        self.cand_codes: list[np.ndarray] = []

    def add(self, t: Template, split: str, user: str, item: str, values: dict, candidates: np.ndarray | None = None) -> None:
        src, sspans = fill(t.parts, values)
        tgt_val = values[t.target_field]
        if tgt_val.__class__ is tuple:
            tgt, tspans = tgt_val[0], ([(0, tgt_val[1])] if tgt_val[1] else [])
        else:
            tgt, tspans = tgt_val, []
        if candidates is not None:
            self.cand_rows.append(len(self.rows))
            self.cand_codes.append(candidates)
        self.rows.append((t.family, t.template_id, t.seen, split, user, item, src, tgt))
        self.src_spans.append(sspans)
        self.tgt_spans.append(tspans)

    def frame(self, item_ids: pl.Series, registry: Registry) -> pl.DataFrame:
        n = len(self.rows)
        names = ("family", "template_id", "seen", "split", "user_id", "item_id", "source", "target")
        cols = list(zip(*self.rows)) if self.rows else [()] * len(names)
        df = pl.DataFrame({k: list(v) for k, v in zip(names, cols)}, schema={k: (pl.Boolean if k == "seen" else pl.Utf8) for k in names})
        df = df.with_columns(entity_column(self.src_spans, registry, "source_entities"), entity_column(self.tgt_spans, registry, "target_entities"))
        if self.cand_rows:
            lengths = np.fromiter((len(c) for c in self.cand_codes), dtype=np.int64, count=len(self.cand_codes))
            flat = pl.DataFrame({
                "row": np.repeat(np.asarray(self.cand_rows, dtype=np.int64), lengths),
                "candidates": item_ids.gather(np.concatenate(self.cand_codes)),
            })
            cands = flat.group_by("row", maintain_order=True).agg("candidates")
            full = pl.DataFrame({"row": pl.int_range(0, n, eager=True).cast(pl.Int64)})
            col = full.join(cands, on="row", how="left", maintain_order="left")["candidates"]
        else:
            col = pl.Series("candidates", [None] * n, dtype=pl.List(pl.Utf8))
        df = df.with_columns(col)
        prefix = df["split"] + ":" + df["family"] + ":"
        return df.with_columns(prompt_id=prefix + pl.int_range(0, n, eager=True).cast(pl.Utf8).str.zfill(8))


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


def negatives_matrix(seqs: list[list[int]], n_items: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    """k never-interacted, distinct item codes per user, drawn for all users at once; users
    whose draw falls short (tiny catalogues) are redrawn one by one with `negatives`."""
    n_users = len(seqs)
    draws = rng.integers(0, n_items, size=(n_users, k + 32 + k // 4))  # [U, M]
    lens = np.fromiter(map(len, seqs), dtype=np.int64, count=n_users)
    seen_keys = np.sort(np.repeat(np.arange(n_users, dtype=np.int64), lens) * n_items + np.concatenate(seqs).astype(np.int64))
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
    return out


def draw_negatives(seqs: list[list[int]], n_items: int, per_user: int, seed: int) -> tuple:
    """(valid, test, misc negatives per user, generator state after the draws): numpy only,
    so it can run in a child process; `sequence_prompts` continues from the state."""
    nrng = np.random.default_rng([seed, 23])
    valid_neg = negatives_matrix(seqs, n_items, N_CANDIDATES - 1, nrng)
    test_neg = negatives_matrix(seqs, n_items, N_CANDIDATES - 1, nrng)
    misc_neg = negatives_matrix(seqs, n_items, per_user + 2, nrng)
    return valid_neg, test_neg, misc_neg, nrng.bit_generator.state


def sequence_prompts(
    rows: PromptRows,
    users: list[str],
    labels: list[str],
    seqs: list[list[int]],
    titles: list[Marked],
    item_ids: list[str],
    per_user: int,
    seed: int,
    negs: tuple | None = None,
) -> None:
    """negs: `draw_negatives(seqs, len(item_ids), per_user, seed)` when drawn elsewhere."""
    rng = random.Random(seed * 7919 + 23)
    seq_t, rank_t, yn_t = by_family("sequential"), by_family("direct", kinds=("rank",)), by_family("direct", kinds=("yesno",))
    valid_neg, test_neg, misc_neg, state = negs if negs is not None else draw_negatives(seqs, len(item_ids), per_user, seed)
    nrng = np.random.default_rng([seed, 23])
    nrng.bit_generator.state = state  # continue the stream after the negative draws
    for u, (user, label, s) in enumerate(zip(users, labels, seqs)):
        n = len(s)
        misc = misc_neg[u].tolist()

        def values(t: int, item_code: int) -> dict:
            hist = join([titles[j] for j in s[max(0, t - MAX_HISTORY):t]], "; ")
            return {"user": label, "history": hist, "item": titles[item_code]}

        train_pos = list(range(1, n - 2))
        if len(train_pos) > per_user:
            train_pos = sorted(rng.sample(train_pos, per_user))
        for t in train_pos:
            v = values(t, s[t])
            for tpl in choose_templates("train", seq_t, rng):
                rows.add(tpl, "train", user, item_ids[s[t]], v)
            if rng.random() < 0.5:
                for tpl in choose_templates("train", rank_t, rng):
                    rows.add(tpl, "train", user, item_ids[s[t]], v)
            else:
                code = s[t] if (rng.random() < 0.5 or not misc) else misc.pop()
                v = v | {"item": titles[code], "answer": "yes" if code == s[t] else "no"}
                for tpl in choose_templates("train", yn_t, rng):
                    rows.add(tpl, "train", user, item_ids[code], v)
        for split, t, neg in (("valid", n - 2, valid_neg[u]), ("test", n - 1, test_neg[u])):
            target = s[t]
            v = values(t, target)
            for tpl in choose_templates(split, seq_t, rng):
                rows.add(tpl, split, user, item_ids[target], v)
            cands = np.concatenate([[target], neg]).astype(np.int64)
            cands = cands[nrng.permutation(len(cands))]
            for tpl in choose_templates(split, rank_t, rng):
                rows.add(tpl, split, user, item_ids[target], v, candidates=cands)
            no = misc.pop() if misc else None
            for tpl in choose_templates(split, yn_t, rng):
                rows.add(tpl, split, user, item_ids[target], v | {"answer": "yes"})
                if no is not None:
                    rows.add(tpl, split, user, item_ids[no], v | {"item": titles[no], "answer": "no"})


def review_prompts(rows: PromptRows, reviews: pl.DataFrame, titles: list[Marked], item_ids: list[str], seed: int) -> None:
    """reviews: user_id, label, code, rating, review, summary, explanation, feature, split."""
    rng = random.Random(seed * 7919 + 29)
    fam = {
        "rating": (by_family("rating", kinds=("rating",)), by_family("rating", kinds=("like",))),
        "explanation": (by_family("explanation", kinds=("explain",)), by_family("explanation", kinds=("explain_feature",))),
        "review": (by_family("review", kinds=("summary",)), by_family("review", kinds=("review_rating",))),
    }
    cols = ["user_id", "label", "code", "rating", "review", "summary", "explanation", "feature", "split"]
    for user, label, code, rating, review, summary, expl, feat, split in reviews.select(cols).iter_rows():
        base = {"user": label, "item": titles[code]}
        if rating is not None:
            v = base | {"rating": _rating_text(rating), "answer": "yes" if rating >= 4 else "no"}
            pool = fam["rating"][0] + fam["rating"][1]
            for tpl in choose_templates(split, pool, rng):
                rows.add(tpl, split, user, item_ids[code], v)
        if expl:
            pool = fam["explanation"][0] + (fam["explanation"][1] if feat else [])
            v = base | {"explanation": expl, "feature": feat or ""}
            for tpl in choose_templates(split, pool, rng):
                rows.add(tpl, split, user, item_ids[code], v)
        if review:
            pool = (fam["review"][0] if summary else []) + (fam["review"][1] if rating is not None else [])
            if pool:
                v = base | {"review": short(review, REVIEW_WORDS), "summary": summary or "",
                            "rating": "" if rating is None else _rating_text(rating)}
                for tpl in choose_templates(split, pool, rng):
                    rows.add(tpl, split, user, item_ids[code], v)
