"""The data phase: a `Source` -> the six textualize artifacts (in memory).

    from recsys_cli.data.sources.amazon import load_amazon
    from recsys_cli.data.textualize import textualize
    frames, summary = textualize(load_amazon("toys", Path("fixtures/amazon/toys")), seed=0)

Sequences: per user, interactions sorted by (timestamp, file order); users in order of first
appearance; users with fewer than 3 items are dropped (leave-one-out needs train/valid/test).
Everything user-derived in the corpus, the user profile and the training prompts uses only
the training part of the sequence (items[:-2]). The corpus periods are cut by time when the
source has timestamps (corpus.py); the data-quality checks (quality.py) go in the summary.
"""

from __future__ import annotations

import math

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.data import quality
from recsys_cli.data import split as loo
from recsys_cli.data.corpus import corpus_columns, corpus_frame
from recsys_cli.data.explain import extract
from recsys_cli.data.prompts import draw_negatives, review_prompts, review_rows, sequence_prompts
from recsys_cli.data.render import PromptPlan, render
from recsys_cli.data.sources import Source
from recsys_cli.data.spans import Marked, Registry, join
from recsys_cli.data.text import norm_key
from recsys_cli.errors import RecsysError


def _price_text(p: float) -> str:
    return f"${p:,.2f}"


def item_texts(items: pl.DataFrame, reg: Registry) -> tuple[list[str], list[Marked], list[Marked]]:
    """(items.text, title marked as item entity, corpus mention "Title, by B, in C.")."""
    texts, titles, mentions = [], [], []
    for item_id, title, cats, brand, price in items.select(
        "item_id", "title", "categories", "brand", "price"
    ).iter_rows():
        titles.append(reg.mark(title, "item", f"item:{item_id}"))
        parts: list[Marked] = [titles[-1]]
        if brand:
            parts.append((f"by {brand}", [(3, 3 + len(brand), reg.get("brand", f"brand:{norm_key(brand)}"))]))
        if cats:
            leaf = cats[-1]
            parts.append((f"in {leaf}", [(3, 3 + len(leaf), reg.get("category", f"category:{norm_key(leaf)}"))]))
        text, ents = join(parts, ", ")
        mentions.append((text + ".", ents))
        desc = [title + "."]
        if cats:
            desc.append("Categories: " + ", ".join(cats) + ".")
        if brand:
            desc.append(f"Brand: {brand}.")
        if price is not None:
            desc.append(f"Price: {_price_text(price)}.")
        texts.append(" ".join(desc))
    return texts, titles, mentions


def _profile_stats(train: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """Per user: top 3 categories, mean rating, active days, item count (training rows only)."""
    item_cats = items.select("item_id", "categories").explode("categories").drop_nulls("categories")
    cats = (
        train.select("user_id", "item_id")
        .join(item_cats, on="item_id", how="inner")
        .group_by("user_id", "categories")
        .len()
        .sort(["user_id", "len", "categories"], descending=[False, True, False])
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("categories").head(3).alias("top"))
    )
    stats = train.group_by("user_id").agg(
        n=pl.len(),
        mean_rating=pl.col("rating").mean(),
        days=((pl.col("timestamp").max() - pl.col("timestamp").min()) / 86400).ceil(),
    )
    return stats.join(cats, on="user_id", how="left")


def user_profile(reg: Registry, label: str, n: int, top, mean_rating, days, features: list[tuple[str, str]]) -> Marked:
    parts: list[Marked] = []
    if features:
        fs = [
            (
                f"{col} {val}",
                [(len(col) + 1, len(col) + 1 + len(val), reg.get("feature", f"feature:{col}={norm_key(val)}"))],
            )
            for col, val in features
        ]
        t, e = join(fs, "; ")
        parts.append(
            (f"{label} profile: " + t + ".", [(s + len(label) + 10, en + len(label) + 10, x) for s, en, x in e])
        )
    if top:
        names = [reg.mark(c, "category", f"category:{norm_key(c)}") for c in top]
        lst = join(names[:-1], ", ") if len(names) > 1 else names[0]
        if len(names) > 1:
            lst = join([lst, names[-1]], " and ")
        head = "They mostly shop for " if parts else f"{label} mostly shops for "
        parts.append((head + lst[0] + ".", [(s + len(head), e + len(head), x) for s, e, x in lst[1]]))
    who = "They" if parts else label
    if mean_rating is not None and not math.isnan(mean_rating):
        parts.append((f"{who} give{'' if parts else 's'} {mean_rating:.1f} stars on average.", []))
        who = "They"
    if days is not None and not math.isnan(days):
        parts.append(
            (f"{'Their' if who == 'They' else label + chr(39) + 's'} history spans {int(days)} days and {n} items.", [])
        )
    else:
        parts.append((f"{'Their' if who == 'They' else label + chr(39) + 's'} history has {n} items.", []))
    return join(parts, " ")


