"""Deterministic explanation extraction from review text (for the explanation family).

Method: the feature vocabulary is the 300 words (lower-case, alphabetic, >= 3 letters, not a
stop word) found in the most reviews, ties broken alphabetically. For each review, the first
sentence of 4-30 words that contains a vocabulary word is the explanation; its feature is the
vocabulary word in it found in the most reviews (ties: alphabetical). Reviews with no such
sentence get no explanation.

    python -c "from recsys_cli.data.explain import extract; \
        print(extract(['Great sound. The strings feel cheap but fine.'] * 3))"
"""

from __future__ import annotations

from collections import Counter

from recsys_cli.data.text import sentences, words

VOCAB_SIZE = 300
MIN_WORDS, MAX_WORDS = 4, 30
STOP = frozenset(
    """the and for that this with was are but not have you they she him her his its it's our your their them
    had has were been be is am i me my we us all any can could would should will just very too also so than then
    there here what when where which who why how one two out about into over more most much many some such only
    own same other again once off from did does doing done get got after before because while both each few nor
    now don didn isn wasn aren ever really well even still like use used using make made thing things bit lot
    these those item product buy bought amazon order ordered good great nice love loved""".split()
)


def vocabulary(reviews: list[str | None], size: int = VOCAB_SIZE) -> dict[str, int]:
    """word -> rank (0 = found in the most reviews)."""
    df: Counter = Counter()
    for r in reviews:
        if r:
            df.update({w for w in words(r) if len(w) >= 3 and w not in STOP})
    ranked = sorted(df.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return {w: k for k, (w, _) in enumerate(ranked)}


def explain_one(review: str | None, vocab: dict[str, int]) -> tuple[str | None, str | None]:
    if not review:
        return None, None
    for sent in sentences(review):
        n = len(sent.split())
        if n < MIN_WORDS or n > MAX_WORDS:
            continue
        feats = [w for w in words(sent) if w in vocab]
        if feats:
            return sent, min(feats, key=lambda w: vocab[w])
    return None, None


def extract(reviews: list[str | None]) -> tuple[list[str | None], list[str | None]]:
    vocab = vocabulary(reviews)
    pairs = [explain_one(r, vocab) for r in reviews]
    return [p[0] for p in pairs], [p[1] for p in pairs]
