"""Output post-processing: rating parsing and title normalisation (free text is grounded to
items with `recsys_cli.data.entities.Grounder`, the MinHash signatures of build-entities).

    python -c "from recsys_cli.inference.ground import parse_rating; print(parse_rating('about 4.5 stars'))"
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def parse_rating(text: str, low: float = 1.0, high: float = 5.0) -> float | None:
    """The first number in `text`, clipped to [low, high]; None when there is none."""
    m = _NUMBER.search(text or "")
    if m is None:
        return None
    return min(high, max(low, float(m.group())))


def normalize_title(text: str) -> str:
    return " ".join((text or "").lower().split())
