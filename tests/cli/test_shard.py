"""Sharded inference (issue 15): `recsys infer --shard i/n` (or RANK/WORLD_SIZE) answers a
round-robin slice, each shard resumes on its own, and `recsys merge-predictions` gives the
unsharded run's file.

    python -m pytest tests/cli/test_shard.py -q
"""

from __future__ import annotations

import json
import shutil

import polars as pl

from recsys_cli.artifacts import provenance
from tests.conftest import run_cli


def test_two_shards_merged_equal_one_unsharded_run(toys_entities, tiny_model, tmp_path, monkeypatch):
    # one user's 9 test prompts: sequential (beam search), direct ranking (candidates) and yes/no;
    # --batch-size 1 so no shard batches prompts differently from the unsharded run
    common = [
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--users",
        "1",
        "--top-k",
        "3",
        "--batch-size",
        "1",
        "--quiet",
        "--json",
    ]
    whole = tmp_path / "whole.parquet"
    code, _, err = run_cli(*common, "--out", str(whole))
    assert code == 0, err
    out = tmp_path / "p.parquet"
    code, stdout, err = run_cli(*common, "--out", str(out), "--shard", "0/2")
    assert code == 0, err
    assert json.loads(stdout)["out"] == str(tmp_path / "p.shard-0-of-2.parquet")
    monkeypatch.setenv("RANK", "1")  # torchrun's environment when --shard is absent
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(*common, "--out", str(out))
    assert code == 0, err
    shard0, shard1 = tmp_path / "p.shard-0-of-2.parquet", tmp_path / "p.shard-1-of-2.parquet"
    code, stdout, err = run_cli(*common, "--out", str(out))  # resume per shard: nothing left to do
    assert code == 0, err
    assert json.loads(stdout)["skipped"] == 4
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    a, b, ref = pl.read_parquet(shard0), pl.read_parquet(shard1), pl.read_parquet(whole)
    assert a.height == 5 and b.height == 4
    assert (
        a["prompt_id"].to_list() == ref["prompt_id"].to_list()[0::2]
        and b["prompt_id"].to_list() == ref["prompt_id"].to_list()[1::2]
    )
    assert provenance.read(shard1)["settings"]["shard"] == "1/2"
    merged = tmp_path / "merged.parquet"
    code, _, err = run_cli("merge-predictions", "--out", str(merged), str(shard1), str(shard0), "--quiet")
    assert code == 0, err
    assert pl.read_parquet(merged).equals(ref)  # every column of every row, in order
    assert provenance.read(merged) == provenance.read(whole)
    code, _, err = run_cli("score", "--data", str(toys_entities), "-p", str(merged), "--quiet")
    assert code == 0, err


def test_merge_refuses_missing_overlapping_and_mixed_shards(toys_entities, tiny_model, tmp_path):
    common = [
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--limit",
        "3",
        "--top-k",
        "2",
        "--quiet",
    ]
    for shard in ("0/2", "1/2"):
        code, _, err = run_cli(*common, "--out", str(tmp_path / "p.parquet"), "--shard", shard)
        assert code == 0, err
    code, _, err = run_cli(
        *common[:-3], "--top-k", "3", "--quiet", "--out", str(tmp_path / "q.parquet"), "--shard", "1/2"
    )
    assert code == 0, err
    s0, s1, q1 = (tmp_path / f for f in ("p.shard-0-of-2.parquet", "p.shard-1-of-2.parquet", "q.shard-1-of-2.parquet"))

    def err_of(*args):
        code, _, err = run_cli("merge-predictions", "--out", str(tmp_path / "m.parquet"), *map(str, args), "--quiet")
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and "internal error" not in err, err
        assert not (tmp_path / "m.parquet").exists()
        return lines[0]

    assert "1/2 are missing" in err_of(s0)
    copy = tmp_path / "copy.parquet"
    shutil.copy(s0, copy)
    assert "also" in err_of(s0, copy)
    assert "settings.top_k (2 -> 3)" in err_of(s0, q1)
    unsharded = tmp_path / "u.parquet"
    code, _, err = run_cli(*common, "--out", str(unsharded))
    assert code == 0, err
    assert "settings.shard is None" in err_of(s0, unsharded)
    short = tmp_path / "short.shard-1-of-2.parquet"
    df = pl.read_parquet(s1)
    df.head(0).write_parquet(short, metadata=provenance.encode(provenance.read(s1)))
    assert "complete shard 1/2" in err_of(s0, short)
    code, _, err = run_cli("merge-predictions", "--out", str(unsharded), str(s0), str(s1), "--quiet")
    assert code != 0 and "already exists" in err
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--shard",
        "2/2",
        "--out",
        str(tmp_path / "x.parquet"),
    )
    assert code != 0 and "--shard" in err and "Traceback" not in err
