"""Amazon review data, in the forms users have (Amazon 2023 JSONL: see amazon2023.py).

P5-processed (``sequential_data.txt`` + ``datamaps.json`` + ``meta.jsonl`` or Amazon
``meta_*.json(.gz)``): sequences are taken as given (already time-ordered by P5, already
5-core); there are no reviews, ratings or timestamps.

Raw 5-core reviews: 2014 ``reviews_<Category>_5.json(.gz)`` or 2018 ``<Category>_5.json(.gz)``,
with optional ``meta_<Category>.json(.gz)`` (2014 meta lines are Python literals, parsed
with ``ast.literal_eval``). Filtering, documented in fixtures/README.md as well:
  1. rows without reviewerID or asin are an error (named by line);
  2. de-duplicate (user, item): 2018 files repeat a review once per product variant;
     the earliest review (then first in file order) is kept;
  3. k-core: users with fewer than ``min_user`` distinct items are dropped (P5 keeps users with
     >= 5); with ``min_item`` > 0 the user/item filter is iterated until stable. The files are
     already 5-core on the full data, so ``min_item`` defaults to 0 (a slice of users keeps
     each user's whole history but not each item's). Steps 2 and 3 are reviews.py.
Timestamps go through timeunit.py (`--time-unit auto` reads 2014/2018 as seconds).

Which files are read, in this order: ``sequential_data.txt`` (P5), ``reviews_<C>_5.json``
(2014), ``<C>_5.json`` (2018), ``<C>.jsonl`` (2023), each also ``.gz``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from recsys_cli.data.sources import INTER_COLS, ITEM_COLS, Source, conform
from recsys_cli.data.sources.lines import json_lines, text_lines
from recsys_cli.data.sources.plausible import review_times
from recsys_cli.data.sources.reviews import filter_reviews, items_for, kcore  # noqa: F401 (kcore: public)
from recsys_cli.data.sources.timeunit import to_seconds, unit_note
from recsys_cli.data.text import clean
from recsys_cli.errors import InputError, RecsysError

SHORT_NAMES = {"toys": "Toys_and_Games", "beauty": "Beauty", "sports": "Sports_and_Outdoors"}
_CATEGORY_RE = re.compile(r"^[A-Za-z0-9_&,\-]+$")
_PRICE_RE = re.compile(r"\d+(?:\.\d+)?")


def resolve_category(category: str) -> str:
    """Short name -> Amazon file category; other names are kept as typed (checked)."""
    if category.lower() in SHORT_NAMES:
        return SHORT_NAMES[category.lower()]
    if not _CATEGORY_RE.match(category):
        raise RecsysError(
            f"--category {category!r}: unknown category; expected toys, beauty, sports or an Amazon "
            "category name such as Musical_Instruments (letters, digits, '_', '&', ',', '-')",
            exit_code=2,
        )
    return category


def find(data_dir: Path, names: list[str]) -> Path | None:
    for name in names:
        for suffix in ("", ".gz"):
            p = data_dir / f"{name}{suffix}"
            if p.is_file():
                return p
    # case-insensitive fallback (reviews_musical_instruments_5.json.gz)
    if data_dir.is_dir():
        lower = {n.lower() for n in names} | {f"{n.lower()}.gz" for n in names}
        for p in sorted(data_dir.iterdir()):
            if p.name.lower() in lower and p.is_file():
                return p
    return None


def load_amazon(
    category: str, data_dir: Path, min_user: int = 5, min_item: int | None = None, time_unit: str = "auto"
) -> Source:
    """`min_item` None: 0 for the 5-core 2014/2018 files, 5 for raw 2023 files (which are not
    5-core: iterating users and items >= 5 gives the release's own 5-core)."""
    cat = resolve_category(category)
    if not data_dir.is_dir():
        raise RecsysError(
            f"{data_dir}: data directory not found (expected P5 files or reviews_{cat}_5.json.gz)", exit_code=2
        )
    if (data_dir / "sequential_data.txt").is_file():
        return load_p5(data_dir, cat)
    r14 = find(data_dir, [f"reviews_{cat}_5.json"])
    r18 = None if r14 else find(data_dir, [f"{cat}_5.json"])
    if r14 is None and r18 is None:
        r23 = find(data_dir, [f"{cat}.jsonl"])
        if r23 is not None:
            from recsys_cli.data.sources.amazon2023 import load_2023

            meta23 = find(data_dir, [f"meta_{cat}.jsonl"])
            return load_2023(r23, meta23, min_user, 5 if min_item is None else min_item, time_unit)
        raise RecsysError(
            f"{data_dir}: unknown category {category!r} here: expected sequential_data.txt (P5), "
            f"reviews_{cat}_5.json(.gz) (Amazon 2014), {cat}_5.json(.gz) (Amazon 2018) "
            f"or {cat}.jsonl(.gz) (Amazon 2023)",
            exit_code=2,
        )
    meta = find(data_dir, [f"meta_{cat}.json"])
    return load_raw(r14 or r18, meta, "amazon-2014" if r14 else "amazon-2018", min_user, min_item or 0, time_unit)


# --- metadata -----------------------------------------------------------------------------
def _categories(obj: dict) -> list[str]:
    """Flatten category paths; the department root of a multi-level path is dropped."""
    raw = obj.get("categories", obj.get("category")) or []
    paths = raw if raw and isinstance(raw[0], list) else [raw]
    out: list[str] = []
    for path in paths:
        names = [clean(c) for c in path if isinstance(c, str)]
        names = [n for n in names if n and len(n) < 80]
        if len(names) > 1:
            names = names[1:]
        for n in names:
            if n not in out:
                out.append(n)
    return out


def _price(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().startswith("$"):
        m = _PRICE_RE.search(value.replace(",", ""))
        return float(m.group()) if m else None
    return None


def read_meta(path: Path) -> pl.DataFrame:
    """asin -> title, categories, brand, price from meta.jsonl / meta_*.json(.gz)."""
    rows = {}
    for lineno, obj in json_lines(path, literal_ok=True):
        asin = obj.get("asin")
        if not isinstance(asin, str) or not asin:
            raise InputError.at(path, lineno, "an 'asin' field (non-empty string)")
        if asin in rows:
            continue
        title = obj.get("title")
        if isinstance(title, (list, dict)):
            raise InputError.at(path, lineno, f"'title' as text; got a {type(title).__name__} {str(title)[:40]}")
        brand = obj.get("brand")
        brand = (clean(brand) if not isinstance(brand, (list, dict)) else "") or None
        rows[asin] = (asin, clean(title) or None, _categories(obj), brand, _price(obj.get("price")))
    cols = list(ITEM_COLS)
    return pl.DataFrame(list(rows.values()), schema=ITEM_COLS, orient="row").select(cols)


# --- P5-processed -------------------------------------------------------------------------
def load_p5(data_dir: Path, cat: str) -> Source:
    seq_path, maps_path = data_dir / "sequential_data.txt", data_dir / "datamaps.json"
    if not maps_path.is_file():
        raise InputError.at(maps_path, None, "file not found (P5 datamaps.json with id2user and id2item)")
    try:
        maps = json.loads(maps_path.read_bytes().decode("utf-8"))
        id2item = maps["id2item"]
        id2user = maps.get("id2user", {})
    except UnicodeDecodeError as exc:
        raise InputError.at(maps_path, None, f"valid UTF-8 JSON (undecodable byte at offset {exc.start})")
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError.at(maps_path, None, f"a JSON object with 'id2item' ({type(exc).__name__})")
    users, items, order = [], [], []
    seen_users: set[str] = set()
    for lineno, line in text_lines(seq_path):
        parts = line.split()
        if len(parts) < 2:
            raise InputError.at(seq_path, lineno, "'user_id item_id item_id ...' (at least one item)")
        user = parts[0]
        if user in seen_users:
            raise InputError.at(seq_path, lineno, f"each user once; user {user!r} repeats")
        if id2user and user not in id2user:
            raise InputError.at(seq_path, lineno, f"a user id from datamaps.json id2user; got unknown user {user!r}")
        seen_users.add(user)
        for k, it in enumerate(parts[1:]):
            if it not in id2item:
                raise InputError.at(seq_path, lineno, f"item ids from datamaps.json id2item; got unknown item {it!r}")
        n = len(parts) - 1
        users.extend([user] * n)
        items.extend(parts[1:])
        order.extend(range(len(order), len(order) + n))
    if not users:
        raise InputError.at(seq_path, None, "at least one user sequence; the file is empty")
    inter = conform(pl.DataFrame({"user_id": users, "item_id": items, "order": order}), INTER_COLS)
    meta_path = data_dir / "meta.jsonl"
    if not meta_path.is_file():
        meta_path = find(data_dir, [f"meta_{cat}.json"])
    meta = read_meta(meta_path) if meta_path else None
    ids = inter["item_id"].unique().sort()
    asins = ids.replace_strict(id2item, return_dtype=pl.Utf8)
    items_df, fallback = items_for(ids, meta, asins)
    inputs = [seq_path, maps_path] + ([meta_path] if meta_path else [])
    notes = ["P5-processed split: no reviews, ratings or timestamps; only sequential and direct prompts"]
    if meta is None:
        notes.append("no item metadata found: titles are Amazon asins")
    return Source(
        "amazon-p5", items_df, inter, None, False, inputs, notes, {"dedup": "none (P5 sequences as given)"}, fallback
    )


# --- raw reviews --------------------------------------------------------------------------
def load_raw(
    path: Path, meta_path: Path | None, kind: str, min_user: int, min_item: int, time_unit: str = "auto"
) -> Source:
    rows, lines = [], []
    for lineno, obj in json_lines(path):
        user, item = obj.get("reviewerID"), obj.get("asin")
        if not isinstance(user, str) or not isinstance(item, str) or not user.strip() or not item.strip():
            raise InputError.at(path, lineno, "'reviewerID' and 'asin' as non-empty text")
        ts, rating = obj.get("unixReviewTime"), obj.get("overall")
        if ts is not None and (not isinstance(ts, (int, float)) or isinstance(ts, bool)):
            raise InputError.at(path, lineno, f"'unixReviewTime' as a unix time number; got {ts!r}")
        if rating is not None and (not isinstance(rating, (int, float)) or isinstance(rating, bool)):
            raise InputError.at(path, lineno, f"'overall' as a number 1-5; got {rating!r}")
        rows.append(
            (
                user,
                item,
                None if rating is None else float(rating),
                ts,
                clean(obj.get("reviewText")) or None,
                clean(obj.get("summary")) or None,
                len(rows),
            )
        )
        lines.append(lineno)
    if not rows:
        raise InputError.at(path, None, "at least one review; the file is empty")
    raw = pl.DataFrame(
        rows,
        schema={
            "user_id": pl.Utf8,
            "item_id": pl.Utf8,
            "rating": pl.Float64,
            "ts": pl.Float64,
            "review": pl.Utf8,
            "summary": pl.Utf8,
            "order": pl.Int64,
        },
        orient="row",
    )
    seconds, used = to_seconds(raw["ts"].alias("unixReviewTime"), time_unit, path, lines)
    warned: list[str] = []
    review_times(seconds, path, lines, "check --time-unit", warned)
    raw = raw.with_columns(timestamp=seconds).drop("ts")
    inter, filters = filter_reviews(raw, path, min_user, min_item)
    meta = read_meta(meta_path) if meta_path else None
    items_df, fallback = items_for(inter["item_id"].unique().sort(), meta)
    notes = [unit_note("unixReviewTime", used, time_unit)] if used != "s" or time_unit != "auto" else []
    notes += warned
    if meta is None:
        notes.append(f"no meta_<Category>.json(.gz) beside {path.name}: item titles are Amazon asins")
    inputs = [path] + ([meta_path] if meta_path else [])
    return Source(kind, items_df, inter, None, True, inputs, notes, filters, fallback)
