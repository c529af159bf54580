"""Text normalisation for titles, categories, brands and reviews.

    >>> from recsys_cli.data.text import clean
    >>> clean("  Cats &amp;amp; Dogs\\n  Game ")
    'Cats & Dogs Game'

HTML entities are unescaped until stable (Amazon titles are sometimes escaped twice),
tags are dropped and any run of whitespace becomes one space.
"""

from __future__ import annotations

import html
import re

_WS = re.compile(r"\s+")
_TAG = re.compile(r"<[^>]{1,200}>")
_SENT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z]+")


def clean(value: object) -> str:
    """HTML-unescape (repeatedly), drop tags, collapse whitespace. None -> ''."""
    if value is None:
        return ""
    s = str(value)
    for _ in range(3):
        u = html.unescape(s)
        if u == s:
            break
        s = u
    if "<" in s:
        s = _TAG.sub(" ", s)
    return _WS.sub(" ", s).strip()


def norm_key(value: str) -> str:
    """Lower-cased, whitespace-normalised form used inside entity ids (`category:board games`)."""
    return _WS.sub(" ", value.lower()).strip()


def sentences(text: str) -> list[str]:
    """Split a review into sentences at `.`, `!` or `?` followed by whitespace."""
    return [s.strip() for s in _SENT.split(text) if s.strip()]


def words(text: str) -> list[str]:
    """Lower-case alphabetic words."""
    return _WORD.findall(text.lower())


def short(text: str, max_words: int) -> str:
    """The first `max_words` words of `text` (with an ellipsis when cut)."""
    parts = text.split(" ")
    if len(parts) <= max_words:
        return text
    return " ".join(parts[:max_words]) + " ..."


def normalize_title(text: str) -> str:
    """Lower-cased, whitespace-normalised title (exact-match check of generated titles)."""
    return " ".join((text or "").lower().split())
