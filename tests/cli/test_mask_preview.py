"""`recsys mask-preview`: the paper's Figure 1 in the terminal, and its --json form.

python -m pytest tests/cli/test_mask_preview.py
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

FIELDS = {"tokens", "input_ids", "inter", "intra", "part_a_len", "spans", "entity_spans", "level", "labels"}
MASKS = {"entity": "[M]", "sentence": "[sM]", "document": "[gM]", "prompt": "[gM]"}


@pytest.mark.parametrize("level", ["entity", "sentence", "document", "prompt"])
def test_mask_preview_json(toys_data, tiny_model, level):
    code, out, err = run_cli(
        "mask-preview",
        "--data",
        str(toys_data),
        "-n",
        "3",
        "--level",
        level,
        "--seed",
        "1",
        "--model",
        tiny_model,
        "--json",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3
    for r in rows:
        assert FIELDS <= set(r) and r["level"] == level
        L = len(r["input_ids"])
        assert len(r["tokens"]) == len(r["inter"]) == len(r["intra"]) == len(r["labels"]) == L
        a = r["part_a_len"]
        assert r["tokens"][:a].count(MASKS[level]) == len(r["spans"]) >= 1
        assert r["tokens"][a:].count("[START]") == len(r["spans"]) and r["tokens"][a] == "[START]"
        n = a - len(r["spans"]) + sum(s["end"] - s["start"] for s in r["spans"])
        assert L == n + 2 * len(r["spans"])  # original tokens + one mask and one [START] per span
        assert r["inter"][:a] == list(range(a)) and all(0 <= x < a for x in r["inter"][a:])
        assert all(0 <= s["start"] < s["end"] <= n for s in r["entity_spans"])
    if level == "prompt":
        assert all(
            r["spans"][0]["end"] == len(r["input_ids"]) - r["part_a_len"] - 1 + r["spans"][0]["start"] for r in rows
        )
    # same seed, same output
    code2, out2, _ = run_cli(
        "mask-preview",
        "--data",
        str(toys_data),
        "-n",
        "3",
        "--level",
        level,
        "--seed",
        "1",
        "--model",
        tiny_model,
        "--json",
    )
    assert code2 == 0 and out2 == out


def test_mask_preview_table(toys_data, tiny_model):
    code, out, err = run_cli(
        "mask-preview", "--data", str(toys_data), "-n", "1", "--level", "entity", "--model", tiny_model, "--quiet"
    )
    assert code == 0, err
    for part in (
        "original (entities highlighted)",
        "Part A (corrupted)",
        "Part B (spans in order)",
        "inter",
        "intra",
        "[START]",
        "[END]",
    ):
        assert part in out


def test_mask_preview_errors(toys_data, tiny_model, tmp_path):
    code, _, err = run_cli("mask-preview", "--data", str(toys_data), "--level", "word", "--model", tiny_model)
    assert code != 0 and "--level" in err
    code, _, err = run_cli("mask-preview", "--data", str(tmp_path), "--model", tiny_model)
    assert code == 2 and f"{tmp_path}: not a complete recsys run (no manifest.json)" in err
