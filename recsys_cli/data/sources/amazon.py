"""Amazon review data, in the two forms users have.

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
     each user's whole history but not each item's).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

from recsys_cli.data.sources import INTER_COLS, ITEM_COLS, Source, conform
from recsys_cli.data.sources.lines import json_lines, text_lines
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


def _find(data_dir: Path, names: list[str]) -> Path | None:
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


def load_amazon(category: str, data_dir: Path, min_user: int = 5, min_item: int = 0) -> Source:
    cat = resolve_category(category)
    if not data_dir.is_dir():
        raise RecsysError(f"{data_dir}: data directory not found (expected P5 files or reviews_{cat}_5.json.gz)", exit_code=2)
    if (data_dir / "sequential_data.txt").is_file():
        return load_p5(data_dir, cat)
    r14 = _find(data_dir, [f"reviews_{cat}_5.json"])
    r18 = None if r14 else _find(data_dir, [f"{cat}_5.json"])
    if r14 is None and r18 is None:
        raise RecsysError(
            f"{data_dir}: unknown category {category!r} here: expected sequential_data.txt (P5), "
            f"reviews_{cat}_5.json(.gz) (Amazon 2014) or {cat}_5.json(.gz) (Amazon 2018)",
            exit_code=2,
        )
    meta = _find(data_dir, [f"meta_{cat}.json"])
    return load_raw(r14 or r18, meta, "amazon-2014" if r14 else "amazon-2018", min_user, min_item)


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
        brand = clean(obj.get("brand")) or None
        rows[asin] = (asin, clean(obj.get("title")) or None, _categories(obj), brand, _price(obj.get("price")))
    cols = list(ITEM_COLS)
    return pl.DataFrame(list(rows.values()), schema=ITEM_COLS, orient="row").select(cols)


def _items_for(item_ids: pl.Series, meta: pl.DataFrame | None, asin_of: pl.Series | None = None) -> pl.DataFrame:
    """Item frame for `item_ids` (asin_of: the asin of each id when ids are P5 numbers)."""
    base = pl.DataFrame({"item_id": item_ids, "asin": asin_of if asin_of is not None else item_ids})
    if meta is None:
        df = base.with_columns(title=pl.col("asin"))
    else:
        df = base.join(meta.rename({"item_id": "asin"}), on="asin", how="left")
    df = df.with_columns(
        title=pl.when(pl.col("title").is_null() | (pl.col("title") == "")).then(pl.col("asin")).otherwise(pl.col("title"))
    )
    return conform(df, ITEM_COLS).sort("item_id")


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
        meta_path = _find(data_dir, [f"meta_{cat}.json"])
    meta = read_meta(meta_path) if meta_path else None
    ids = inter["item_id"].unique().sort()
    asins = ids.replace_strict(id2item, return_dtype=pl.Utf8)
    items_df = _items_for(ids, meta, asins)
    inputs = [seq_path, maps_path] + ([meta_path] if meta_path else [])
    notes = ["P5-processed split: no reviews, ratings or timestamps; only sequential and direct prompts"]
    if meta is None:
        notes.append("no item metadata found: titles are Amazon asins")
    return Source("amazon-p5", items_df, inter, None, False, inputs, notes, {"dedup": "none (P5 sequences as given)"})


# --- raw reviews --------------------------------------------------------------------------
def load_raw(path: Path, meta_path: Path | None, kind: str, min_user: int, min_item: int) -> Source:
    rows = []
    for lineno, obj in json_lines(path):
        user, item = obj.get("reviewerID"), obj.get("asin")
        if not isinstance(user, str) or not isinstance(item, str) or not user or not item:
            raise InputError.at(path, lineno, "'reviewerID' and 'asin' string fields")
        ts, rating = obj.get("unixReviewTime"), obj.get("overall")
        if ts is not None and not isinstance(ts, int):
            raise InputError.at(path, lineno, f"'unixReviewTime' as integer seconds; got {ts!r}")
        if rating is not None and not isinstance(rating, (int, float)):
            raise InputError.at(path, lineno, f"'overall' as a number 1-5; got {rating!r}")
        rows.append((user, item, ts, None if rating is None else float(rating),
                     clean(obj.get("reviewText")) or None, clean(obj.get("summary")) or None, len(rows)))
    if not rows:
        raise InputError.at(path, None, "at least one review; the file is empty")
    raw = pl.DataFrame(rows, schema=INTER_COLS, orient="row")
    n_raw = raw.height
    inter = raw.sort(["user_id", "item_id", "timestamp", "order"], nulls_last=True).unique(
        ["user_id", "item_id"], keep="first", maintain_order=True
    )
    n_dedup = inter.height
    inter = kcore(inter, min_user, min_item)
    if inter.height == 0:
        raise InputError.at(path, None, f"users with >= {min_user} distinct items; none left after filtering")
    meta = read_meta(meta_path) if meta_path else None
    items_df = _items_for(inter["item_id"].unique().sort(), meta)
    notes = []
    if meta is None:
        notes.append(f"no meta_<Category>.json(.gz) beside {path.name}: item titles are Amazon asins")
    filters = {"raw_rows": n_raw, "after_dedup": n_dedup, "after_kcore": inter.height, "min_user": min_user, "min_item": min_item}
    inputs = [path] + ([meta_path] if meta_path else [])
    return Source(kind, items_df, inter.sort("order"), None, True, inputs, notes, filters)


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
