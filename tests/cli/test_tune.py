"""`recsys tune` (evaluation/tune.py) and `recsys infer --tuning` on the Toys slice: W = 1 rerank files
(one real tiny-model run, two written by hand through the project's writers, so the LLM's order is known),
the rule "keep W = 0 unless the paired 95% interval excludes 0", the refusals, and applying the choice.

    python -m pytest tests/cli/test_tune.py -q
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys_cli.artifacts import outputs, provenance, schemas
from recsys_cli.artifacts.io import write_parquet
from recsys_cli.inference import retriever
from tests.conftest import run_cli, run_itemknn

K = 20


def _valid_ids(data, retr) -> list[str]:
    """20 validation sequential prompts: every one whose target itemknn ranks in its top 30, then misses."""
    prompts = pl.read_parquet(data / schemas.PROMPTS)
    prompts = prompts.filter((pl.col("split") == "valid") & (pl.col("family") == "sequential"))
    lists = pl.read_parquet(retr).join(prompts.select("prompt_id", "item_id"), on="prompt_id").sort("prompt_id")
    hit = [t in r for r, t in zip(lists["ranked"].to_list(), lists["item_id"].to_list())]
    ids = lists["prompt_id"].to_list()
    hits, misses = [i for i, h in zip(ids, hit) if h], [i for i, h in zip(ids, hit) if not h]
    assert len(hits) >= 6, hits  # the slice has enough retriever hits for a clear gain
    return hits + misses[: 20 - len(hits)]


def hand_made(data, retr, ids, out, scorer: str, boosted: int | None) -> dict:
    """A W = 1 rerank file as `infer --candidates-from retr --rerank-k K --fusion 1` writes it, with LLM
    scores that keep the retriever's order except that the target jumps to the top in the first
    `boosted` prompts whose target is among the K (all of them when None). Returns prompt -> gained."""
    prompts = pl.read_parquet(data / schemas.PROMPTS).filter(pl.col("prompt_id").is_in(ids))
    ret = pl.read_parquet(retr).join(
        prompts.select("prompt_id", "item_id", "family", "template_id", "seen"), on="prompt_id"
    )
    rows, gained = [], {}
    for r in ret.sort("prompt_id").iter_rows(named=True):
        head, rest = r["ranked"][:K], r["ranked"][K:]
        llm = [-float(i) for i in range(len(head))]
        lucky = r["item_id"] in head and (boosted is None or len(gained) < boosted)
        if lucky and head.index(r["item_id"]) > 0:
            llm[head.index(r["item_id"])] = 50.0
            gained[r["prompt_id"]] = True
        order = sorted(range(len(head)), key=lambda i: -llm[i])
        rows.append(
            {
                "prompt_id": r["prompt_id"],
                "family": r["family"],
                "template_id": r["template_id"],
                "seen": r["seen"],
                "output": head[order[0]],
                "ranked": [head[i] for i in order] + rest,
                "scores": [llm[i] for i in order] + [None] * len(rest),
                "valid": True,
            }
        )
    settings = {
        "split": "valid",
        "retriever": retriever.identity_of(retr, provenance.read(retr)),
        "rerank_k": K,
        "fusion": 1.0,
        "item_scoring": scorer,
        "exclude_history": False,
    }
    prov = provenance.make(data, {"kind": "base-model", "name": "hand-made"}, settings)
    write_parquet(
        pl.DataFrame(rows), out, schemas.PREDICTIONS_SCHEMA, metadata=provenance.encode(prov), kind=outputs.PREDICTIONS
    )
    return gained


@pytest.fixture(scope="module")
def runs(toys_entities, tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    for split in ("valid", "test"):
        run_itemknn(toys_entities, split, 30, d / f"knn-{split}.parquet")
    ids = _valid_ids(toys_entities, d / "knn-valid.parquet")
    (d / "ids.txt").write_text("".join(i + "\n" for i in ids))
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--split",
        "valid",
        "--prompt-ids",
        str(d / "ids.txt"),
        "--candidates-from",
        str(d / "knn-valid.parquet"),
        "--rerank-k",
        "10",
        "--out",
        str(d / "real-k10.parquet"),
        "--quiet",
    )
    assert code == 0, err
    gains = {
        "all": hand_made(toys_entities, d / "knn-valid.parquet", ids, d / "gain.parquet", "full", None),
        "one": hand_made(toys_entities, d / "knn-valid.parquet", ids, d / "one.parquet", "constrained", 1),
    }
    assert len(gains["all"]) >= 5 and len(gains["one"]) == 1
    return d


def tune(data, runs_dir, out, *reranks, more=()):
    args = [
        "tune",
        "--data",
        str(data),
        "--rerank",
        *map(str, reranks),
        "--retriever",
        str(runs_dir / "knn-valid.parquet"),
        "--out",
        str(out),
        *more,
    ]
    return run_cli(*args, "--json", "--quiet")


def test_a_lone_lucky_prompt_keeps_w_zero(toys_entities, runs, tmp_path):
    code, out, err = tune(toys_entities, runs, tmp_path / "t.json", runs / "real-k10.parquet", runs / "one.parquet")
    assert code == 0, err
    res = json.loads((tmp_path / "t.json").read_text())
    assert json.loads(out)["chosen"] == res["chosen"] and res["prompts"] == 20
    grid = [0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
    assert len(res["rows"]) == 2 * 14 and sorted({r["w"] for r in res["rows"]}) == grid
    assert {(r["scorer"], r["k"]) for r in res["rows"]} == {("constrained", 10), ("constrained", K)}
    best, gain = res["best"], res["gain"]
    if best["k"] == K:  # the hand-made file's one gained prompt: a real gain whose interval holds 0
        assert best["w"] > 0 and gain["diff"] > 0 and gain["ci95"][0] <= 0 and not gain["excludes_0"]
    assert res["chosen"]["w"] == (best["w"] if gain["excludes_0"] else 0.0)
    alone = tune(toys_entities, runs, tmp_path / "one.json", runs / "one.parquet")
    res = json.loads((tmp_path / "one.json").read_text())
    assert alone[0] == 0 and res["best"]["w"] > 0 and res["best"]["NDCG@10"] > res["rows"][0]["NDCG@10"]
    assert res["chosen"] == {"scorer": "constrained", "k": K, "w": 0.0} and res["outcome"].startswith("kept W = 0")
    assert res["rule"].startswith("keep W = 0") and not res["gain"]["excludes_0"]


def test_a_clear_gain_is_chosen_written_once_and_deterministic(toys_entities, runs, tmp_path):
    code, out, err = run_cli(
        "tune",
        "--data",
        str(toys_entities),
        "--rerank",
        str(runs / "gain.parquet"),
        "--retriever",
        str(runs / "knn-valid.parquet"),
        "--out",
        str(tmp_path / "t.json"),
    )
    assert code == 0, err
    res = json.loads((tmp_path / "t.json").read_text())
    assert res["gain"]["excludes_0"] and res["gain"]["ci95"][0] > 0
    assert res["chosen"] == {"scorer": "full", "k": K, "w": res["best"]["w"]} and res["chosen"]["w"] > 0
    assert "outcome: chose scorer full" in " ".join(out.split()) and "rule:" in out
    assert outputs.owner_kind(tmp_path / "t.json") == outputs.TUNING
    first = (tmp_path / "t.json").read_bytes()
    code, _, err = tune(toys_entities, runs, tmp_path / "t.json", runs / "gain.parquet")  # its own file: replaced
    assert code == 0, err
    assert (tmp_path / "t.json").read_bytes() == first  # same inputs, same bytes
    user = tmp_path / "mine.json"
    user.write_text("my notes\n")
    code, _, err = tune(toys_entities, runs, user, runs / "gain.parquet")
    assert code == 2 and "was not written by recsys" in err and user.read_text() == "my notes\n"


def test_refusals(toys_entities, tiny_model, runs, tmp_path):
    test_run = tmp_path / "test-w1.parquet"
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
        "2",
        "--candidates-from",
        str(runs / "knn-test.parquet"),
        "--rerank-k",
        "5",
        "--out",
        str(test_run),
        "--quiet",
    )
    assert code == 0, err
    code, _, err = run_cli(
        "tune",
        "--data",
        str(toys_entities),
        "--rerank",
        str(test_run),
        "--retriever",
        str(runs / "knn-test.parquet"),
        "--out",
        str(tmp_path / "t.json"),
    )
    assert code == 2 and "validation split" in err and "never" in err and not (tmp_path / "t.json").exists()
    code, _, err = tune(toys_entities, runs, tmp_path / "t.json", runs / "one.parquet", runs / "one.parquet")
    assert code == 2 and "one file per (scorer, K)" in err
    code, _, err = tune(toys_entities, runs, tmp_path / "t.json", runs / "gain.parquet", more=["--ws", "0.5,2"])
    assert code == 2 and "--ws" in err and not (tmp_path / "t.json").exists()


def test_infer_applies_a_tuning_file(toys_entities, tiny_model, runs, tmp_path):
    tuning = tmp_path / "t.json"
    code, _, err = tune(toys_entities, runs, tuning, runs / "gain.parquet")
    assert code == 0, err
    chosen = json.loads(tuning.read_text())["chosen"]
    base = [
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
        "2",
        "--candidates-from",
        str(runs / "knn-test.parquet"),
        "--quiet",
    ]
    code, _, err = run_cli(*base, "--tuning", str(tuning), "--out", str(tmp_path / "p.parquet"))
    assert code == 0, err
    prov = provenance.read(tmp_path / "p.parquet")
    s = prov["settings"]
    assert (s["rerank_k"], s["fusion"], s["item_scoring"], s["split"]) == (K, chosen["w"], "full", "test")
    assert prov["extra"]["tuning"]["path"] == str(tuning.resolve()) and len(prov["extra"]["tuning"]["sha256"]) == 64
    code, _, err = run_cli(*base, "--tuning", str(tuning), "--fusion", "1", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--fusion 1.0 conflicts" in err and not (tmp_path / "x.parquet").exists()
    code, _, err = run_cli(*base, "--tuning", str(tuning), "--rerank-k", "5", "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--rerank-k 5 conflicts" in err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(tuning.read_text()), "data_fingerprint": "0" * 64}))
    code, _, err = run_cli(*base, "--tuning", str(other), "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "made on other data" in err
    code, _, err = run_cli(*base[:-3], "--quiet", "--tuning", str(tuning), "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and "--candidates-from" in err and not (tmp_path / "x.parquet").exists()


def test_scorer_names_round_trip_listwise_variants():
    """A listwise run's orders and ID-aware candidates are part of its scorer name (two listwise
    files stay apart in `recsys tune`), and `infer --tuning` reads them back as flags."""
    from recsys_cli.artifacts.tuning import parse_scorer, scorer_of

    cases = [
        ({"item_scoring": "full"}, "full", ("full", 1, False)),
        ({}, "constrained", ("constrained", 1, False)),
        (
            {"item_scoring": "listwise", "listwise": {"orders": 1, "candidate_ids": False}},
            "listwise",
            ("listwise", 1, False),
        ),
        (
            {"item_scoring": "listwise", "listwise": {"orders": 3, "candidate_ids": False}},
            "listwise x3",
            ("listwise", 3, False),
        ),
        (
            {"item_scoring": "listwise", "listwise": {"orders": 2, "candidate_ids": True}},
            "listwise x2+ids",
            ("listwise", 2, True),
        ),
    ]
    for settings, name, flags in cases:
        assert scorer_of(settings) == name
        assert parse_scorer(name) == flags
