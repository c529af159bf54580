"""Amazon Reviews 2023 (McAuley lab): ``<Category>.jsonl`` + ``meta_<Category>.jsonl``,
each plain or ``.gz``.

    recsys textualize amazon --category Office_Products --data-dir fixtures/amazon/office_2023 \
        --min-item-users 0 --out runs/office

Reviews, one JSON object a line: ``rating`` (float 1-5), ``title`` (the review's headline:
becomes the summary), ``text`` (the review), ``asin`` (the variant bought), ``parent_asin``
(the product), ``user_id``, ``timestamp`` (unix **milliseconds**), ``helpful_vote``,
``verified_purchase``, ``images``. Meta, one object a line per ``parent_asin``:
``main_category``, ``title``, ``features``, ``description``, ``price`` (float or null;
exports through Hugging Face datasets write the string "None"), ``store``, ``categories``
(a path, root first, often empty), ``details`` (a dict, or its JSON text in those exports).

Rules:
* items are ``parent_asin``s: the variants of one product (colour, size) are one item, as
  the release asks ("please use parent ID to find product meta"); a line without
  ``parent_asin`` uses its ``asin``;
* the filtering is reviews.py's, the same as 2014/2018: de-duplicate (user, item) keeping the
  earliest review, then k-core. The 2014/2018 ``_5`` files are already 5-core, the 2023
  review files are not, so ``--min-item-users`` defaults to 5 here: users >= 5 items and
  items >= 5 users, iterated, which is the release's own 5-core (on a slice of users, pass
  ``--min-item-users 0``);
* timestamps go through timeunit.py (`auto` detects the milliseconds);
* brand: ``details["Brand"]``, else ``store``; categories: the path without its root, else
  ``[main_category]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from recsys_cli.data.sources import ITEM_COLS, Source
from recsys_cli.data.sources.lines import json_lines
from recsys_cli.data.sources.plausible import review_times
from recsys_cli.data.sources.reviews import filter_reviews, items_for
from recsys_cli.data.sources.timeunit import to_seconds, unit_note
from recsys_cli.data.text import clean
from recsys_cli.errors import InputError

_PRICE_RE = re.compile(r"\d+(?:\.\d+)?")
_SCHEMA = {
    "user_id": pl.Utf8,
    "item_id": pl.Utf8,
    "rating": pl.Float64,
    "ts": pl.Float64,
    "review": pl.Utf8,
    "summary": pl.Utf8,
    "order": pl.Int64,
}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _str_or_none(path: Path, lineno: int, obj: dict, key: str) -> str | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, str):
        raise InputError.at(path, lineno, f"'{key}' as text; got {type(v).__name__} {str(v)[:40]!r}")
    return v


def read_reviews(path: Path, time_unit: str, notes: list[str] | None = None) -> tuple[pl.DataFrame, int, str]:
    """(interaction frame, reviews of a variant (asin != parent_asin), time unit used);
    warnings about the times are added to `notes`."""
    rows, lines, variants = [], [], 0
    for lineno, obj in json_lines(path):
        user = obj.get("user_id")
        item = obj.get("parent_asin") or obj.get("asin")
        if not isinstance(user, str) or not user.strip() or not isinstance(item, str) or not item.strip():
            raise InputError.at(path, lineno, "'user_id' and 'parent_asin' (or 'asin') as non-empty text")
        ts = obj.get("timestamp", obj.get("sort_timestamp"))
        if ts is not None and not _number(ts):
            raise InputError.at(path, lineno, f"'timestamp' as unix milliseconds (a number); got {ts!r}")
        rating = obj.get("rating")
        if rating is not None and not _number(rating):
            raise InputError.at(path, lineno, f"'rating' as a number 1-5; got {rating!r}")
        text, title = _str_or_none(path, lineno, obj, "text"), _str_or_none(path, lineno, obj, "title")
        variants += isinstance(obj.get("asin"), str) and obj["asin"] != item
        rows.append(
            (
                user,
                item,
                None if rating is None else float(rating),
                ts,
                clean(text) or None,
                clean(title) or None,
                len(rows),
            )
        )
        lines.append(lineno)
    if not rows:
        raise InputError.at(path, None, "at least one review; the file is empty")
    raw = pl.DataFrame(rows, schema=_SCHEMA, orient="row")
    seconds, used = to_seconds(raw["ts"].alias("timestamp"), time_unit, path, lines)
    review_times(seconds, path, lines, "check --time-unit", notes if notes is not None else [])
    return raw.with_columns(timestamp=seconds).drop("ts"), variants, used


def _details(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _price(value) -> float | None:
    if _number(value):
        return float(value)
    if isinstance(value, str):
        m = _PRICE_RE.fullmatch(value.strip().lstrip("$").replace(",", ""))
        return float(m.group()) if m else None
    return None


def _categories(path: Path, lineno: int, obj: dict) -> list[str]:
    raw = obj.get("categories") or []
    if not isinstance(raw, list):
        raise InputError.at(path, lineno, f"'categories' as a list of text; got {type(raw).__name__}")
    names = [n for n in (clean(c) for c in raw if isinstance(c, str)) if n and len(n) < 80]
    if len(names) > 1:
        names = names[1:]
    if not names:
        main = clean(obj.get("main_category")) if isinstance(obj.get("main_category"), str) else ""
        names = [main] if main else []
    return list(dict.fromkeys(names))


def read_meta(path: Path) -> pl.DataFrame:
    """parent_asin -> title, categories, brand, price (the first line of a parent_asin wins)."""
    rows = {}
    for lineno, obj in json_lines(path):
        key = obj.get("parent_asin")
        if not isinstance(key, str) or not key:
            raise InputError.at(path, lineno, "a 'parent_asin' field (non-empty string)")
        if key in rows:
            continue
        title = _str_or_none(path, lineno, obj, "title")
        details = _details(obj.get("details"))
        brand = details.get("Brand") if isinstance(details.get("Brand"), str) else obj.get("store")
        brand = clean(brand) if isinstance(brand, str) else ""
        rows[key] = (key, clean(title) or None, _categories(path, lineno, obj), brand or None, _price(obj.get("price")))
    return pl.DataFrame(list(rows.values()), schema=ITEM_COLS, orient="row")


def load_2023(path: Path, meta_path: Path | None, min_user: int, min_item: int, time_unit: str = "auto") -> Source:
    warned: list[str] = []
    raw, variants, used = read_reviews(path, time_unit, warned)
    inter, filters = filter_reviews(raw, path, min_user, min_item)
    filters["variant_reviews"] = variants
    meta = read_meta(meta_path) if meta_path else None
    items_df, fallback = items_for(inter["item_id"].unique().sort(), meta)
    notes = [
        unit_note("timestamp", used, time_unit),
        "Amazon 2023: items are parent_asins (variants of one product are one item)",
    ]
    notes += warned
    if meta is None:
        notes.append(f"no meta_<Category>.jsonl(.gz) beside {path.name}: item titles are parent_asins")
    has_text = inter["review"].null_count() < inter.height or inter["rating"].null_count() < inter.height
    inputs = [path] + ([meta_path] if meta_path else [])
    return Source("amazon-2023", items_df, inter, None, has_text, inputs, notes, filters, fallback)
