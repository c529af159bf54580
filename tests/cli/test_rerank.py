"""Two-stage ranking: `recsys infer --candidates-from PRED --rerank-k K [--fusion W]` on the
Toys slice with the tiny model and baseline retrievers; the validation sweep (evaluation/tune.py).

    python -m pytest tests/cli/test_rerank.py -q
"""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from recsys_cli.artifacts import provenance
from recsys_cli.artifacts.io import data_fingerprint
from tests.conftest import run_cli, run_itemknn


def infer(*args):
    return run_cli("infer", *args, "--quiet", "--json")


@pytest.fixture(scope="module")
def retrievers(toys_entities, tmp_path_factory):
    """itemknn (per-user lists) for test and valid, top 30, written outside the data dir."""
    d = tmp_path_factory.mktemp("retrievers")
    for split in ("test", "valid"):
        run_itemknn(toys_entities, split, 30, d / f"knn-{split}.parquet")
    return d


def base(data, model, out, retr, *more):
    return [
        "--data",
        str(data),
        "--checkpoint",
        "none",
        "--model",
        model,
        "--out",
        str(out),
        "--candidates-from",
        str(retr),
        *more,
    ]


def lists(path):
    df = pl.read_parquet(path)
    return {r["prompt_id"]: r for r in df.iter_rows(named=True)}


def test_rerank_head_tail_provenance_and_recall(toys_entities, tiny_model, retrievers, tmp_path):
    retr = retrievers / "knn-test.parquet"
    out = tmp_path / "rr.parquet"
    code, stdout, err = infer(*base(toys_entities, tiny_model, out, retr, "--rerank-k", "8", "--users", "2"))
    assert code == 0, err
    got, want = lists(out), lists(retr)
    items = set(pl.read_parquet(toys_entities / "items.parquet")["item_id"].to_list())
    prompts = pl.read_parquet(toys_entities / "prompts.parquet").filter(pl.col("split") == "test")
    ranking = {
        r["prompt_id"]: r
        for r in prompts.iter_rows(named=True)
        if r["family"] == "sequential" or (r["candidates"] is not None and r["target"] not in ("yes", "no"))
    }
    reranked = [p for p in got if p in ranking]
    assert len(reranked) == 2 * 5  # 3 sequential + 2 direct rank prompts per user
    hits = 0
    for pid in reranked:
        row, ret = got[pid], want[pid]["ranked"]
        assert sorted(row["ranked"][:8]) == sorted(ret[:8]) and row["ranked"][8:] == ret[8:]
        assert (
            len(set(row["ranked"])) == len(row["ranked"]) == len(ret) and set(row["ranked"]) <= items and row["valid"]
        )
        head = row["scores"][:8]
        assert head == sorted(head, reverse=True) and all(s is None for s in row["scores"][8:])
        assert sum(math.exp(s) for s in head) == pytest.approx(1.0, abs=1e-6)  # W = 1: log-softmax over the 8
        if ranking[pid]["candidates"] is not None:
            assert set(row["ranked"]) <= set(ranking[pid]["candidates"])
        hits += ranking[pid]["item_id"] in ret[:8]
    yes_no = [p for p in got if p not in ranking]
    assert yes_no and all(got[p]["output"].lower() in ("yes", "no") for p in yes_no)
    summary = json.loads(stdout)
    prov = provenance.read(out)
    assert prov["data_fingerprint"] == data_fingerprint(toys_entities)
    s = prov["settings"]
    assert s["rerank_k"] == 8 and s["fusion"] == 1.0 and s["retriever"]["path"] == str(retr.resolve())
    key = (
        "file_sha256" if provenance.read(retr) is None else "provenance_sha256"
    )  # named by its provenance when it has one
    assert len(s["retriever"][key]) == 64
    rr = prov["extra"]["rerank"]
    assert rr["hits"] == hits and rr["prompts"] == 10 and rr["recall_at_k"] == pytest.approx(hits / 10)
    assert summary["rerank"]["recall_at_k"] == pytest.approx(hits / 10) and summary["rerank"]["k"] == 8


def test_fusion_formula_and_zero_weight_is_the_retriever(toys_entities, tiny_model, retrievers, tmp_path):
    retr = retrievers / "knn-test.parquet"
    common = ["--rerank-k", "6", "--family", "sequential", "--limit", "3"]
    runs = {}
    for w in ("1", "0.4", "0"):
        out = tmp_path / f"w{w}.parquet"
        code, _, err = infer(*base(toys_entities, tiny_model, out, retr, *common, "--fusion", w))
        assert code == 0, err
        runs[w] = lists(out)
    want = lists(retr)
    for pid, row in runs["0"].items():
        assert row["ranked"] == want[pid]["ranked"]  # itemknn lists are sorted by score: W = 0 keeps them
    for pid, row in runs["0.4"].items():
        ret = want[pid]
        llm = dict(zip(runs["1"][pid]["ranked"][:6], runs["1"][pid]["scores"][:6]))
        top = max(ret["scores"][:6])
        z = top + math.log(sum(math.exp(x - top) for x in ret["scores"][:6]))
        fused = {i: 0.4 * llm[i] + 0.6 * (s - z) for i, s in zip(ret["ranked"][:6], ret["scores"][:6])}
        assert row["scores"][:6] == pytest.approx([fused[i] for i in row["ranked"][:6]], abs=1e-9)
        assert row["ranked"][:6] == sorted(fused, key=lambda i: -fused[i])


