"""The pretraining corpus: each user's *training* history (the sequence without its
validation and test targets) sampled into long-, medium- and short-term preference
documents in the paper's 10% / 30% / 60% proportion, plus one profile document.

How the periods are cut, for a training history h of m items (oldest first):
  long   (10% of documents): window = all of h; up to 20 items sampled without replacement,
                             kept in time order (broad, long-run taste);
  medium (30%):              window = the most recent ceil(m/2) items; up to 10 sampled items;
  short  (60%):              window = the most recent max(5, ceil(m/5)) items; one contiguous
                             run of up to 5 consecutive items starting at a random point.
With D documents per user (--docs-per-user, default 10) the counts are exactly
D*10% / D*30% / D*60% (largest remainder when D is not a multiple of 10).
Every item appears as "Title, by Brand, in Category." with the title, brand and category
marked as entities; the profile document is the user's `users.parquet` text.

    python -c "from recsys_cli.data.corpus import period_counts; print(period_counts(10))"
"""

from __future__ import annotations

import math
import random

import numpy as np
import polars as pl

from recsys_cli.data.spans import Marked, Registry, SpanLayout, SpanTable, entity_lists

PERIODS = (("long", 0.1), ("medium", 0.3), ("short", 0.6))
LONG_MAX, MEDIUM_MAX, SHORT_RUN = 20, 10, 5
_INTRO = {
    "long": "Long-term interests of {u}, oldest first:",
    "medium": "What {u} bought over the second half of their history:",
    "short": "The latest purchases of {u}, in order:",
}


def period_counts(docs_per_user: int) -> dict[str, int]:
    raw = [(p, docs_per_user * w) for p, w in PERIODS]
    counts = {p: int(math.floor(x)) for p, x in raw}
    left = docs_per_user - sum(counts.values())
    for p, x in sorted(raw, key=lambda px: (-(px[1] - math.floor(px[1])), -dict(PERIODS)[px[0]])):
        if left <= 0:
            break
        counts[p] += 1
        left -= 1
    return counts


def sample_window(period: str, m: int, rng: random.Random) -> list[int]:
    """Positions (sorted) into a training history of length m for one document."""
    if period == "long":
        lo, k = 0, min(m, LONG_MAX)
    elif period == "medium":
        lo = m - math.ceil(m / 2)
        k = min(m - lo, MEDIUM_MAX)
    else:
        lo = m - min(m, max(5, math.ceil(m / 5)))
        run = min(m - lo, SHORT_RUN)
        start = lo + rng.randrange(m - lo - run + 1)
        return list(range(start, start + run))
    if k == m - lo:
        return list(range(lo, m))
    return sorted(rng.sample(range(lo, m), k))


def corpus_frame(cols: tuple, registry: Registry) -> pl.DataFrame:
    """`corpus_columns` output -> the corpus frame."""
    doc_ids, uids, periods, texts, arrays = cols
    return pl.DataFrame({"doc_id": doc_ids, "user_id": uids, "period": periods, "text": texts}).with_columns(
        entity_lists(*arrays, registry)
    )


def corpus_columns(
    users: list[str],
    labels: list[str],
    histories: list[list[int]],
    mentions: list[Marked],
    profiles: list[Marked],
    docs_per_user: int,
    seed: int,
) -> tuple:
    """The corpus as plain columns (doc_ids, user_ids, periods, texts, span arrays): Python
    and numpy only, so it can run in a forked child process while prompts are built."""
    rng = random.Random(seed * 7919 + 17)
    counts = period_counts(docs_per_user)
    plan = [p for p, _ in PERIODS for _ in range(counts[p])]
    names = [m[0] for m in mentions]
    doc_ids, uids, periods, texts = [], [], [], []
    profile_rows, doc_rows, leads, picked = [], [], [], []  # picked: mention codes per document
    for user, label, hist, profile in zip(users, labels, histories, profiles):
        profile_rows.append(len(texts))
        doc_ids.append(f"{user}:profile")
        uids.append(user)
        periods.append("profile")
        texts.append(profile[0])
        m = len(hist)
        if m == 0:
            continue
        intros = {p: _INTRO[p].format(u=label) for p in _INTRO}
        for k, period in enumerate(plan):
            codes = [hist[j] for j in sample_window(period, m, rng)]
            doc_rows.append(len(texts))
            leads.append(len(intros[period]) + 1)
            picked.append(codes)
            doc_ids.append(f"{user}:{period}:{k}")
            uids.append(user)
            periods.append(period)
            texts.append(" ".join([intros[period], *[names[c] for c in codes]]))
    layout = SpanLayout(len(texts))
    layout.add(np.asarray(profile_rows, dtype=np.int64), np.zeros(len(profile_rows), dtype=np.int64), SpanTable.of(profiles), np.arange(len(profiles)))
    length = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    docs = SpanTable.of(mentions).joined(picked, length, 1)
    layout.add(np.asarray(doc_rows, dtype=np.int64), np.asarray(leads, dtype=np.int64), docs, np.arange(len(picked)))
    return doc_ids, uids, periods, texts, layout.arrays()
