"""Star ratings read from the model's distribution at the answer position, not parsed from text.

    python -m pytest tests/unit/test_rating_distribution.py -q
    recsys infer --data R --checkpoint C --family rating --rating-scoring distribution   # the default

One forward pass over Part A + [START] (decode.prefill, the pass every mode starts with) gives
the next-token logits at the answer position. They are restricted to the five star tokens and
softmaxed: p_1..p_5. The prediction is the expected value sum_i p_i * i (`distribution`, the
default) or the most probable star (`argmax`); `generate` keeps the old greedy text + parser for
comparison. The star tokens are the ones training puts at the answer position:
`tokenize.tokenize_target(str(i))` (no lone leading space), each one token; training's rating
loss is the cross-entropy over the same five tokens (`star_restriction`, training/data.py).
The predictions keep their contract: `output` is the rating as text ("3.87"), `scores` holds
p_1..p_5. Like / dislike prompts (yes / no) go to the `yesno` mode, which reads P(yes) and
P(no) at the same position (inference/candidates.yes_no).
"""

from __future__ import annotations

from typing import Any

from recsys_cli.errors import RecsysError

STARS = (1, 2, 3, 4, 5)
SCORINGS = ("distribution", "argmax", "generate")


def star_token_ids(tokenizer: Any) -> list[int] | None:
    """The answer-position token of each star "1".."5" as training lays it out, or None when
    some star is not one token (or two stars share one) in this tokenizer."""
    from recsys_cli.data.tokenize import tokenize_target

    ids = [tokenize_target(str(s), None, tokenizer).ids for s in STARS]
    if any(len(t) != 1 for t in ids) or len({t[0] for t in ids}) != len(STARS):
        return None
    return [t[0] for t in ids]


def require_star_ids(tokenizer: Any) -> list[int]:
    ids = star_token_ids(tokenizer)
    if ids is None:
        raise RecsysError("this tokenizer does not write the ratings 1..5 as one token each; "
                          "use --rating-scoring generate")
    return ids


def star_restriction(target_ids: list[int], star_ids: list[int] | None) -> list[int] | None:
    """The tokens the answer position's softmax is restricted to in training: the five stars
    when the answer is exactly one star token, else None (the full vocabulary)."""
    if star_ids is None or len(target_ids) != 1 or target_ids[0] not in star_ids:
        return None
    return list(star_ids)


def star_probabilities(logits, star_ids: list[int]):
    """Softmax over the five star tokens of next-token logits [B, V]  -> [B, 5] float."""
    import torch

    return torch.softmax(logits.float()[:, star_ids], dim=-1)


def predict(probs, scoring: str) -> list[float]:
    """Ratings from p [B, 5]: the expected value (`distribution`) or the most probable star (`argmax`)."""
    import torch

    if scoring == "argmax":
        return [float(STARS[i]) for i in probs.argmax(-1).tolist()]
    if scoring != "distribution":
        raise RecsysError(f"rating scoring: expected distribution or argmax, got {scoring!r}")
    stars = torch.tensor(STARS, dtype=probs.dtype, device=probs.device)
    return (probs * stars).sum(-1).tolist()


def rating_text(value: float) -> str:
    """"3.87", "4": two decimals, trailing zeros dropped."""
    return f"{round(value, 2):g}"


def rating_rows(engine, rows: list[dict]) -> list[dict]:
    """Prediction rows of rating prompts from one forward pass each (batched); never unparsable."""
    from recsys_cli.inference import decode

    if getattr(engine, "star_ids", None) is None:
        engine.star_ids = require_star_ids(engine.tok)
    a, ai, soft = engine.part_a(rows)
    state = decode.prefill(engine.model, a, ai, engine.special.start, None, dynamic=False, soft=soft)
    probs = star_probabilities(state.logits, engine.star_ids).cpu()  # [B, 5]
    values = predict(probs, engine.opts.rating_scoring)
    return [engine._row(r, rating_text(v), None, p, True) for r, v, p in zip(rows, values, probs.tolist())]
