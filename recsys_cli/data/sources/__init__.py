"""Input sources for `recsys textualize`. Each reader returns a `Source`: normalised frames
that the textualizer turns into the artifact files.

    amazon.load_amazon(category, data_dir)   # P5-processed or raw Amazon 2014 / 2018 / 2023
    table.load_table(interactions, ...)      # any CSV / Parquet / JSONL tables
    recbole.load_recbole(dataset_dir)        # RecBole atomic files (.inter / .item / .user)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

# item frame:        item_id str, title str, categories list[str], brand str|null, price f64|null
# interaction frame: user_id str, item_id str, timestamp i64|null, rating f64|null,
#                    review str|null, summary str|null, order i64 (file order, tie-breaker)
# user frame:        user_id str + one Utf8 column per user feature (optional)
ITEM_COLS = {
    "item_id": pl.Utf8,
    "title": pl.Utf8,
    "categories": pl.List(pl.Utf8),
    "brand": pl.Utf8,
    "price": pl.Float64,
}
INTER_COLS = {
    "user_id": pl.Utf8,
    "item_id": pl.Utf8,
    "timestamp": pl.Int64,
    "rating": pl.Float64,
    "review": pl.Utf8,
    "summary": pl.Utf8,
    "order": pl.Int64,
}


@dataclass
class Source:
    kind: str  # "amazon-p5" | "amazon-2014" | "amazon-2018" | "amazon-2023" | "table" | "recbole"
    items: pl.DataFrame
    interactions: pl.DataFrame
    users: pl.DataFrame | None = None
    has_reviews: bool = False
    inputs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    filters: dict = field(default_factory=dict)
    # item_id -> why its title is a stand-in ("no metadata" | "empty title"); read by quality.py
    title_fallback: dict[str, str] = field(default_factory=dict)


def conform(df: pl.DataFrame, cols: dict) -> pl.DataFrame:
    """Add missing columns as nulls and cast to `cols` (order included)."""
    return df.select([(pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c) for c, t in cols.items()])


def fill_titles(df: pl.DataFrame, fallback: pl.Expr) -> tuple[pl.DataFrame, dict[str, str]]:
    """Give items without a usable title the `fallback` text (the asin, "item <id>").
    `df` has item_id, title and `has_meta` (null when the item had no metadata row).
    Returns the frame (without has_meta) and {item_id: "no metadata" | "empty title"}."""
    empty = pl.col("title").is_null() | (pl.col("title").str.strip_chars() == "")
    why = df.select(
        "item_id",
        pl.when(pl.col("has_meta").is_null())
        .then(pl.lit("no metadata"))
        .when(empty)
        .then(pl.lit("empty title"))
        .alias("why"),
    ).drop_nulls("why")
    out = df.with_columns(title=pl.when(empty).then(fallback).otherwise(pl.col("title"))).drop("has_meta")
    return out, dict(why.iter_rows())
