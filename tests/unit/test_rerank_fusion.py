"""Fusion arithmetic (inference/fusion.py) and the shard rule (inference/selection.py), by hand.

python -m pytest tests/unit/test_rerank_fusion.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from recsys_cli.errors import RecsysError
from recsys_cli.inference import fusion, selection


def test_log_softmax_hand_computed_and_degenerate():
    got = fusion.log_softmax([0.0, math.log(3.0)])
    assert got == pytest.approx([math.log(0.25), math.log(0.75)])
    assert fusion.log_softmax([5.0, float("-inf")]) == [0.0, float("-inf")]
    assert fusion.log_softmax([float("-inf")] * 4) == pytest.approx([math.log(0.25)] * 4)
    assert fusion.log_softmax([]) == []
    assert fusion.log_softmax([1000.0, 1000.0]) == pytest.approx([math.log(0.5)] * 2)  # no overflow


def test_fuse_weights_and_rerank_order():
    llm, ret = [math.log(0.1), math.log(0.9)], [math.log(0.6), math.log(0.4)]
    assert fusion.fuse(llm, ret, 1.0) == pytest.approx(llm)
    assert fusion.fuse(None, ret, 0.0) == pytest.approx(ret)
    half = fusion.fuse(llm, ret, 0.5)
    assert half == pytest.approx([0.5 * math.log(0.1) + 0.5 * math.log(0.6), 0.5 * math.log(0.9) + 0.5 * math.log(0.4)])
    ranked, scores = fusion.rerank(["a", "b"], [10.0, 9.0], [-3.0, -1.0], ["c", "d"], 1.0)
    assert ranked == ["b", "a", "c", "d"] and scores[2:] == [None, None] and scores[0] > scores[1]
    ranked, _ = fusion.rerank(["a", "b", "c"], [2.0, 1.0, 0.0], [-1.0, -1.0, -1.0], [], 1.0)
    assert ranked == ["a", "b", "c"]  # LLM ties keep the retriever's order
    ranked, _ = fusion.rerank(["a", "b"], [1.0, 5.0], [0.0, 0.0], ["z"], 0.0)
    assert ranked == ["b", "a", "z"]  # W = 0 sorts by the retriever's score


def test_shard_rule_round_robin_and_suffix(monkeypatch):
    df = pl.DataFrame({"prompt_id": [f"p{i}" for i in range(7)]})
    parts = [selection.shard_rows(df, (i, 3))["prompt_id"].to_list() for i in range(3)]
    assert parts == [["p0", "p3", "p6"], ["p1", "p4"], ["p2", "p5"]]
    assert [selection.shard_count(7, (i, 3)) for i in range(3)] == [3, 2, 2]
    assert selection.shard_rows(df.head(1), (2, 3)).height == 0 and selection.shard_count(1, (2, 3)) == 0
    assert selection.shard_path(Path("d/test.parquet"), (1, 4)) == Path("d/test.shard-1-of-4.parquet")
    assert selection.shard_path(Path("d/test.parquet"), None) == Path("d/test.parquet")
    assert selection.parse_shard("2/4") == (2, 4) and selection.parse_shard("0/1") is None
    for bad in ("4/4", "a/b", "1", "-1/2", "0/0"):
        with pytest.raises(RecsysError, match="--shard"):
            selection.parse_shard(bad)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert selection.parse_shard(None) is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert selection.parse_shard(None) == (1, 3)
    assert selection.parse_shard("0/2") == (0, 2)  # --shard wins over the environment
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert selection.parse_shard(None) is None
