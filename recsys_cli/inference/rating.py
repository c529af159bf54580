"""Star ratings read from the model's distribution at the answer position, not parsed from text.

    python -m pytest tests/unit/test_rating_distribution.py -q
    recsys infer --data R --checkpoint C --family rating --rating-scoring distribution   # the default

One forward pass over Part A + [START] (decode.prefill, the pass every mode starts with) gives
the next-token logits at the answer position. They are restricted to the five star tokens and
softmaxed: p_1..p_5. The prediction is the expected value sum_i p_i * i (`distribution`, the
default) or the most probable star (`argmax`); `generate` keeps the old greedy text + parser for
comparison. The star tokens are the ones training puts at the answer position:
`tokenize.tokenize_target(str(i))` (no lone leading space), each one token; training's rating
loss is the cross-entropy over the same five tokens (data/ratings.star_restriction, used by
training/data.py).
The predictions keep their contract: `output` is the rating as text ("3.87"), `scores` holds
p_1..p_5. Like / dislike prompts (yes / no) go to the `yesno` mode, which reads P(yes) and
P(no) at the same position (inference/candidates.yes_no).

Calibration (`infer --rating-calibration VALID.parquet`): a model trained for a few steps puts its
star mass where the base model does, not where the ratings are, and the expected value lands far
from every gold star. A temperature T and five biases b, fitted on VALIDATION star prompts only
(convex NLL, T >= 0, `fit_calibration`), map log p to log p' = log softmax(T log p + b) before the expected
value; the fitted numbers are recorded with the predictions' provenance.
"""

from __future__ import annotations

from typing import Any

from recsys_cli.data.ratings import STARS, star_token_ids
from recsys_cli.errors import RecsysError

SCORINGS = ("distribution", "argmax", "generate")


def require_star_ids(tokenizer: Any) -> list[int]:
    ids = star_token_ids(tokenizer)
    if ids is None:
        raise RecsysError(
            "this tokenizer does not write the ratings 1..5 as one token each; use --rating-scoring generate"
        )
    return ids


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
    """ "3.87", "4": two decimals, trailing zeros dropped."""
    return f"{round(value, 2):g}"


def rating_rows(engine, rows: list[dict]) -> list[dict]:
    """Prediction rows of rating prompts from one forward pass each (batched); never unparsable.
    With a validation calibration (`infer --rating-calibration`), `scores` keep the model's own
    p_1..p_5 and the rating is read from the calibrated distribution."""
    from recsys_cli.inference import decode

    if getattr(engine, "star_ids", None) is None:
        engine.star_ids = require_star_ids(engine.tok)
    a, ai, soft = engine.part_a(rows)
    state = decode.prefill(engine.model, a, ai, engine.special.start, None, dynamic=False, soft=soft)
    probs = star_probabilities(state.logits, engine.star_ids).cpu()  # [B, 5]
    cal = getattr(engine.opts, "rating_calibration", None)
    values = predict(probs if cal is None else apply_calibration(probs, cal), engine.opts.rating_scoring)
    return [engine._row(r, rating_text(v), None, p, True) for r, v, p in zip(rows, values, probs.tolist())]


# ---- validation calibration: T and a per-star bias on the star log-probs, fitted on valid prompts only
CALIBRATION_L2 = 1e-3  # weight of |b|^2 / 2: fixes b's free constant, keeps a star absent from validation finite
TINY = 1e-30  # floor under p before the log (a float32 softmax can underflow to 0)


def _log_probs(probs):
    import torch

    return torch.as_tensor(probs, dtype=torch.float64).clamp_min(TINY).log()  # [N, 5]


def apply_calibration(probs, cal: dict):
    """p [B, 5] -> softmax(T * log p + b) [B, 5]: the calibrated star distribution."""
    import torch

    t = torch.tensor(float(cal["temperature"]), dtype=torch.float64)
    b = torch.tensor([float(x) for x in cal["bias"]], dtype=torch.float64)
    return torch.softmax(t * _log_probs(probs) + b, dim=-1).to(torch.float32)


