"""Reading a star rating out of model output: the one parser used by `infer` and `score`.

    python -c "from recsys_cli.data.ratings import parse_rating; print(parse_rating('about 4.5 stars'))"

The rating is the first number in the text (`4`, `4.5`, `.5`, `1e1`, `-2`), clipped to
[1, 5]; text without a number is unparsable (None). `parse_ratings` applies the same regex
to a whole polars column.

The five star answers as the model sees them: STARS, their answer-position tokens
(`star_token_ids`) and the softmax restriction training's rating loss uses (`star_restriction`);
inference/rating.py reads the same five tokens, so both import them from here.

"Like" is a rating of LIKE_AT stars or more (`likes`): the gold answer of a like/dislike prompt
(data/prompts.py) and the yes/no answer of the rating baselines (`like_answer`), defined here only.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from recsys_cli.data.templates import NO, YES

LOW, HIGH = 1.0, 5.0
NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(NUMBER)
LIKE_AT = 4.0  # a rating >= LIKE_AT means the user liked the item
STARS = (1, 2, 3, 4, 5)


def star_token_ids(tokenizer: Any) -> list[int] | None:
    """The answer-position token of each star "1".."5" as training lays it out, or None when
    some star is not one token (or two stars share one) in this tokenizer."""
    from recsys_cli.data.tokenize import tokenize_target

    ids = [tokenize_target(str(s), None, tokenizer).ids for s in STARS]
    if any(len(t) != 1 for t in ids) or len({t[0] for t in ids}) != len(STARS):
        return None
    return [t[0] for t in ids]


def star_restriction(target_ids: list[int], star_ids: list[int] | None) -> list[int] | None:
    """The tokens the answer position's softmax is restricted to in training: the five stars
    when the answer is exactly one star token, else None (the full vocabulary)."""
    if star_ids is None or len(target_ids) != 1 or target_ids[0] not in star_ids:
        return None
    return list(star_ids)


def likes(rating: float) -> bool:
    return rating >= LIKE_AT


def like_answer(rating: float) -> str:
    """The yes/no answer a like/dislike prompt expects for `rating`."""
    return YES if likes(rating) else NO


def parse_rating(text: str | None, low: float = LOW, high: float = HIGH) -> float | None:
    """The first number in `text`, clipped to [low, high]; None when there is none."""
    m = _NUMBER_RE.search(text or "")
    if m is None:
        return None
    value = float(m.group())
    if value != value:  # nan cannot come from the regex, but keep the contract explicit
        return None
    return min(high, max(low, value))


def parse_ratings(texts: pl.Series, low: float = LOW, high: float = HIGH) -> pl.Series:
    """`parse_rating` over a column: Float64, null where unparsable."""
    value = texts.cast(pl.Utf8).fill_null("").str.extract(f"({NUMBER})", 1).cast(pl.Float64, strict=False)
    value = pl.select(pl.when(value.is_finite()).then(value).otherwise(None)).to_series()
    return value.clip(low, high).alias(texts.name)
