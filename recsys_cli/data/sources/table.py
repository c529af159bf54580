"""Generic tables (CSV / TSV / Parquet / JSONL) -> `Source`, for users with their own data
(MovieLens-style interactions + item table + user table with features such as age, gender).

    recsys textualize table --interactions ratings.csv --items movies.csv --users users.csv \
        --user-col userId --item-col movieId --time-col timestamp --rating-col rating --out runs/ml

Read with polars lazy scans (only the mapped columns are materialised). Interactions are
de-duplicated on (user, item), keeping the earliest (then first in file order); users with
fewer than `min_user` items are dropped (and items with fewer than `min_item` users, iterated).
Timestamps may be integers (unix seconds) or date/datetime values (converted to unix seconds).
Categories may be a list column or a string split on "|".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys_cli.data.sources import INTER_COLS, ITEM_COLS, Source, conform
from recsys_cli.data.sources.amazon import kcore
from recsys_cli.data.text import clean
from recsys_cli.errors import InputError


@dataclass
class Columns:
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = "timestamp"
    rating: str | None = "rating"
    review: str | None = "review"
    summary: str | None = "summary"
    title: str = "title"
    categories: str = "categories"
    brand: str = "brand"
    price: str = "price"
    features: list[str] | None = None  # user feature columns; None = every other column


def scan(path: Path) -> pl.LazyFrame:
    if not path.is_file():
        raise InputError.at(path, None, "file not found")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            return pl.scan_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10000)
        if suffix == ".parquet":
            return pl.scan_parquet(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            return pl.scan_ndjson(path, infer_schema_length=10000)
    except Exception as exc:  # polars raises several types for unreadable files
        raise InputError.at(path, None, f"a readable {suffix} table ({_one(exc)})")
    raise InputError.at(path, None, f"a .csv, .tsv, .parquet or .jsonl table; got {path.suffix!r}")


def _one(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


def _collect(path: Path, lf: pl.LazyFrame, want: list[str], required: list[str]) -> pl.DataFrame:
    try:
        cols = lf.collect_schema().names()
    except Exception as exc:
        raise InputError.at(path, None, f"a readable table ({_one(exc)})")
    missing = [c for c in required if c not in cols]
    if missing:
        raise InputError.at(path, "header", f"columns {missing} (map them with --user-col/--item-col/...); found {cols[:12]}")
    try:
        return lf.select([c for c in want if c in cols]).collect()
    except UnicodeDecodeError as exc:
        raise InputError.at(path, None, f"valid UTF-8 text ({_one(exc)})")
    except Exception as exc:
        raise InputError.at(path, None, f"a well-formed table ({_one(exc)})")


def _first_bad(path: Path, mask: pl.Series, what: str) -> None:
    idx = mask.arg_true()
    if len(idx):
        raise InputError.at(path, f"row {int(idx[0]) + 1}", what)


def _to_seconds(path: Path, s: pl.Series) -> pl.Series:
    if s.dtype.is_integer():
        return s.cast(pl.Int64)
    if s.dtype.is_float():
        return s.cast(pl.Int64)
    if s.dtype in (pl.Date, pl.Datetime) or isinstance(s.dtype, pl.Datetime):
        return s.cast(pl.Datetime("us")).dt.epoch("s")
    parsed = s.cast(pl.Utf8).str.to_datetime(strict=False).dt.epoch("s")
    num = s.cast(pl.Utf8).cast(pl.Int64, strict=False)
    out = num.fill_null(parsed)
    bad = out.is_null() & s.is_not_null()
    if bad.any():
        _first_bad(path, bad, f"'{s.name}' as unix seconds or a date; got {s.filter(bad)[0]!r}")
    return out


def load_table(interactions: Path, items: Path | None, users: Path | None, cols: Columns,
               min_user: int = 5, min_item: int = 0) -> Source:
    opt = [c for c in (cols.time, cols.rating, cols.review, cols.summary) if c]
    df = _collect(interactions, scan(interactions), [cols.user, cols.item, *opt], [cols.user, cols.item])
    if df.height == 0:
        raise InputError.at(interactions, None, "at least one interaction row; the table is empty")
    for c in (cols.user, cols.item):
        _first_bad(interactions, df[c].is_null(), f"a non-empty '{c}' value")
    out = {"user_id": df[cols.user].cast(pl.Utf8), "item_id": df[cols.item].cast(pl.Utf8),
           "order": pl.int_range(0, df.height, eager=True).cast(pl.Int64)}
    if cols.time and cols.time in df.columns:
        out["timestamp"] = _to_seconds(interactions, df[cols.time])
    if cols.rating and cols.rating in df.columns:
        r = df[cols.rating].cast(pl.Float64, strict=False)
        _first_bad(interactions, r.is_null() & df[cols.rating].is_not_null(), f"'{cols.rating}' as a number")
        out["rating"] = r
    has_reviews = False
    for key, c in (("review", cols.review), ("summary", cols.summary)):
        if c and c in df.columns:
            out[key] = df[c].cast(pl.Utf8).map_elements(clean, return_dtype=pl.Utf8) if df.height < 2_000_000 else df[c].cast(pl.Utf8)
            has_reviews = has_reviews or key == "review"
    has_reviews = has_reviews or "rating" in out
    inter = conform(pl.DataFrame(out), INTER_COLS)
    inter = inter.sort(["user_id", "item_id", "timestamp", "order"], nulls_last=True).unique(
        ["user_id", "item_id"], keep="first", maintain_order=True
    )
    inter = kcore(inter, min_user, min_item).sort("order")
    if inter.height == 0:
        raise InputError.at(interactions, None, f"users with >= {min_user} distinct items; none left after filtering")
    inputs = [interactions]
    ids = inter["item_id"].unique().sort()
    if items is not None:
        idf = _collect(items, scan(items), [cols.item, cols.title, cols.categories, cols.brand, cols.price], [cols.item])
        inputs.append(items)
        idf = idf.rename({cols.item: "item_id"}).with_columns(pl.col("item_id").cast(pl.Utf8)).unique("item_id", keep="first", maintain_order=True)
        sel = [pl.col("item_id")]
        sel.append(pl.col(cols.title).cast(pl.Utf8).map_elements(clean, return_dtype=pl.Utf8).alias("title") if cols.title in idf.columns else pl.lit(None, pl.Utf8).alias("title"))
        if cols.categories in idf.columns:
            cat = pl.col(cols.categories)
            cat = cat.cast(pl.List(pl.Utf8)) if isinstance(idf.schema[cols.categories], pl.List) else cat.cast(pl.Utf8).str.split("|")
            sel.append(cat.list.eval(pl.element().str.strip_chars()).list.eval(pl.element().filter(pl.element() != "")).list.unique(maintain_order=True).alias("categories"))
        sel.append(pl.col(cols.brand).cast(pl.Utf8).alias("brand") if cols.brand in idf.columns else pl.lit(None, pl.Utf8).alias("brand"))
        sel.append(pl.col(cols.price).cast(pl.Float64, strict=False).alias("price") if cols.price in idf.columns else pl.lit(None, pl.Float64).alias("price"))
        meta = idf.select(sel)
    else:
        meta = pl.DataFrame(schema=ITEM_COLS)
    item_df = pl.DataFrame({"item_id": ids}).join(meta, on="item_id", how="left")
    item_df = item_df.with_columns(
        title=pl.when(pl.col("title").is_null() | (pl.col("title") == "")).then(pl.lit("item ") + pl.col("item_id")).otherwise(pl.col("title")),
        categories=pl.col("categories").fill_null(pl.lit([], pl.List(pl.Utf8))) if "categories" in item_df.columns else pl.lit([], pl.List(pl.Utf8)),
    )
    item_df = conform(item_df, ITEM_COLS).sort("item_id")
    users_df = None
    if users is not None:
        inputs.append(users)
        udf = _collect(users, scan(users), [cols.user, *(cols.features or [])] if cols.features else [], [cols.user]) if cols.features else None
        if udf is None:
            lf = scan(users)
            udf = _collect(users, lf, lf.collect_schema().names(), [cols.user])
        feats = [c for c in udf.columns if c != cols.user]
        users_df = udf.select(pl.col(cols.user).cast(pl.Utf8).alias("user_id"), *[pl.col(c).cast(pl.Utf8) for c in feats]).unique(
            "user_id", keep="first", maintain_order=True
        )
    notes = [] if items is not None else ["no --items table: titles are 'item <id>'"]
    filters = {"rows": df.height, "after_dedup_and_kcore": inter.height, "min_user": min_user, "min_item": min_item}
    return Source("table", item_df, inter, users_df, has_reviews, inputs, notes, filters)
