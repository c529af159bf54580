"""`recsys infer --item-scoring listwise` end to end on the Toys slice with the tiny model:
two-stage reranking of an itemknn retriever's lists (sequential and direct prompts, seen and
unseen templates), provenance, and the one-line refusals.

    python -m pytest tests/cli/test_listwise_cli.py -q
"""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from recsys_cli.artifacts import provenance
from tests.conftest import run_cli


def infer(data, model, out, *more):
    return run_cli(
        "infer",
        "--data",
        str(data),
        "--checkpoint",
        "none",
        "--model",
        model,
        "--out",
        str(out),
        "--item-scoring",
        "listwise",
        *more,
        "--quiet",
        "--json",
    )


def one_line_error(code, err):
    lines = [x for x in err.splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_listwise_rerank_writes_valid_distinct_lists(toys_entities, tiny_model, knn, tmp_path):
    out = tmp_path / "lw.parquet"
    code, stdout, err = infer(
        toys_entities,
        tiny_model,
        out,
        "--candidates-from",
        str(knn),
        "--rerank-k",
        "20",
        "--users",
        "2",
        "--exclude-history",
    )
    assert code == 0, err
    got = {r["prompt_id"]: r for r in pl.read_parquet(out).iter_rows(named=True)}
    want = {r["prompt_id"]: r for r in pl.read_parquet(knn).iter_rows(named=True)}
    prompts = {r["prompt_id"]: r for r in pl.read_parquet(toys_entities / "prompts.parquet").iter_rows(named=True)}
    items = set(pl.read_parquet(toys_entities / "items.parquet")["item_id"].to_list())
    reranked = [p for p in got if p in want and prompts[p]["target"] not in ("yes", "no")]
    assert len(reranked) == 2 * 5  # 3 sequential (1 seen + 2 unseen templates) + 2 direct rank prompts per user
    assert {prompts[p]["seen"] for p in reranked} == {True, False}
    for pid in reranked:
        row, ret = got[pid], want[pid]["ranked"]
        assert row["valid"] and len(row["ranked"]) == len(set(row["ranked"])) == len(ret)
        assert set(row["ranked"]) <= items
        assert sorted(row["ranked"][:20]) == sorted(ret[:20]) and row["ranked"][20:] == ret[20:]  # retriever order
        head = row["scores"][:20]
        assert head == sorted(head, reverse=True) and all(s is None for s in row["scores"][20:])
        assert sum(math.exp(s) for s in head) == pytest.approx(1.0, abs=1e-5)  # W = 1: the labels' distribution
        if prompts[pid]["family"] == "direct":
            assert set(row["ranked"]) <= set(prompts[pid]["candidates"])
    settings = provenance.read(out)["settings"]
    assert settings["item_scoring"] == "listwise" and settings["rerank_k"] == 20
    lw = settings["listwise"]
    assert lw["orders"] == 1 and lw["seed"] == 0 and lw["max_length"] == 512 and len(lw["labels"]) == 52
    assert json.loads(stdout)["modes"]["rerank"]["prompts"] == 10
    # two orders, fused: same ids, a different provenance; resuming the first file with it is refused
    out2 = tmp_path / "lw2.parquet"
    code, _, err = infer(
        toys_entities,
        tiny_model,
        out2,
        "--candidates-from",
        str(knn),
        "--rerank-k",
        "20",
        "--users",
        "2",
        "--listwise-orders",
        "2",
        "--fusion",
        "0.5",
        "--seed",
        "3",
    )
    assert code == 0, err
    two = pl.read_parquet(out2)
    assert all(len(r) == len(set(r)) for r in two["ranked"].drop_nulls())
    assert provenance.read(out2)["settings"]["listwise"]["orders"] == 2
    code, _, err = infer(
        toys_entities,
        tiny_model,
        out,
        "--candidates-from",
        str(knn),
        "--rerank-k",
        "20",
        "--users",
        "2",
        "--exclude-history",
        "--listwise-orders",
        "2",
    )
    assert code != 0 and "Traceback" not in err


def test_listwise_refusals_are_one_line(toys_entities, tiny_model, knn, tmp_path):
    out = tmp_path / "x.parquet"
    msg = one_line_error(*infer(toys_entities, tiny_model, out, "--candidates-from", str(knn), "--rerank-k", "53")[::2])
    assert "--rerank-k" in msg and "52" in msg
    msg = one_line_error(*infer(toys_entities, tiny_model, out, "--family", "sequential", "--limit", "2")[::2])
    assert "--candidates-from" in msg
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--out",
        str(out),
        "--listwise-orders",
        "2",
        "--family",
        "sequential",
        "--limit",
        "1",
        "--quiet",
    )
    assert "--item-scoring listwise" in one_line_error(code, err)
    # a direct prompt's own 100 candidates exceed the labels: the user is sent to a retriever
    msg = one_line_error(
        *infer(toys_entities, tiny_model, out, "--family", "direct", "--kind", "rank", "--limit", "2")[::2]
    )
    assert "K=100" in msg and "--rerank-k" in msg
    # K = 52 long titles do not fit the 512-token budget: K, needed and available length named
    msg = one_line_error(
        *infer(
            toys_entities,
            tiny_model,
            out,
            "--candidates-from",
            str(knn),
            "--rerank-k",
            "52",
            "--family",
            "sequential",
            "--limit",
            "2",
        )[::2]
    )
    assert "K=52" in msg and "available 512" in msg and "need" in msg
    assert not out.exists()
