"""The step-time breakdown (training/profile.py) of the real training loop, on the tiny model.

python -m pytest tests/unit/test_profile.py -q
"""

from __future__ import annotations

import pytest

from recsys_cli.training.profile import DEVICE_WORK, PHASES, peak_bf16_tflops


def test_peak_table_matches_device_names():
    assert peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_bf16_tflops("NVIDIA H200") == 989.0
    assert peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_bf16_tflops("NVIDIA A10") == 125.0
    assert peak_bf16_tflops("NVIDIA A10G") == 70.0
    assert peak_bf16_tflops("NVIDIA L4") == 121.0
    assert peak_bf16_tflops("NVIDIA L40S") == 362.0
    assert peak_bf16_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert peak_bf16_tflops("NVIDIA L40") is None and peak_bf16_tflops(None) is None


def test_breakdown_of_two_steps_sums_to_the_step_time(toys_data, tiny_model, tmp_path):
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.profile import NO_TIMER, profile_trainer, table
    from recsys_cli.training.recipe import load_recipe

    r = load_recipe(
        None,
        [
            ("model.name", tiny_model),
            ("train.max_steps", 10),
            ("train.batch_size", 4),
            ("train.max_length", 64),
            ("train.precision", "fp32"),
            ("eval.eval_every", 100),
            ("train.save_every", 100),
            ("train.packing", True),
        ],
    )
    tr = Trainer(r, toys_data, tmp_path / "C")
    res = profile_trainer(tr, steps=2, warmup=1, plain=1)
    assert tr.timer is NO_TIMER  # the run's timer is taken off again
    assert (res["steps_detailed"], res["steps_plain"]) == (2, 1)
    for row in res["rows"][:2]:
        parts = sum(row[p] for p in PHASES)
        assert all(row[p] >= 0 for p in PHASES) and row["forward"] > 0 and row["backward"] > 0 and row["examples"] > 0
        assert parts <= row["step_s"] + 1e-6  # phases never overlap
        assert row["other"] == pytest.approx(row["step_s"] - parts)
        assert row["other"] <= 0.1 * row["step_s"] + 0.005, row  # the phases account for the step
        assert 0 < row["tokens"] <= row["padded_tokens"]
    assert set(res["phases_s"]) == {*PHASES, "other"}
    assert sum(res["phases_share"][p] for p in DEVICE_WORK) + res["host_share"] == pytest.approx(1.0, abs=0.02)
    n_params = sum(p.numel() for p in tr.lm.parameters())
    assert res["params"] == n_params
    assert res["model_tflops_per_s"] == pytest.approx(
        6 * n_params * res["tokens_per_step"] / res["step_s"] / 1e12, abs=6e-5
    )  # rounded to 4 places
    assert res["mfu"] is None and res["device"] == "cpu"  # no bf16 peak for a CPU
    assert "forward" in table(res)