def textualize(
    src: Source, seed: int = 0, docs_per_user: int = 10, prompts_per_user: int = 3, review_cap: int = 10, progress=None
):
    """Returns ({file name: frame}, summary dict)."""
    step = progress or (lambda name: None)
    inter = src.interactions
    step("sequences")
    inter = (
        inter.with_columns(first=pl.col("order").min().over("user_id"))
        .sort(["first", "timestamp", "order"], nulls_last=True)
        .with_columns(pos=pl.int_range(pl.len()).over("user_id"), n=pl.len().over("user_id"))
        .drop("first")
    )
    short = inter.filter(pl.col("n") < loo.MIN_ITEMS)["user_id"].n_unique()
    inter = inter.filter(pl.col("n") >= loo.MIN_ITEMS)
    if inter.height == 0:
        raise RecsysError(
            "no user has 3 or more interactions (leave-one-out needs train, valid and test items)", exit_code=2
        )
    items = src.items.filter(pl.col("item_id").is_in(inter["item_id"].unique().implode())).sort("item_id")
    item_ids = items["item_id"]
    codes = pl.DataFrame({"item_id": item_ids, "code": pl.int_range(0, items.height, eager=True)})
    inter = inter.join(codes, on="item_id", how="left", maintain_order="left")
    if inter["code"].null_count():
        raise RecsysError("internal: interaction without item row")
    seq = inter.group_by("user_id", maintain_order=True).agg(
        pl.col("item_id").alias("items"), pl.col("code").alias("codes"), pl.col("timestamp").alias("times")
    )
    users = seq["user_id"].to_list()
    labels = [f"user_{u}" for u in users]
    seqs = seq["codes"].to_list()
    # all in this one process: a forked worker saved ~0.4 s of ~4.5 s on full Toys, and without
    # one Ctrl-C stops everything at once, with nothing left running
    negs = draw_negatives(seqs, items.height, prompts_per_user, seed)
    frames, corpus_stats = _rest(
        src, seed, docs_per_user, prompts_per_user, review_cap, step, negs, inter, items, seq, labels, seqs
    )
    notes = list(src.notes)
    if short:
        notes.append(f"{short} users with fewer than 3 items dropped")
    cands = frames[schemas.PROMPTS]["candidates"].list.len().drop_nulls()
    if len(cands) and cands.min() < 100:
        notes.append(
            f"catalogue too small for 99 negatives: {int((cands < 100).sum())} direct prompts have "
            f"{cands.min()}-{cands.max()} candidates"
        )
    if not src.has_reviews:
        notes.append("source has no reviews: no rating, explanation or review prompts")
    notes.append(_period_note(corpus_stats))
    checks = quality.item_checks(frames[schemas.ITEMS], src.title_fallback)
    checks.append(quality.document_check(corpus_stats["sampled"], corpus_stats["dropped_copies"]))
    summary = summarize(frames, src, notes)
    summary["corpus"] = corpus_stats
    summary["quality"] = checks
    summary["notes"].extend(quality.warnings(checks))
    return frames, summary


def _period_note(stats: dict) -> str:
    """How the long/medium/short windows were cut, and how many copies were dropped."""
    if stats["users_by_position"] == 0:
        how = "corpus periods cut by time (medium: last 90 days, short: last 7 days)"
    elif stats["users_by_time"] == 0:
        how = "no timestamps: corpus periods cut by position (medium: latest half, short: latest max(5, 1/5))"
    else:
        how = (
            f"corpus periods cut by time for {stats['users_by_time']:,} users and by position for "
            f"{stats['users_by_position']:,} users with a missing timestamp"
        )
    return (
        f"{how}; {stats['dropped_copies']:,} of {stats['sampled']:,} sampled documents were copies and were not written"
    )


