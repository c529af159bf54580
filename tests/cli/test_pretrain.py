"""`recsys pretrain` as a user types it (tiny model, Toys fixture).

python -m pytest tests/cli/test_pretrain.py
"""

from __future__ import annotations

import json

from tests.conftest import ROOT, run_cli

TINY = str(ROOT / "recipes/pretrain/tiny-cpu.yaml")


def test_pretrain_writes_a_loadable_checkpoint(toys_data, tmp_path):
    out = tmp_path / "C"
    code, stdout, err = run_cli(
        "pretrain",
        "--data",
        str(toys_data),
        "--config",
        TINY,
        "--out",
        str(out),
        "--max-steps",
        "3",
        "--max-length",
        "64",
        "--eval-every",
        "3",
        "--positions",
        "linear",
        "--quiet",
        "--json",
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 3 and summary["val_loss"] is not None
    for name in (
        "adapter/adapter_config.json",
        "tokenizer/tokenizer.json",
        "extras.safetensors",
        "recsys_checkpoint.json",
        "metrics.jsonl",
        "train_state/state.json",
        "manifest.json",
    ):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and {"loss", "lr", "tokens_per_s", "elapsed"} <= set(rows[0])
    cfg = json.loads((out / "recsys_checkpoint.json").read_text())
    assert (
        cfg["positions"] == "linear"
        and cfg["step"] == 3
        and set(cfg["special_tokens"]) == {"[M]", "[sM]", "[gM]", "[START]", "[END]"}
    )
    assert cfg["lora"]["modules_to_save"] == ["embed_tokens"]  # the random model's embedding, in full
    adapter = json.loads((out / "adapter/adapter_config.json").read_text())
    assert adapter["r"] == 8 and "embed_tokens" in adapter["modules_to_save"] and adapter["ensure_weight_tying"]


def test_pretrain_errors_are_one_line(toys_data, tmp_path):
    code, _, err = run_cli(
        "pretrain", "--data", str(tmp_path / "nope"), "--config", TINY, "--out", str(tmp_path / "C"), "--quiet"
    )
    assert (
        code != 0
        and err.startswith("Error: ")
        and "nope" in err
        and "manifest.json" in err
        and len(err.strip().splitlines()) == 1
    )
    code, _, err = run_cli(
        "pretrain", "--data", str(toys_data), "--config", TINY, "--out", str(tmp_path / "C2"), "--resume", "--quiet"
    )
    assert code != 0 and "nothing to resume" in err
    bad = tmp_path / "r.yaml"
    bad.write_text("model:\n  name: fixtures/tiny-model\nlora:\n  rnak: 4\n")
    code, _, err = run_cli(
        "pretrain", "--data", str(toys_data), "--config", str(bad), "--out", str(tmp_path / "C3"), "--quiet"
    )
    assert code != 0 and "r.yaml, line 4" in err and "rnak" in err
    code, _, err = run_cli(
        "pretrain",
        "--data",
        str(toys_data),
        "--config",
        TINY,
        "--out",
        str(tmp_path / "C4"),
        "--modules-to-save",
        "embed_tokenz",
        "--quiet",
    )
    assert code != 0 and err.startswith("Error: ") and "embed_tokenz" in err and len(err.strip().splitlines()) == 1


def _pretrain(data, out, *extra):
    """A 2-step LoRA-only tiny run (the tiny recipe's full embedding makes 25 MB adapters)."""
    return run_cli(
        "pretrain",
        "--data",
        str(data),
        "--config",
        TINY,
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--max-length",
        "48",
        "--eval-every",
        "100",
        "--save-every",
        "100",
        "--modules-to-save",
        "none",
        "--quiet",
        *extra,
    )


def test_pretrain_never_replaces_a_checkpoint_without_resume_or_overwrite(toys_data, tmp_path):
    out = tmp_path / "C"
    assert _pretrain(toys_data, out)[0] == 0
    trained = {
        p: p.read_bytes() for p in (out / "recsys_checkpoint.json", out / "adapter" / "adapter_model.safetensors")
    }
    code, _, err = _pretrain(toys_data, out, "--seed", "1")
    assert (
        code == 2
        and "already holds a trained checkpoint (step 2)" in err
        and "--resume" in err
        and "--overwrite" in err
    )
    assert all(p.read_bytes() == b for p, b in trained.items())  # untouched
    (out / "predictions").mkdir()
    (out / "predictions" / "test.parquet").write_bytes(b"an infer output of the old model")
    code, _, err = _pretrain(toys_data, out, "--seed", "1", "--overwrite")
    assert code == 0, err
    assert (
        out / "stale" / "overwritten-step-2" / "predictions" / "test.parquet"
    ).read_bytes() == b"an infer output of the old model"
    assert json.loads((out / "recsys_checkpoint.json").read_text())["recipe"]["train"]["seed"] == 1
    (out / "notes.txt").write_text("mine")
    code, _, err = _pretrain(toys_data, out, "--overwrite")
    assert code == 2 and "notes.txt" in err and (out / "notes.txt").read_text() == "mine"


def test_resume_refuses_other_data_lr_or_steps_unless_allowed(toys_data, musical_data, tmp_path):
    out = tmp_path / "C"
    assert _pretrain(toys_data, out)[0] == 0
    code, _, err = _pretrain(musical_data, out, "--resume")
    assert code == 2 and "changed: data (manifest sha256" in err and len(err.strip().splitlines()) == 1
    code, _, err = _pretrain(toys_data, out, "--resume", "--lr", "0.001")
    assert code == 2 and "train.lr (0.005 -> 0.001)" in err
    code, _, err = _pretrain(toys_data, out, "--resume", "--max-steps", "3")
    assert code == 2 and "train.max_steps (2 -> 3)" in err and "--allow-changed" in err
    code, stdout, err = _pretrain(
        toys_data, out, "--resume", "--max-steps", "3", "--allow-changed", "train.max_steps", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["steps"] == 3
    assert [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_checkpoint_of_a_relative_model_path_loads_from_another_directory(toys_data, tmp_path, monkeypatch):
    from pathlib import Path

    from recsys_cli.modeling.checkpoint import load_checkpoint

    monkeypatch.chdir(ROOT)
    out = tmp_path / "C"
    assert _pretrain(toys_data, out, "--model", "fixtures/tiny-model")[0] == 0  # relative to the repository
    stored = json.loads((out / "recsys_checkpoint.json").read_text())["base_model"]
    assert Path(stored).is_absolute() and Path(stored) == ROOT / "fixtures" / "tiny-model"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert not Path("fixtures/tiny-model").exists()
    lm, tok, cfg = load_checkpoint(out)
    assert cfg.step == 2 and len(tok) == cfg.vocab_size
