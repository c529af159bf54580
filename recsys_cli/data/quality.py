"""Data-quality checks run by `recsys textualize` after the artifacts are built and before
anything is written: each is a share with a documented threshold. Above it the summary
prints a warning (and manifest.json stores every check); with `--strict` it is an error.

    recsys textualize amazon --category Magazine_Subscriptions \
        --data-dir fixtures/amazon/magazine_meta2018 --out /tmp/mag --strict

| check | counts | threshold |
|---|---|---|
| no_metadata | items without a metadata row (their title is the asin or "item <id>") | 10% |
| empty_title | items whose metadata has an empty title (also a stand-in title) | 1% |
| shared_title | items whose title is also the title of 4 or more other items | 5% |
| markup_title | items whose title looks like HTML/CSS (`<span class=`, `/>`, `{color:`) | 1% |
| asin_title | items whose metadata title looks like an ASIN or ISBN-10 (`B000IMVNQU`) | 1% |
| duplicate_documents | sampled corpus documents dropped as copies of an earlier one of the same user | 85% |

Shares of items are over all items of the output. Titles are compared lower-cased with
whitespace collapsed. A pair of items sharing a title (MovieLens lists some films twice)
is not "many"; five or more is. Duplicate documents are normal for short histories (with
three training items the long, medium and short windows hold the same items), so only a
corpus that is mostly copies is flagged: 70-80% is usual on Amazon 5-core data (3 to 7 training
items a user), and with 10 documents a user the most there can be is 90% (every window of
every user the same).
"""

from __future__ import annotations

import re

import polars as pl

from recsys_cli.errors import RecsysError

SHARED_MIN = 5  # a title shared by this many items or more is "shared with many"
THRESHOLDS = {
    "no_metadata": 0.10,
    "empty_title": 0.01,
    "shared_title": 0.05,
    "markup_title": 0.01,
    "asin_title": 0.01,
    "duplicate_documents": 0.85,
}
WHAT = {
    "no_metadata": "have no metadata (the title is a stand-in)",
    "empty_title": "have an empty title in their metadata",
    "shared_title": f"share their title with {SHARED_MIN - 1} or more other items",
    "markup_title": "have a title that looks like HTML/CSS markup",
    "asin_title": "have a title that looks like an ASIN/ISBN",
    "duplicate_documents": (
        "of the sampled corpus documents were copies of an earlier document of the same user (not written)"
    ),
}
MARKUP = re.compile(r"<\s*/?\s*[A-Za-z][A-Za-z0-9-]*(?:[\s>/=]|$)|/>|\b[a-z][a-z-]*\s*=\s*[\"']|\{[^}]*:[^}]*(?:\}|$)")
ASIN = re.compile(r"^(?:B0[0-9A-Z]{8}|\d{9}[\dX])$")


def _check(name: str, count: int, total: int, example: str | None = None) -> dict:
    share = count / total if total else 0.0
    return {
        "check": name,
        "count": count,
        "total": total,
        "share": round(share, 4),
        "threshold": THRESHOLDS[name],
        "over": share > THRESHOLDS[name],
        "example": example,
    }


def item_checks(items: pl.DataFrame, fallback: dict[str, str]) -> list[dict]:
    """The five title checks on the output item frame (item_id, title)."""
    ids, titles = items["item_id"].to_list(), items["title"].to_list()
    n = len(ids)
    why = [fallback.get(i) for i in ids]
    no_meta = sum(w == "no metadata" for w in why)
    empty = sum(w == "empty title" for w in why)
    real = [(i, t) for i, t, w in zip(ids, titles, why) if w is None]
    markup = [t for _, t in real if MARKUP.search(t)]
    asin = [t for _, t in real if ASIN.match(t.strip())]
    keys = pl.Series([" ".join(t.lower().split()) for _, t in real], dtype=pl.Utf8)
    groups = keys.value_counts(sort=True) if len(keys) else pl.DataFrame({"": [], "count": []})
    big = groups.filter(pl.col("count") >= SHARED_MIN)
    shared = int(big["count"].sum()) if big.height else 0
    top = next((t for _, t in real if big.height and " ".join(t.lower().split()) == big.row(0)[0]), None)
    no_meta_ex = next((i for i, w in zip(ids, why) if w == "no metadata"), None)
    empty_ex = next((i for i, w in zip(ids, why) if w == "empty title"), None)
    return [
        _check("no_metadata", no_meta, n, no_meta_ex),
        _check("empty_title", empty, n, empty_ex),
        _check("shared_title", shared, n, top),
        _check("markup_title", len(markup), n, markup[0] if markup else None),
        _check("asin_title", len(asin), n, asin[0] if asin else None),
    ]


def document_check(sampled: int, dropped: int) -> dict:
    return _check("duplicate_documents", dropped, sampled)


def warnings(checks: list[dict]) -> list[str]:
    out = []
    for c in checks:
        if not c["over"]:
            continue
        unit = "documents" if c["check"] == "duplicate_documents" else "items"
        # square brackets would be read as console markup: shown as parentheses
        ex = f", e.g. {c['example'][:60].replace('[', '(').replace(']', ')')!r}" if c["example"] else ""
        out.append(
            f"data quality warning ({c['check']}): {c['count']:,} of {c['total']:,} {unit} ({c['share']:.1%}) "
            f"{WHAT[c['check']]}{ex}; threshold {c['threshold']:.0%}"
        )
    return out


def enforce(checks: list[dict]) -> None:
    """--strict: one line naming every check above its threshold."""
    over = [c for c in checks if c["over"]]
    if over:
        parts = "; ".join(f"{c['check']} {c['share']:.1%} > {c['threshold']:.0%}" for c in over)
        raise RecsysError(
            f"--strict: data quality checks failed ({parts}); see docs/data.md, nothing was written", exit_code=2
        )