def _minimise(logp, y, l2: float, scale: bool):
    """argmin over (T, b) of mean NLL(softmax(T log p + b), y) + l2 |b|^2 / 2 (T held at 0 unless `scale`)."""
    import torch

    params = torch.zeros(1 + len(STARS), dtype=torch.float64)
    params[0] = 1.0 if scale else 0.0  # start at the identity: T = 1, b = 0
    params.requires_grad_(True)
    keep = torch.tensor([1.0 if scale else 0.0] + [1.0] * len(STARS), dtype=torch.float64)
    opt = torch.optim.LBFGS(
        [params], lr=1.0, max_iter=200, tolerance_grad=1e-10, tolerance_change=1e-12, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        q = params * keep
        loss = torch.nn.functional.cross_entropy(q[0] * logp + q[1:], y) + 0.5 * l2 * (q[1:] ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return (params * keep).detach()


def fit_calibration(probs, gold: list[int], l2: float = CALIBRATION_L2) -> dict:
    """Fit T >= 0 (a scale) and b (5 log-prior biases) on validation rating prompts: p' = softmax(T log p + b)
    minimising the mean NLL of the gold stars + l2 |b|^2 / 2. The objective is convex in (T, b) (a log-sum-exp
    of linear functions), so L-BFGS finds its one minimum; where that minimum has T < 0 (validation says the
    model's star preference runs against the ratings), the monotone map's minimum is at T = 0: b alone.
    At the minimum the mean of p' over the prompts matches the validation star histogram up to the l2 term
    (the bias gradient is mean p' - histogram)."""
    import torch

    logp = _log_probs(probs)  # [N, 5]
    y = torch.tensor([int(g) - 1 for g in gold], dtype=torch.long)  # [N]
    if logp.ndim != 2 or logp.shape[1] != len(STARS) or len(y) != logp.shape[0] or len(y) == 0:
        raise RecsysError(
            f"rating calibration: expected N x 5 star probabilities and N gold stars, got "
            f"{tuple(logp.shape)} and {len(y)}"
        )
    if int(y.min()) < 0 or int(y.max()) >= len(STARS):
        raise RecsysError("rating calibration: gold ratings must be the stars 1..5")
    fitted = _minimise(logp, y, l2, scale=True)
    if fitted[0] < 0:
        fitted = _minimise(logp, y, l2, scale=False)

    def nll(p):
        return float(torch.nn.functional.cross_entropy(p[0] * logp + p[1:], y))

    identity = torch.tensor([1.0] + [0.0] * len(STARS), dtype=torch.float64)
    return {
        "temperature": float(fitted[0]),
        "bias": [float(x) for x in fitted[1:]],
        "prompts": len(y),
        "nll_before": nll(identity),
        "nll_after": nll(fitted),
        "l2": l2,
    }


def calibration_from_predictions(data, path) -> dict:
    """`infer --rating-calibration`: fit on a `recsys infer --split valid` predictions file of the same data.
    Its star prompts (gold 1..5, five scores p_1..p_5) are the fit; a prompt of another split is refused, so
    nothing is ever fitted on test."""
    from pathlib import Path

    import polars as pl

    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import file_sha256, read_artifact
    from recsys_cli.artifacts.predictions import read_predictions
    from recsys_cli.errors import InputError

    path = Path(path)
    preds = read_predictions(path, data)  # checks the file and that it was made on `data`
    if "scores" not in pl.read_parquet_schema(path):
        raise InputError.at(
            path, "column scores", "expected p_1..p_5 per rating prompt (`recsys infer --split valid --family rating`)"
        )
    prompts = read_artifact(data, schemas.PROMPTS, columns=["prompt_id", "split", "family", "target"])
    df = preds.select("prompt_id", "scores").join(prompts, on="prompt_id", how="left")
    other = df.filter(pl.col("split") != "valid")
    if other.height:
        raise InputError.at(
            path,
            None,
            f"validation prompts only (calibration is never fitted on other splits); "
            f"prompt {other['prompt_id'][0]!r} is split {other['split'][0]!r}",
        )
    star = [str(s) for s in STARS]
    df = df.filter(
        (pl.col("family") == "rating") & pl.col("target").is_in(star) & (pl.col("scores").list.len() == len(STARS))
    )
    if df.height < len(STARS):
        raise InputError.at(
            path,
            None,
            f"at least {len(STARS)} star-rating prompts with five scores p_1..p_5 "
            f"(`recsys infer --split valid --family rating`), found {df.height}",
        )
    cal = fit_calibration(df["scores"].to_list(), [int(t) for t in df["target"].to_list()])
    return {**cal, "fitted_on": {"path": str(path.resolve()), "sha256": file_sha256(path)}}
