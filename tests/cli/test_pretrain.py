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
        "pretrain", "--data", str(toys_data), "--config", TINY, "--out", str(out), "--max-steps", "3",
        "--max-length", "64", "--eval-every", "3", "--positions", "linear", "--quiet", "--json",
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 3 and summary["val_loss"] is not None
    for name in ("adapter/adapter_config.json", "tokenizer/tokenizer.json", "extras.safetensors", "recsys_checkpoint.json", "metrics.jsonl", "train_state/state.json", "manifest.json"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and {"loss", "lr", "tokens_per_s", "elapsed"} <= set(rows[0])
    cfg = json.loads((out / "recsys_checkpoint.json").read_text())
    assert cfg["positions"] == "linear" and cfg["step"] == 3 and set(cfg["special_tokens"]) == {"[M]", "[sM]", "[gM]", "[START]", "[END]"}
    assert cfg["lora"]["modules_to_save"] == ["embed_tokens"]  # the random model's embedding, in full
    adapter = json.loads((out / "adapter/adapter_config.json").read_text())
    assert adapter["r"] == 8 and "embed_tokens" in adapter["modules_to_save"] and adapter["ensure_weight_tying"]


def test_pretrain_errors_are_one_line(toys_data, tmp_path):
    code, _, err = run_cli("pretrain", "--data", str(tmp_path / "nope"), "--config", TINY, "--out", str(tmp_path / "C"), "--quiet")
    assert code != 0 and err.startswith("Error: ") and "corpus.parquet" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("pretrain", "--data", str(toys_data), "--config", TINY, "--out", str(tmp_path / "C2"), "--resume", "--quiet")
    assert code != 0 and "nothing to resume" in err
    bad = tmp_path / "r.yaml"
    bad.write_text("model:\n  name: fixtures/tiny-model\nlora:\n  rnak: 4\n")
    code, _, err = run_cli("pretrain", "--data", str(toys_data), "--config", str(bad), "--out", str(tmp_path / "C3"), "--quiet")
    assert code != 0 and "r.yaml, line 4" in err and "rnak" in err
    code, _, err = run_cli("pretrain", "--data", str(toys_data), "--config", TINY, "--out", str(tmp_path / "C4"), "--modules-to-save", "embed_tokenz", "--quiet")
    assert code != 0 and err.startswith("Error: ") and "embed_tokenz" in err and len(err.strip().splitlines()) == 1
