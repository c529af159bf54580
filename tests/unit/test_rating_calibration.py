"""The validation calibration of the star distribution (inference/rating.py `fit_calibration`,
`infer --rating-calibration`): it recovers a known temperature and bias, keeps the expected
star in [1, 5], refuses non-validation prompts, and a CLI run on the Musical Instruments fixture
answers every rating prompt.

    python -m pytest tests/unit/test_rating_calibration.py -q
"""

from __future__ import annotations

import json

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.inference import rating  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


def _synthetic(n: int, temperature: float, bias: list[float], seed: int = 0):
    """Model probabilities p [n, 5] and gold stars drawn from softmax(T log p + b)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(2.0 * torch.randn(n, 5, generator=g, dtype=torch.float64), -1)
    truth = torch.softmax(temperature * p.log() + torch.tensor(bias, dtype=torch.float64), -1)
    gold = (torch.multinomial(truth, 1, generator=g)[:, 0] + 1).tolist()
    return p, gold


def test_fit_recovers_a_known_temperature_and_bias():
    bias = [-1.5, -0.5, 0.0, 0.8, 2.0]
    p, gold = _synthetic(20000, 0.6, bias)
    cal = rating.fit_calibration(p, gold)
    b = torch.tensor(cal["bias"])
    want = torch.tensor(bias)
    assert cal["temperature"] == pytest.approx(0.6, abs=0.05)
    assert (b - b.mean()).tolist() == pytest.approx((want - want.mean()).tolist(), abs=0.1)  # b up to a constant
    assert cal["nll_after"] < cal["nll_before"] - 0.1 and cal["prompts"] == 20000


def test_identity_when_the_model_is_already_calibrated():
    p, gold = _synthetic(20000, 1.0, [0.0] * 5, seed=1)
    cal = rating.fit_calibration(p, gold)
    assert cal["temperature"] == pytest.approx(1.0, abs=0.05)
    assert max(abs(x) for x in cal["bias"]) < 0.1
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9


def test_biased_model_mean_matches_the_gold_mean_after_calibration():
    """A model that piles its mass on 1 star (the failure this guards against) while gold is mostly 4-5."""
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(3000, 5, generator=g, dtype=torch.float64) + torch.tensor([4.0, 1, 0, 0, 0]), -1)
    gold = torch.multinomial(torch.tensor([0.03, 0.04, 0.1, 0.25, 0.58]), 3000, replacement=True, generator=g) + 1
    before = rating.predict(p.float(), "distribution")
    cal = rating.fit_calibration(p, gold.tolist())
    q = rating.apply_calibration(p, cal)
    after = rating.predict(q, "distribution")
    gold_mean = float(gold.double().mean())
    assert sum(before) / len(before) < 2.0  # the raw expectation collapses towards 1
    assert sum(after) / len(after) == pytest.approx(gold_mean, abs=0.02)
    hist = torch.bincount(gold - 1, minlength=5).double().div(3000)
    assert q.mean(0).tolist() == pytest.approx(hist.tolist(), abs=0.01)
    assert all(1.0 <= v <= 5.0 for v in after) and all(1.0 <= v <= 5.0 for v in before)
    assert torch.allclose(q.sum(-1), torch.ones(3000), atol=1e-5)


def test_extreme_inputs_stay_in_range_and_a_missing_star_stays_finite():
    p = torch.tensor([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0], [0.2] * 5])  # softmax underflow: exact zeros
    cal = rating.fit_calibration(p.repeat(20, 1), [4, 5, 4] * 20)  # stars 1..3 never gold
    assert all(abs(x) < 1e4 for x in [cal["temperature"], *cal["bias"]])
    values = rating.predict(rating.apply_calibration(p, cal), "distribution")
    assert all(1.0 <= v <= 5.0 for v in values) and values[2] > 3.5
    with pytest.raises(Exception, match="1..5"):
        rating.fit_calibration(p, [0, 5, 4])


def test_a_preference_against_the_ratings_gets_no_negative_scale():
    """Validation where the model's favourite star is the wrong one: the monotone fit keeps T = 0 (the prior)."""
    p, gold = _synthetic(5000, -0.8, [0.0, 0.0, 0.0, 0.5, 1.5], seed=3)
    cal = rating.fit_calibration(p, gold)
    assert cal["temperature"] == 0.0
    q = rating.apply_calibration(p, cal)
    assert torch.allclose(q, q[:1].expand_as(q), atol=1e-6)  # one distribution for every prompt: the histogram
    hist = torch.bincount(torch.tensor(gold) - 1, minlength=5).double() / len(gold)
    assert q[0].tolist() == pytest.approx(hist.tolist(), abs=0.01)


def _infer(*args):
    return run_cli("infer", *args, "--quiet", "--json")


def test_cli_calibrated_rating_answers_every_prompt_and_refuses_test_fits(musical_data, tiny_model, tmp_path):
    common = ["--data", str(musical_data), "--checkpoint", "none", "--model", tiny_model, "--family", "rating"]
    valid, test, cal_test = tmp_path / "valid.parquet", tmp_path / "test.parquet", tmp_path / "cal.parquet"
    code, _, err = _infer(*common, "--split", "valid", "--out", str(valid))
    assert code == 0, err
    code, _, err = _infer(*common, "--split", "test", "--out", str(test))
    assert code == 0, err
    code, out, err = _infer(*common, "--split", "test", "--rating-calibration", str(valid), "--out", str(cal_test))
    assert code == 0, err
    raw, cal = pl.read_parquet(test), pl.read_parquet(cal_test)
    prompts = pl.read_parquet(musical_data / "prompts.parquet")
    prompts = prompts.filter(pl.col("prompt_id").is_in(cal["prompt_id"].implode()))
    stars = prompts.filter(~pl.col("target").is_in(["yes", "no"]))
    assert stars.height >= 50 and cal.height == raw.height
    got = cal.filter(pl.col("prompt_id").is_in(stars["prompt_id"].implode()))
    assert got["valid"].all()  # 0 unparsable answers
    values = got["output"].cast(pl.Float64)
    assert values.is_not_null().all() and values.min() >= 1.0 and values.max() <= 5.0
    # the scores stay the model's own p_1..p_5; only the rating moves to the validation fit
    raw_scores = raw.filter(pl.col("prompt_id").is_in(stars["prompt_id"].implode()))["scores"].explode().to_list()
    assert got["scores"].explode().to_list() == pytest.approx(raw_scores)
    gold_valid = pl.read_parquet(musical_data / "prompts.parquet").filter(
        (pl.col("split") == "valid")
        & (pl.col("family") == "rating")
        & pl.col("target").is_in(["1", "2", "3", "4", "5"])
    )
    mean_valid = gold_valid["target"].cast(pl.Float64).mean()
    raw_mean = raw.filter(pl.col("prompt_id").is_in(stars["prompt_id"].implode()))["output"].cast(pl.Float64).mean()
    assert abs(values.mean() - mean_valid) < abs(raw_mean - mean_valid)  # the fit moves the mean towards validation's
    report = json.loads(out)
    assert report["modes"]["rating"]["valid"] == report["modes"]["rating"]["prompts"]
    code, _, err = _infer(
        *common, "--split", "test", "--rating-calibration", str(test), "--out", str(tmp_path / "x.parquet")
    )
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code != 0 and len(errors) == 1 and "validation prompts only" in errors[0] and "Traceback" not in err
