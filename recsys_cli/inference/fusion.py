"""Fusing the retriever's and the LLM's scores over the K reranked candidates (docs/rerank.md).

    python -c "from recsys_cli.inference.fusion import fuse; print(fuse([-1.0, -2.0], [3.0, 1.0], 0.5))"

Both score lists are normalised the same way, by a log-softmax over the K candidates of the
prompt, so each becomes log P(item | the K candidates) under that model:

    llm_n = log_softmax(llm scores over the K)          (the constrained walker's log-probs)
    ret_n = log_softmax(retriever scores over the K)    (SASRec logits, itemknn / popularity scores)
    fused = W * llm_n + (1 - W) * ret_n

W = 1 is the LLM alone, W = 0 the retriever alone (its order). The K items are sorted by
`fused` (ties: the retriever's order); the rest of the retriever's list follows in its order
and has no score (null). A W = 1 run stores llm_n; with the retriever file, `recsys tune`
(evaluation/tune.py) recomputes the list of every W from it without the LLM.
"""

from __future__ import annotations

import math
from typing import Sequence


def log_softmax(xs: Sequence[float]) -> list[float]:
    """log_softmax of a list; -inf entries stay -inf, an all -inf list becomes uniform."""
    if not xs:
        return []
    top = max(xs)
    if top == float("-inf"):
        return [-math.log(len(xs))] * len(xs)
    z = top + math.log(sum(math.exp(x - top) for x in xs))
    return [x - z for x in xs]


def fuse(llm: Sequence[float] | None, ret: Sequence[float], w: float) -> list[float]:
    """W * log_softmax(llm) + (1 - W) * log_softmax(ret); `llm` may be None when W == 0."""
    rn = log_softmax(ret)
    if w == 0.0 or llm is None:
        return rn
    ln = log_softmax(llm)
    if w == 1.0:
        return ln
    return [w * a + (1.0 - w) * b for a, b in zip(ln, rn)]


def rerank(
    items: Sequence[str], ret: Sequence[float], llm: Sequence[float] | None, rest: Sequence[str], w: float
) -> tuple[list[str], list[float | None]]:
    """The final list: `items` (the K candidates, in retriever order) sorted by the fused score,
    then `rest` in the retriever's order. Scores: fused for the K, None for the rest."""
    fused = fuse(llm, ret, w)
    order = sorted(range(len(items)), key=lambda i: (-fused[i], i))
    ranked = [items[i] for i in order] + list(rest)
    scores: list[float | None] = [fused[i] for i in order] + [None] * len(rest)
    return ranked, scores
