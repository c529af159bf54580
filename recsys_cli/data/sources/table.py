"""Generic tables (CSV / TSV / Parquet / JSONL) -> `Source`, for users with their own data
(MovieLens-style interactions + item table + user table with features such as age, gender).

    recsys textualize table --interactions ratings.csv --items movies.csv --users users.csv \
        --user-col userId --item-col movieId --time-col timestamp --rating-col rating --out runs/ml

Columns: every option that names a column must name an existing one, or the command stops
with one line listing the columns found. The optional columns (time, rating, review,
summary, title, categories, brand, price) default to None, meaning "the conventional name
(timestamp, rating, ...) if the table has it"; a name given explicitly must exist.
Read with polars lazy scans (only the mapped columns are materialised). Filtering is
reviews.py's (de-duplicate (user, item), keep the earliest; k-core). Timestamps may be
numbers (unix seconds or milliseconds: timeunit.py) or date/datetime values. Categories may
be a list column or text split on "|"; every other column must hold scalars.
Strict: a CSV row with fewer fields than the header, an empty user or item id, or a row
without a time (when there is a time column) is an error naming its line; implausible times
and an item column that looks like a row id are plausible.py's (an error or one warning).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys_cli.data.sources import ITEM_COLS, Source, conform, fill_titles
from recsys_cli.data.sources.plausible import check_items, check_times, require_keys, require_times
from recsys_cli.data.sources.reviews import filter_reviews
from recsys_cli.data.sources.tablefile import check_scalar, collect, column_names, first_bad, locate
from recsys_cli.data.sources.timeunit import to_seconds, unit_note
from recsys_cli.data.text import clean
from recsys_cli.errors import InputError

CONVENTIONAL = {
    "time": "timestamp",
    "rating": "rating",
    "review": "review",
    "summary": "summary",
    "title": "title",
    "categories": "categories",
    "brand": "brand",
    "price": "price",
}
OPTION = {
    "user": "--user-col",
    "item": "--item-col",
    "time": "--time-col",
    "rating": "--rating-col",
    "review": "--review-col",
    "summary": "--summary-col",
    "title": "--title-col",
    "categories": "--category-col",
    "brand": "--brand-col",
    "price": "--price-col",
}
ITEM_FIELDS = ("title", "categories", "brand", "price")


@dataclass
class Columns:
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = None  # None: "timestamp" if present
    rating: str | None = None
    review: str | None = None
    summary: str | None = None
    title: str | None = None
    categories: str | None = None
    brand: str | None = None
    price: str | None = None
    features: list[str] | None = None  # user feature columns; None = every other column


def _shown(found: list[str]) -> str:
    return ", ".join(found[:30]) + (" ..." if len(found) > 30 else "")


def resolve(path: Path, found: list[str], cols: Columns, fields: tuple[str, ...]) -> dict[str, str | None]:
    """field -> the column to read (None: absent). A named column that is missing is an error."""
    out = {}
    for f in fields:
        given = getattr(cols, f)
        if given is None:
            conv = CONVENTIONAL.get(f)
            out[f] = conv if conv in found else None
        elif given in found:
            out[f] = given
        else:
            raise InputError.at(
                path, "header", f"{OPTION[f]} {given!r}: no such column; the columns are: {_shown(found)}"
            )
    return out


def _to_seconds(path: Path, s: pl.Series, unit: str, where) -> tuple[pl.Series, str]:
    if s.dtype.is_numeric():
        return to_seconds(s, unit, path, where)
    if isinstance(s.dtype, (pl.Date, pl.Datetime)) or s.dtype in (pl.Date, pl.Datetime):
        return s.cast(pl.Datetime("us")).dt.epoch("s"), "date"
    text = s.cast(pl.Utf8)
    num = text.cast(pl.Float64, strict=False)
    used = "date"
    if num.drop_nulls().len():
        secs, used = to_seconds(num, unit, path, where)
    else:
        secs = num.cast(pl.Int64)
    out = secs
    if num.null_count() > text.null_count():  # some values are not numbers: dates?
        rest = pl.DataFrame({"t": text, "n": num}).select(pl.when(pl.col("n").is_null()).then(pl.col("t"))).to_series()
        out = secs.fill_null(_dates(rest))
    first_bad(path, out.is_null() & s.is_not_null(), lambda k: f"'{s.name}' as unix seconds or a date; got {s[k]!r}")
    return out.alias(s.name), used


def _dates(text: pl.Series) -> pl.Series:
    """Unix seconds of date/datetime text (format inferred from the first value); null where it does not parse."""
    try:
        return text.str.to_datetime(strict=False).dt.epoch("s")
    except pl.exceptions.PolarsError:  # no format fits the first value: nothing parses
        return pl.Series(text.name, [None] * text.len(), pl.Int64)


def _interactions(path: Path, cols: Columns, time_unit: str) -> tuple[pl.DataFrame, bool, list[str]]:
    found = column_names(path)
    for f in ("user", "item"):
        if getattr(cols, f) not in found:
            raise InputError.at(
                path,
                "header",
                f"{OPTION[f]} {getattr(cols, f)!r}: no such column (map it with "
                f"{OPTION[f]}); the columns are: {_shown(found)}",
            )
    opt = resolve(path, found, cols, ("time", "rating", "review", "summary"))
    df = collect(path, [cols.user, cols.item, *[c for c in opt.values() if c]])
    if df.height == 0:
        raise InputError.at(path, None, "at least one interaction row; the table is empty")
    for c in df.columns:
        check_scalar(path, df[c])
    where = locate(path)
    for c in (cols.user, cols.item):
        require_keys(df[c], path, where, f"a non-empty '{c}' value ({OPTION['user' if c == cols.user else 'item']})")
    out = {
        "user_id": df[cols.user].cast(pl.Utf8),
        "item_id": df[cols.item].cast(pl.Utf8),
        "order": pl.int_range(0, df.height, eager=True).cast(pl.Int64),
    }
    notes: list[str] = []
    if opt["time"]:
        out["timestamp"], used = _to_seconds(path, df[opt["time"]], time_unit, where)
        if used != "date":
            notes.append(unit_note(opt["time"], used, time_unit))
        require_times(out["timestamp"], path, where, opt["time"])
        check_times(out["timestamp"], path, where, "check --time-col and --time-unit", notes)
    check_items(df[cols.item], path, "check --item-col", notes)
    if opt["rating"]:
        r = df[opt["rating"]].cast(pl.Float64, strict=False)
        first_bad(
            path,
            r.is_null() & df[opt["rating"]].is_not_null(),
            lambda k: f"'{opt['rating']}' as a number; got {df[opt['rating']][k]!r}",
        )
        out["rating"] = r
    has_reviews = "rating" in out
    for key in ("review", "summary"):
        if opt[key]:
            text = df[opt[key]].cast(pl.Utf8)
            out[key] = text.map_elements(clean, return_dtype=pl.Utf8) if df.height < 2_000_000 else text
            has_reviews = has_reviews or key == "review"
    return pl.DataFrame(out), has_reviews, notes


def _items(path: Path, ids: pl.Series, cols: Columns) -> tuple[pl.DataFrame, dict[str, str]]:
    found = column_names(path)
    if cols.item not in found:
        raise InputError.at(
            path,
            "header",
            f"{OPTION['item']} {cols.item!r}: no such column in the item table; the columns are: {_shown(found)}",
        )
    opt = resolve(path, found, cols, ITEM_FIELDS)
    idf = collect(path, [cols.item, *[c for c in opt.values() if c]])
    for f in ("title", "brand", "price"):
        if opt[f]:
            check_scalar(path, idf[opt[f]])
    check_scalar(path, idf[cols.item])
    idf = (
        idf.rename({cols.item: "item_id"})
        .with_columns(pl.col("item_id").cast(pl.Utf8))
        .unique("item_id", keep="first", maintain_order=True)
    )
    sel = [pl.col("item_id"), pl.lit(True).alias("has_meta")]
    sel.append(
        pl.col(opt["title"]).cast(pl.Utf8).map_elements(clean, return_dtype=pl.Utf8).alias("title")
        if opt["title"]
        else pl.lit(None, pl.Utf8).alias("title")
    )
    if opt["categories"]:
        c = opt["categories"]
        cat = (
            pl.col(c).cast(pl.List(pl.Utf8))
            if isinstance(idf.schema[c], pl.List)
            else pl.col(c).cast(pl.Utf8).str.split("|")
        )
        check_scalar(path, idf[c], allow_list=True)
        sel.append(
            cat.list.eval(pl.element().str.strip_chars())
            .list.eval(pl.element().filter(pl.element() != ""))
            .list.unique(maintain_order=True)
            .alias("categories")
        )
    sel.append(
        pl.col(opt["brand"]).cast(pl.Utf8).alias("brand") if opt["brand"] else pl.lit(None, pl.Utf8).alias("brand")
    )
    sel.append(
        pl.col(opt["price"]).cast(pl.Float64, strict=False).alias("price")
        if opt["price"]
        else pl.lit(None, pl.Float64).alias("price")
    )
    meta = idf.select(sel)
    df = pl.DataFrame({"item_id": ids}).join(meta, on="item_id", how="left")
    if "categories" not in df.columns:
        df = df.with_columns(categories=pl.lit([], pl.List(pl.Utf8)))
    df = df.with_columns(pl.col("categories").fill_null(pl.lit([], pl.List(pl.Utf8))))
    df, fallback = fill_titles(df, pl.lit("item ") + pl.col("item_id"))
    return conform(df, ITEM_COLS).sort("item_id"), fallback


def _users(path: Path, cols: Columns) -> pl.DataFrame:
    found = column_names(path)
    if cols.user not in found:
        raise InputError.at(
            path,
            "header",
            f"{OPTION['user']} {cols.user!r}: no such column in the user table; the columns are: {_shown(found)}",
        )
    if cols.features is not None:
        missing = [c for c in cols.features if c not in found]
        if missing:
            raise InputError.at(
                path, "header", f"--user-features {','.join(missing)}: no such column; the columns are: {_shown(found)}"
            )
    feats = cols.features if cols.features is not None else [c for c in found if c != cols.user]
    udf = collect(path, [cols.user, *[f for f in feats if f != cols.user]])
    for c in udf.columns:
        check_scalar(path, udf[c])
    return udf.select(
        pl.col(cols.user).cast(pl.Utf8).alias("user_id"),
        *[pl.col(c).cast(pl.Utf8) for c in udf.columns if c != cols.user],
    ).unique("user_id", keep="first", maintain_order=True)


def load_table(
    interactions: Path,
    items: Path | None,
    users: Path | None,
    cols: Columns,
    min_user: int = 5,
    min_item: int = 0,
    time_unit: str = "auto",
) -> Source:
    if items is None:
        named = [OPTION[f] for f in ITEM_FIELDS if getattr(cols, f) is not None]
        if named:
            raise InputError(
                f"{', '.join(named)} {'names an item-table column' if len(named) == 1 else 'name item-table columns'}, "
                "but no --items table was given"
            )
    if users is None and cols.features is not None:
        raise InputError("--user-features names user-table columns, but no --users table was given")
    raw, has_reviews, notes = _interactions(interactions, cols, time_unit)
    inter, filters = filter_reviews(raw, interactions, min_user, min_item)
    ids = inter["item_id"].unique().sort()
    inputs = [interactions]
    if items is not None:
        item_df, fallback = _items(items, ids, cols)
        inputs.append(items)
    else:
        item_df, fallback = _items_without_table(ids)
        notes.append("no --items table: titles are 'item <id>'")
    users_df = None
    if users is not None:
        users_df = _users(users, cols)
        inputs.append(users)
    return Source("table", item_df, inter, users_df, has_reviews, inputs, notes, filters, fallback)


def _items_without_table(ids: pl.Series) -> tuple[pl.DataFrame, dict[str, str]]:
    df = pl.DataFrame({"item_id": ids}).with_columns(
        title=pl.lit(None, pl.Utf8), has_meta=pl.lit(None, pl.Boolean), categories=pl.lit([], pl.List(pl.Utf8))
    )
    df, fallback = fill_titles(df, pl.lit("item ") + pl.col("item_id"))
    return conform(df, ITEM_COLS).sort("item_id"), fallback