def test_sweep_recomputes_every_k_and_w_on_validation(toys_entities, tiny_model, retrievers, tmp_path):
    from recsys_cli.errors import RecsysError
    from recsys_cli.evaluation import tune as sweep

    retr = retrievers / "knn-valid.parquet"
    pick = ["--split", "valid", "--family", "sequential", "--limit", "4"]
    runs = {}
    for name, more in {
        "c10": ["--rerank-k", "10"],
        "c10w": ["--rerank-k", "10", "--fusion", "0.3"],
        "f10": ["--rerank-k", "10", "--item-scoring", "full"],
        "f5w": ["--rerank-k", "5", "--item-scoring", "full", "--fusion", "0.5"],
    }.items():
        runs[name] = tmp_path / f"{name}.parquet"
        code, _, err = infer(*base(toys_entities, tiny_model, runs[name], retr, *pick, *more))
        assert code == 0, err
    settings, cases = sweep.load_cases(toys_entities, runs["c10"], retr)
    assert settings["rerank_k"] == 10 and len(cases) == 4
    # the run's K, any W: exact (constrained scoring)
    direct = lists(runs["c10w"])
    assert all(sweep.ranking(c, 10, 0.3) == direct[c[0]]["ranked"] for c in cases)
    # smaller K: exact with --item-scoring full (titles scored independently)
    _, full_cases = sweep.load_cases(toys_entities, runs["f10"], retr)
    direct = lists(runs["f5w"])
    assert all(sweep.ranking(c, 5, 0.5) == direct[c[0]]["ranked"] for c in full_cases)
    res = sweep.sweep(toys_entities, runs["c10"], retr, [5, 10], [0.0, 0.5, 1.0])
    assert len(res["rows"]) == 6 and [r["exact"] for r in res["rows"]] == [False] * 3 + [True] * 3
    assert res["best"]["k"] == 10
    assert all(r["exact"] for r in sweep.sweep(toys_entities, runs["f10"], retr, [5, 10], [0.5])["rows"])
    with pytest.raises(RecsysError, match="fusion 1"):
        sweep.load_cases(toys_entities, runs["c10w"], retr)
    with pytest.raises(RecsysError, match="retriever"):
        sweep.load_cases(toys_entities, runs["c10"], retrievers / "knn-test.parquet")
    test_run = tmp_path / "test.parquet"
    code, _, err = infer(
        *base(
            toys_entities,
            tiny_model,
            test_run,
            retrievers / "knn-test.parquet",
            "--family",
            "sequential",
            "--limit",
            "2",
            "--rerank-k",
            "5",
        )
    )
    assert code == 0, err
    with pytest.raises(RecsysError, match="validation split"):
        sweep.load_cases(toys_entities, test_run, retrievers / "knn-test.parquet")
    code, out, err = run_cli(
        "tune",
        "--data",
        str(toys_entities),
        "--rerank",
        str(runs["c10"]),
        str(runs["f10"]),
        "--retriever",
        str(retr),
        "--ws",
        "0,0.5,1",
        "--out",
        str(tmp_path / "tuning.json"),
        "--quiet",
    )
    assert code == 0, err
    table = json.loads((tmp_path / "tuning.json").read_text())
    assert len(table["rows"]) == 6 and {r["scorer"] for r in table["rows"]} == {"constrained", "full"}
    assert "rule: keep W = 0" in out and "outcome:" in out


