"""The paired bootstrap (recsys_cli/evaluation/bootstrap.py) and the per-prompt metrics it rests on.

python -m pytest tests/unit/test_bootstrap.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from recsys_cli.evaluation import bootstrap, metrics


def test_per_prompt_values_are_the_averaged_metrics():
    rank = np.array([0, 1, 4, 9, 10, 50])
    assert metrics.per_prompt(rank, "HR@5").tolist() == [1, 1, 1, 0, 0, 0]
    ndcg = metrics.per_prompt(rank, "NDCG@10")
    assert ndcg[:4] == pytest.approx([1.0, 1 / np.log2(3), 1 / np.log2(6), 1 / np.log2(11)])
    assert ndcg[4:].tolist() == [0, 0]
    assert metrics.ranking_from_ranks(rank)["NDCG@10"] == pytest.approx(ndcg.mean())
    with pytest.raises(ValueError, match="HR@k or NDCG@k"):
        metrics.per_prompt(rank, "MRR@10")


def test_identical_methods_give_a_zero_interval():
    rank = np.random.default_rng(3).integers(0, 30, size=500)
    for metric in ("HR@10", "NDCG@10", "HR@1"):
        out = bootstrap.paired_bootstrap(rank, rank.copy(), metric, seed=0)
        assert out["diff"] == 0.0 and out["ci95"] == [0.0, 0.0] and not out["excludes_0"]
        assert out["n"] == 500 and out["resamples"] == bootstrap.RESAMPLES


def test_a_clear_gain_excludes_zero_and_a_noisy_one_does_not():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 30, size=400)
    better = np.where(rng.random(400) < 0.5, 0, base)  # half the prompts move to rank 0
    gain = bootstrap.paired_bootstrap(better, base, "NDCG@10", seed=0)
    lo, hi = gain["ci95"]
    assert 0 < lo <= gain["diff"] <= hi and gain["excludes_0"]
    loss = bootstrap.paired_bootstrap(base, better, "NDCG@10", seed=0)  # the same pairs, swapped
    assert loss["diff"] == pytest.approx(-gain["diff"]) and loss["ci95"][1] < 0 and loss["excludes_0"]
    # one prompt of 400 differs: a real but tiny change whose interval must include 0
    noisy = base.copy()
    noisy[0] = 0 if base[0] else 5
    tiny = bootstrap.paired_bootstrap(noisy, base, "HR@10", seed=0)
    assert tiny["ci95"][0] <= 0 <= tiny["ci95"][1] and not tiny["excludes_0"]


def test_seeded_and_blocked_draws_agree_with_one_big_draw(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.random(300), rng.random(300)
    first = bootstrap.paired_interval(a, b, resamples=500, seed=7)
    assert bootstrap.paired_interval(a, b, resamples=500, seed=7) == first  # same seed, same interval
    assert bootstrap.paired_interval(a, b, resamples=500, seed=8)["ci95"] != first["ci95"]
    d = a - b  # the documented recipe, in one draw
    means = d[np.random.default_rng(7).integers(0, 300, size=(500, 300))].mean(axis=1)
    assert first["ci95"] == pytest.approx(np.percentile(means, [2.5, 97.5]).tolist())
    monkeypatch.setattr(bootstrap, "BLOCK_CELLS", 300 * 64)  # 64 resamples per block: bounded memory
    blocked = bootstrap.paired_interval(a, b, resamples=500, seed=7)
    assert blocked["diff"] == first["diff"] and blocked["ci95"] == pytest.approx(first["ci95"], abs=0.01)


def test_bad_inputs_and_the_printed_form():
    with pytest.raises(ValueError, match="one length"):
        bootstrap.paired_interval(np.zeros(3), np.zeros(4))
    empty = bootstrap.paired_interval(np.zeros(0), np.zeros(0))
    assert empty["n"] == 0 and not empty["excludes_0"]
    text = bootstrap.format_interval({"diff": 0.004, "ci95": [-0.0006, 0.009], "excludes_0": False})
    assert text == "+0.0040 [-0.0006, +0.0090]"
    assert bootstrap.format_interval({"diff": 0.01, "ci95": [0.002, 0.02], "excludes_0": True}).endswith(" *")


def test_hr_ndcg_and_the_bootstrap_have_one_home():
    """The NDCG discount and the bootstrap resampling are written once (evaluation/), in the package and in bench/."""
    from tests.unit.test_one_rule import code_lines, py_files, rel

    homes = {"log2(": {"recsys_cli/evaluation/metrics.py"}, "percentile(": {"recsys_cli/evaluation/bootstrap.py"}}
    for needle, home in homes.items():
        found = {rel(p) for p in py_files("recsys_cli", "bench") if any(needle in ln for ln in code_lines(p).values())}
        assert found == home, (needle, found)
