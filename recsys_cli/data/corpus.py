"""The pretraining corpus: each user's *training* history (the sequence without its
validation and test targets) sampled into long-, medium- and short-term preference
documents in the paper's 10% / 30% / 60% proportion, plus one profile document.

The periods follow the paper ("long-term: months to years, medium-term: weeks to months,
short-term: days to hours"). With timestamps, for a training history h of m items whose
last training interaction is at time T, the windows are cut by time:
  long   (10% of documents): window = all of h (every month and year of it); up to 20 items
                             sampled without replacement, kept in time order;
  medium (30%):              window = the items of the last MEDIUM_DAYS = 90 days before T
                             (weeks to months); up to 10 sampled items;
  short  (60%):              window = the items of the last SHORT_DAYS = 7 days before T (days
                             to hours); one contiguous run of up to 5 consecutive items
                             starting at a random point.
Every window holds at least the last training item. Without timestamps (P5 splits, or a
user with a missing timestamp) the windows are cut by position instead, and the summary
says so: medium = the most recent ceil(m/2) items, short = the most recent max(5, ceil(m/5)).
With D documents per user (--docs-per-user, default 10) D*10% / D*30% / D*60% documents are
*sampled* (largest remainder when D is not a multiple of 10); a sampled document whose items
(the same items in the same order) equal those of an earlier document of the same user is
an exact copy apart from its opening sentence and is not written; the summary reports how
many were dropped. Short histories make many copies: with three training items every
window is the whole history.
Every item appears as "Title, by Brand, in Category." with the title, brand and category
marked as entities; the profile document is the user's `users.parquet` text.

    python -c "from recsys_cli.data.corpus import period_counts; print(period_counts(10))"
"""

from __future__ import annotations

import bisect
import math
import random

import numpy as np
import polars as pl

from recsys_cli.data.spans import Marked, Registry, SpanLayout, SpanTable, entity_lists

PERIODS = (("long", 0.1), ("medium", 0.3), ("short", 0.6))
LONG_MAX, MEDIUM_MAX, SHORT_RUN = 20, 10, 5
MEDIUM_DAYS, SHORT_DAYS = 90, 7
DAY = 86400
_INTRO = {  # by position (no timestamps)
    "long": "Long-term interests of {u}, oldest first:",
    "medium": "What {u} bought over the second half of their history:",
    "short": "The latest purchases of {u}, in order:",
}
_INTRO_TIME = _INTRO | {
    "medium": "What {u} bought in the last three months:",
    "short": "What {u} bought in their last week, in order:",
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


def window_start(period: str, m: int, times: list[int] | None = None) -> int:
    """First position of the period's window in a history of m items (oldest first);
    by time when `times` (unix seconds, one per item) is given, else by position."""
    if period == "long":
        return 0
    if times is not None:
        since = times[-1] - (MEDIUM_DAYS if period == "medium" else SHORT_DAYS) * DAY
        return bisect.bisect_left(times, since)
    if period == "medium":
        return m - math.ceil(m / 2)
    return m - min(m, max(5, math.ceil(m / 5)))


def sample_window(period: str, m: int, rng: random.Random, times: list[int] | None = None) -> list[int]:
    """Positions (sorted) into a training history of length m for one document."""
    lo = window_start(period, m, times)
    if period == "long":
        k = min(m, LONG_MAX)
    elif period == "medium":
        k = min(m - lo, MEDIUM_MAX)
    else:
        run = min(m - lo, SHORT_RUN)
        start = lo + rng.randrange(m - lo - run + 1)
        return list(range(start, start + run))
    if k == m - lo:
        return list(range(lo, m))
    return sorted(rng.sample(range(lo, m), k))


def corpus_frame(cols: tuple, registry: Registry) -> pl.DataFrame:
    """`corpus_columns` output -> the corpus frame."""
    doc_ids, uids, periods, texts, arrays = cols[:5]
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
    times: list[list[int | None]] | None = None,
) -> tuple:
    """The corpus as plain columns (doc_ids, user_ids, periods, texts, span arrays, stats):
    Python and numpy only, so it can run in a forked child process while prompts are built.
    `times`: the unix seconds of each history item (None: no timestamps). stats: documents
    sampled and dropped as copies, users cut by time and by position."""
    rng = random.Random(seed * 7919 + 17)
    counts = period_counts(docs_per_user)
    plan = [p for p, _ in PERIODS for _ in range(counts[p])]
    names = [m[0] for m in mentions]
    doc_ids, uids, periods, texts = [], [], [], []
    profile_rows, doc_rows, leads, picked = [], [], [], []  # picked: mention codes per document
    stats = {
        "sampled": 0,
        "dropped_copies": 0,
        "users_by_time": 0,
        "users_by_position": 0,
        "sampled_by_period": {p: 0 for p, _ in PERIODS},
    }
    for u, (user, label, hist, profile) in enumerate(zip(users, labels, histories, profiles)):
        profile_rows.append(len(texts))
        doc_ids.append(f"{user}:profile")
        uids.append(user)
        periods.append("profile")
        texts.append(profile[0])
        m = len(hist)
        if m == 0:
            continue
        ts = times[u] if times is not None else None
        ts = ts if ts is not None and None not in ts else None
        stats["users_by_time" if ts is not None else "users_by_position"] += 1
        intros = {p: t.format(u=label) for p, t in (_INTRO_TIME if ts is not None else _INTRO).items()}
        seen: set[tuple[int, ...]] = set()
        for k, period in enumerate(plan):
            codes = [hist[j] for j in sample_window(period, m, rng, ts)]
            stats["sampled"] += 1
            stats["sampled_by_period"][period] += 1
            if tuple(codes) in seen:
                stats["dropped_copies"] += 1
                continue
            seen.add(tuple(codes))
            doc_rows.append(len(texts))
            leads.append(len(intros[period]) + 1)
            picked.append(codes)
            doc_ids.append(f"{user}:{period}:{k}")
            uids.append(user)
            periods.append(period)
            texts.append(" ".join([intros[period], *[names[c] for c in codes]]))
    layout = SpanLayout(len(texts))
    layout.add(
        np.asarray(profile_rows, dtype=np.int64),
        np.zeros(len(profile_rows), dtype=np.int64),
        SpanTable.of(profiles),
        np.arange(len(profiles)),
    )
    length = np.fromiter(map(len, names), dtype=np.int64, count=len(names))
    docs = SpanTable.of(mentions).joined(picked, length, 1)
    layout.add(np.asarray(doc_rows, dtype=np.int64), np.asarray(leads, dtype=np.int64), docs, np.arange(len(picked)))
    return doc_ids, uids, periods, texts, layout.arrays(), stats