def test_bad_candidates_files_are_one_line_errors(toys_entities, tiny_model, retrievers, tmp_path):
    retr = pl.read_parquet(retrievers / "knn-test.parquet")
    prompts = pl.read_parquet(toys_entities / "prompts.parquet")
    first = prompts.filter(pl.col("split") == "test", pl.col("family") == "sequential")["prompt_id"][
        0
    ]  # selected below
    row = retr["prompt_id"].to_list().index(first)

    def err_of(df_or_path, *more):
        path = df_or_path
        if isinstance(df_or_path, pl.DataFrame):
            path = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.parquet"
            df_or_path.write_parquet(path)
        args = base(
            toys_entities,
            tiny_model,
            tmp_path / "out.parquet",
            path,
            "--rerank-k",
            "5",
            "--family",
            "sequential",
            "--limit",
            "2",
            *more,
        )
        code, _, err = run_cli("infer", *args, "--quiet")
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and "internal error" not in err, err
        assert not (tmp_path / "out.parquet").exists()
        return lines[0]

    (tmp_path / "text.parquet").write_text("not parquet")
    assert "readable Parquet" in err_of(tmp_path / "text.parquet")
    assert "not found" in err_of(tmp_path / "missing.parquet")
    assert "missing columns ['scores']" in err_of(retr.drop("scores"))
    assert "column ranked" in err_of(retr.with_columns(pl.col("ranked").list.len().alias("ranked")))
    dup = retr.with_columns(
        pl.when(pl.col("prompt_id") == first)
        .then(pl.col("ranked").list.head(1).list.concat(pl.col("ranked").list.slice(0, 29)))
        .otherwise(pl.col("ranked"))
        .alias("ranked")
    )
    msg = err_of(dup)
    assert f"row {row}" in msg and "appears twice" in msg
    assert "item ids of items.parquet" in err_of(retr.with_columns(pl.col("ranked").list.eval(pl.element() + "x")))
    assert "has none" in err_of(retr.filter(pl.col("prompt_id") != first))
    nan = retr.with_columns(pl.col("scores").list.eval(pl.element() * float("nan")))
    assert "finite score" in err_of(nan)
    assert "one score per ranked item" in err_of(retr.with_columns(pl.col("scores").list.head(3)))
    other = tmp_path / "other-data.parquet"
    retr.write_parquet(
        other,
        metadata=provenance.encode(
            {"data_fingerprint": "0" * 64, "producer": {"kind": "baseline"}, "settings": {}, "extra": {}}
        ),
    )
    assert "made on other data" in err_of(other)


def test_rerank_refuses_unconstrained_and_a_missing_k(toys_entities, tiny_model, retrievers, tmp_path):
    """--candidates-from with --unconstrained, or without --rerank-k, is refused before any work."""
    code, _, err = run_cli(
        "infer",
        *base(
            toys_entities,
            tiny_model,
            tmp_path / "o.parquet",
            retrievers / "knn-test.parquet",
            "--rerank-k",
            "5",
            "--unconstrained",
        ),
    )
    assert code != 0 and "--unconstrained" in err and "Traceback" not in err
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--out",
        str(tmp_path / "o.parquet"),
        "--candidates-from",
        str(retrievers / "knn-test.parquet"),
    )
    assert code != 0 and "--rerank-k" in err and "Traceback" not in err


def test_calibrated_scorers_write_valid_distinct_lists(toys_entities, tiny_model, retrievers, tmp_path):
    """--item-scoring full-norm / pmi (inference/calibrated.py): reranked heads of real, distinct items,
    other scores than full."""
    retr = retrievers / "knn-test.parquet"
    want = lists(retr)
    items = set(pl.read_parquet(toys_entities / "items.parquet")["item_id"].to_list())
    runs = {}
    for scorer in ("full", "full-norm", "pmi"):
        out = tmp_path / f"{scorer}.parquet"
        code, _, err = infer(
            *base(
                toys_entities,
                tiny_model,
                out,
                retr,
                "--rerank-k",
                "8",
                "--family",
                "sequential",
                "--limit",
                "3",
                "--item-scoring",
                scorer,
            )
        )
        assert code == 0, err
        runs[scorer] = lists(out)
        assert provenance.read(out)["settings"]["item_scoring"] == scorer
    for scorer in ("full-norm", "pmi"):
        assert len(runs[scorer]) == 3
        for pid, row in runs[scorer].items():
            ret = want[pid]["ranked"]
            assert sorted(row["ranked"][:8]) == sorted(ret[:8]) and row["ranked"][8:] == ret[8:]
            assert len(set(row["ranked"])) == len(row["ranked"]) == len(ret) and set(row["ranked"]) <= items
            assert row["valid"]
            head = row["scores"][:8]
            assert head == sorted(head, reverse=True) and sum(math.exp(s) for s in head) == pytest.approx(1.0, abs=1e-6)
        assert any(
            sorted(row["scores"][:8]) != pytest.approx(sorted(runs["full"][p]["scores"][:8]), abs=1e-4)
            for p, row in runs[scorer].items()
        )


def test_calibrated_scorers_on_direct_prompts_and_refused_without_candidates(toys_entities, tiny_model, tmp_path):
    """pmi ranks a direct prompt's own candidates; full-norm on catalogue prompts is one line."""
    direct = [
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "direct",
        "--template",
        "direct-9",
        "--users",
        "1",
    ]
    code, _, err = infer(*direct, "--item-scoring", "pmi", "--out", str(tmp_path / "d.parquet"))
    assert code == 0, err
    row = pl.read_parquet(tmp_path / "d.parquet").row(0, named=True)
    prompts = pl.read_parquet(toys_entities / "prompts.parquet")
    cands = prompts.filter(pl.col("prompt_id") == row["prompt_id"])["candidates"][0]
    assert sorted(row["ranked"]) == sorted(cands) and len(set(row["ranked"])) == len(cands) and row["valid"]
    assert row["scores"] == sorted(row["scores"], reverse=True)
    code, _, err = run_cli(
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
        "1",
        "--item-scoring",
        "full-norm",
        "--out",
        str(tmp_path / "x.parquet"),
        "--quiet",
    )
    lines = [x for x in err.splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and "--item-scoring full-norm" in lines[0] and "Traceback" not in err, err