def _rest(
    src: Source,
    seed: int,
    docs_per_user: int,
    prompts_per_user: int,
    review_cap: int,
    step,
    negs,
    inter,
    items,
    seq,
    labels,
    seqs,
) -> tuple[dict, dict]:
    """Items, users, interactions, corpus and prompts once the sequences are known
    (`seq`: one row per user in output order; `labels` and `seqs`: its user labels and item codes)."""
    step("items and users")
    item_ids, users = items["item_id"], seq["user_id"].to_list()
    reg = Registry()
    texts, titles, mentions = item_texts(items, reg)
    items = items.with_columns(text=pl.Series(texts, dtype=pl.Utf8))
    train = inter.filter(loo.is_train_position(pl.col("pos"), pl.col("n")))
    stats = pl.DataFrame({"user_id": users}).join(
        _profile_stats(train, items), on="user_id", how="left", maintain_order="left"
    )
    feats = {}
    if src.users is not None:
        fcols = [c for c in src.users.columns if c != "user_id"]
        for row in src.users.iter_rows():
            feats[row[0]] = [(c, v) for c, v in zip(fcols, row[1:]) if v not in (None, "")]
    profiles = [
        user_profile(reg, lab, n or 0, top, mr, days, feats.get(u, []))
        for u, lab, n, mr, days, top in zip(
            users, labels, *(stats[c].to_list() for c in ("n", "mean_rating", "days", "top"))
        )
    ]
    users_df = pl.DataFrame({"user_id": users, "text": [p[0] for p in profiles]})

    step("interactions")
    if src.has_reviews and inter["review"].null_count() < inter.height:
        expl, feat = extract(inter["review"].to_list())
        inter = inter.with_columns(explanation=pl.Series(expl, dtype=pl.Utf8), feature=pl.Series(feat, dtype=pl.Utf8))
    else:
        inter = inter.with_columns(explanation=pl.lit(None, pl.Utf8), feature=pl.lit(None, pl.Utf8))

    step("corpus")
    histories = [loo.train_items(s) for s in seqs]
    times = None
    if inter["timestamp"].null_count() < inter.height:
        times = [loo.train_items(t) for t in seq["times"].to_list()]
    corpus_cols = corpus_columns(users, labels, histories, mentions, profiles, docs_per_user, seed, times)
    step("prompts")
    prompts = _prompts(src, inter, users, labels, seqs, titles, item_ids, prompts_per_user, seed, review_cap, reg, negs)
    corpus = corpus_frame(corpus_cols, reg)

    frames = {
        schemas.ITEMS: items,
        schemas.USERS: users_df,
        schemas.INTERACTIONS: inter,
        schemas.SEQUENCES: seq.select("user_id", "items"),
        schemas.CORPUS: corpus,
        schemas.PROMPTS: prompts,
    }
    return frames, corpus_cols[5]


def _prompts(
    src: Source,
    inter,
    users,
    labels,
    seqs,
    titles,
    item_ids: pl.Series,
    per_user: int,
    seed: int,
    review_cap: int,
    reg: Registry,
    negs: tuple,
) -> pl.DataFrame:
    plan = PromptPlan()
    sequence_prompts(plan, seqs, item_ids.len(), per_user, seed, negs)
    if src.has_reviews:
        rev = review_rows(inter, seed, review_cap)
        if rev.height:
            review_prompts(plan, rev, seed)
    return render(plan, users, labels, titles, item_ids, reg)


def summarize(frames: dict, src: Source, notes: list[str]) -> dict:
    p = frames[schemas.PROMPTS]
    counts = p.group_by("family", "split", "seen").len().sort("family", "split", "seen")
    c = frames[schemas.CORPUS]["period"].value_counts().sort("period")
    return {
        "source": src.kind,
        "users": frames[schemas.USERS].height,
        "items": frames[schemas.ITEMS].height,
        "interactions": frames[schemas.INTERACTIONS].height,
        "documents": frames[schemas.CORPUS].height,
        "documents_by_period": dict(zip(c["period"].to_list(), c["count"].to_list())),
        "prompts": p.height,
        "prompts_by_family": [
            {"family": f, "split": s, "seen": bool(se), "prompts": n} for f, s, se, n in counts.iter_rows()
        ],
        "has_reviews": src.has_reviews,
        "filters": src.filters,
        "notes": notes,
    }
