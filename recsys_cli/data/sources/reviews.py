"""The filtering every interaction source shares (one rule, one place): de-duplicate
(user, item) pairs and k-core on users (and optionally items).

    python -c "import polars as pl; from recsys_cli.data.sources.reviews import kcore; \
print(kcore(pl.DataFrame({'user_id': ['a'] * 5 + ['b'], 'item_id': list('vwxyzv')}), 5, 0))"

1. de-duplicate (user, item): the earliest interaction is kept (then the first in file
   order). Amazon 2018 repeats a review once per product variant, and Amazon 2023 items
   are parent_asins, so two variants of one product collapse into one item;
2. k-core: users with fewer than `min_user` distinct items are dropped; with `min_item` > 0
   the user and item filters are iterated until nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_cli.data.sources import INTER_COLS, ITEM_COLS, conform, fill_titles
from recsys_cli.errors import InputError


def dedup(inter: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, item): the earliest (nulls last), then the first in file order."""
    return inter.sort(["user_id", "item_id", "timestamp", "order"], nulls_last=True).unique(
        ["user_id", "item_id"], keep="first", maintain_order=True
    )


def kcore(inter: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop users with < min_user items (and items with < min_item users) until stable."""
    while True:
        before = inter.height
        if min_user > 0:
            inter = inter.filter(pl.len().over("user_id") >= min_user)
        if min_item > 0:
            inter = inter.filter(pl.len().over("item_id") >= min_item)
        if inter.height == before or min_item <= 0:
            return inter


def filter_reviews(raw: pl.DataFrame, path: Path, min_user: int, min_item: int) -> tuple[pl.DataFrame, dict]:
    """dedup + kcore on an interaction frame (INTER_COLS); (frame in file order, counts)."""
    inter = dedup(conform(raw, INTER_COLS))
    n_dedup = inter.height
    inter = kcore(inter, min_user, min_item)
    if inter.height == 0:
        hint = " (on a slice of a raw file, pass --min-item-users 0)" if min_item > 0 else ""
        raise InputError.at(
            path,
            None,
            f"users with >= {min_user} distinct items"
            f"{f' and items with >= {min_item} users' if min_item > 0 else ''}; none left after filtering{hint}",
        )
    counts = {
        "raw_rows": raw.height,
        "after_dedup": n_dedup,
        "after_kcore": inter.height,
        "min_user": min_user,
        "min_item": min_item,
    }
    return inter.sort("order"), counts


def items_for(
    item_ids: pl.Series, meta: pl.DataFrame | None, lookup: pl.Series | None = None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """The item frame for `item_ids` from a meta frame keyed by `item_id` (ITEM_COLS).
    `lookup`: the meta key of each id when it differs (P5 numbers -> asins); the key is also
    the stand-in title of an item without metadata or with an empty title."""
    key = lookup if lookup is not None else item_ids
    base = pl.DataFrame({"item_id": item_ids, "key": key})
    if meta is None:
        df = base.with_columns(pl.lit(None, pl.Utf8).alias("title"), pl.lit(None, pl.Boolean).alias("has_meta"))
    else:
        df = base.join(meta.rename({"item_id": "key"}).with_columns(has_meta=pl.lit(True)), on="key", how="left")
    df, fallback = fill_titles(df, pl.col("key"))
    return conform(df, ITEM_COLS).sort("item_id"), fallback
