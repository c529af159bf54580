"""`recsys infer` end to end on the committed Toys / Musical Instruments slices with the tiny
random model (real SmolLM2 tokenizer).

    python -m pytest tests/cli/test_infer.py -q
"""

from __future__ import annotations

import json
import math
import shutil

import polars as pl
import pytest

from tests.conftest import run_cli


def infer(*args):
    return run_cli("infer", *args, "--quiet", "--json")


def test_sequential_constrained_real_items_exclude_history_and_resume(toys_entities, tiny_model, tmp_path):
    out = tmp_path / "pred.parquet"
    base = [
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--top-k",
        "5",
        "--exclude-history",
        "--out",
        str(out),
    ]
    code, stdout, err = infer(*base, "--limit", "3")
    assert code == 0, err
    first = pl.read_parquet(out)
    assert first.height == 3
    items = set(pl.read_parquet(toys_entities / "items.parquet")["item_id"].to_list())
    prompts = pl.read_parquet(toys_entities / "prompts.parquet").filter(
        pl.col("split") == "test", pl.col("family") == "sequential"
    )
    seqs = dict(pl.read_parquet(toys_entities / "sequences.parquet").select("user_id", "items").iter_rows())
    users = dict(prompts.select("prompt_id", "user_id").iter_rows())
    for row in first.iter_rows(named=True):
        assert len(row["ranked"]) == 5 and len(set(row["ranked"])) == 5
        assert set(row["ranked"]) <= items and row["valid"]
        assert not set(row["ranked"]) & set(seqs[users[row["prompt_id"]]][:-1])
        assert row["scores"] == sorted(row["scores"], reverse=True)
    # resume: a longer run keeps the written rows and only does the new prompts
    code, stdout, err = infer(*base, "--limit", "5")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["skipped"] == 3 and summary["rows"] == 5
    second = pl.read_parquet(out)
    assert second.head(3).equals(first)
    assert second["prompt_id"].to_list() == prompts["prompt_id"].head(5).to_list()
    assert not (tmp_path / ".pred.parquet.parts").exists()


def test_candidates_ranked_and_yes_no(toys_entities, tiny_model, tmp_path):
    common = ["--data", str(toys_entities), "--checkpoint", "none", "--model", tiny_model, "--family", "direct"]
    code, _, err = infer(*common, "--template", "direct-1", "--limit", "1", "--out", str(tmp_path / "c.parquet"))
    assert code == 0, err
    row = pl.read_parquet(tmp_path / "c.parquet").row(0, named=True)
    cands = (
        pl.read_parquet(toys_entities / "prompts.parquet")
        .filter(pl.col("prompt_id") == row["prompt_id"])["candidates"][0]
        .to_list()
    )
    assert sorted(row["ranked"]) == sorted(cands) and len(cands) == 100
    assert row["scores"] == sorted(row["scores"], reverse=True) and row["valid"]
    code, _, err = infer(*common, "--template", "direct-3", "--limit", "3", "--out", str(tmp_path / "y.parquet"))
    assert code == 0, err
    yn = pl.read_parquet(tmp_path / "y.parquet")
    assert set(yn["output"].str.to_lowercase()) <= {"yes", "no"} and yn["valid"].all()
    assert all(len(s) == 2 and max(s) < 0 for s in yn["scores"].to_list())


def test_rating_and_explanation(musical_data, tiny_model, tmp_path):
    common = ["--data", str(musical_data), "--checkpoint", "none", "--model", tiny_model]
    code, stdout, err = infer(
        *common, "--family", "rating", "--template", "rating-1", "--limit", "3", "--out", str(tmp_path / "r.parquet")
    )
    assert code == 0, err
    r = pl.read_parquet(tmp_path / "r.parquet")
    assert r.height == 3
    for row in r.iter_rows(named=True):  # a random model rarely writes a number: unparsable -> valid False
        if row["valid"]:
            assert 1.0 <= float(row["output"]) <= 5.0
        else:
            assert row["scores"] is None
    assert json.loads(stdout)["modes"]["rating"]["valid"] == int(r["valid"].sum())
    code, _, err = infer(
        *common,
        "--family",
        "explanation",
        "--limit",
        "2",
        "--max-new-tokens",
        "6",
        "--out",
        str(tmp_path / "e.parquet"),
    )
    assert code == 0, err
    e = pl.read_parquet(tmp_path / "e.parquet")
    assert e.height == 2 and e["ranked"].is_null().all()


def test_bad_inputs_one_line_errors(toys_data, toys_entities, tiny_model, tmp_path):
    def err_of(*args):
        code, _, err = run_cli("infer", *args, "--quiet")
        assert code != 0
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in err
        return errors[0]

    common = ["--checkpoint", "none", "--model", tiny_model, "--out", str(tmp_path / "p.parquet")]
    assert "entities.parquet" in err_of("--data", str(toys_data), "--family", "sequential", *common)
    assert "no prompts match" in err_of("--data", str(toys_entities), "--template", "nope-1", *common)
    assert "checkpoint directory not found" in err_of(
        "--data", str(toys_entities), "--checkpoint", str(tmp_path / "missing")
    )
    other = tmp_path / "R"
    shutil.copytree(toys_entities, other)
    ent = pl.read_parquet(other / "entities.parquet")
    ent.with_columns(pl.col("token_ids").list.eval(pl.element() + 7)).write_parquet(other / "entities.parquet")
    assert "token_ids do not match this tokenizer" in err_of(
        "--data", str(other), "--family", "sequential", "--limit", "1", *common
    )


@pytest.mark.slow
def test_trained_checkpoint_default_output_other_checkpoint_and_base_mismatch(toys_entities, tiny_model, tmp_path):
    ckpt = tmp_path / "C"
    code, _, err = run_cli(
        "pretrain",
        "--config",
        "recipes/pretrain/tiny-cpu.yaml",
        "--data",
        str(toys_entities),
        "--out",
        str(ckpt),
        "--max-steps",
        "2",
        "--quiet",
    )
    assert code == 0, err
    code, _, err = infer(
        "--data",
        str(toys_entities),
        "--checkpoint",
        str(ckpt),
        "--family",
        "sequential",
        "--limit",
        "2",
        "--top-k",
        "3",
    )
    assert code == 0, err
    default = ckpt / "predictions" / "test.parquet"
    pred = pl.read_parquet(default)
    assert pred.height == 2 and pred["valid"].all() and all(len(x) == 3 for x in pred["ranked"].to_list())
    from recsys_cli.artifacts.provenance import read

    producer = read(default)["producer"]
    assert producer["kind"] == "checkpoint" and producer["path"] == str(ckpt.resolve()) and producer["step"] == 2
    assert len(producer["weights_sha256"]) == 64 and producer["trained_on"]
    # another checkpoint (a copy elsewhere) may not append to this one's predictions
    other = tmp_path / "C2"
    shutil.copytree(ckpt, other, ignore=shutil.ignore_patterns("predictions"))
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        str(other),
        "--family",
        "sequential",
        "--limit",
        "3",
        "--top-k",
        "3",
        "--out",
        str(default),
        "--quiet",
    )
    assert code != 0 and err.startswith("Error:") and "producer.path" in err and len(err.strip().splitlines()) == 1
    assert pl.read_parquet(default).height == 2
    # --model must be the base the checkpoint was trained on: a tiny model with one more layer
    wrong = tmp_path / "wider-model"
    shutil.copytree(tiny_model, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["num_hidden_layers"] += 1
    (wrong / "config.json").write_text(json.dumps(cfg))
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        str(ckpt),
        "--model",
        str(wrong),
        "--limit",
        "1",
        "--quiet",
    )
    assert code != 0 and err.startswith("Error:") and "fingerprint" in err and len(err.strip().splitlines()) == 1


def test_prompt_ids_exact_order_and_bad_lines(toys_entities, tiny_model, tmp_path):
    prompts = pl.read_parquet(toys_entities / "prompts.parquet")
    test_direct = prompts.filter(
        pl.col("split") == "test", pl.col("family") == "direct", pl.col("target").is_in(["yes", "no"])
    )
    ids = test_direct["prompt_id"].to_list()
    chosen = [ids[7], ids[2], ids[30]]
    f = tmp_path / "ids.txt"
    f.write_text(f"{chosen[0]}\n\n{chosen[1]}\n  {chosen[2]}  \n")
    common = ["--data", str(toys_entities), "--checkpoint", "none", "--model", tiny_model, "--prompt-ids", str(f)]
    code, _, err = infer(*common, "--out", str(tmp_path / "p.parquet"))
    assert code == 0, err
    assert pl.read_parquet(tmp_path / "p.parquet")["prompt_id"].to_list() == chosen

    def err_of(text, *more):
        f.write_text(text)
        code, _, err = run_cli("infer", *common, "--out", str(tmp_path / "q.parquet"), *more, "--quiet")
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and "internal error" not in err, err
        return lines[0]

    assert f"{f}, line 3" in err_of(f"{ids[0]}\n{ids[1]}\nnot-a-prompt\n") and "not a prompt_id" in err_of("nope\n")
    msg = err_of(f"{ids[0]}\n{ids[0]}\n")
    assert "line 2" in msg and "repeated" in msg
    valid_id = prompts.filter(pl.col("split") == "valid")["prompt_id"][0]
    msg = err_of(f"{ids[0]}\n{valid_id}\n")
    assert "line 2" in msg and "not selected" in msg
    assert "line 1" in err_of(f"{ids[0]}\n", "--family", "sequential")


def test_users_subset_and_full_item_scoring(toys_entities, tiny_model, tmp_path):
    common = ["--data", str(toys_entities), "--checkpoint", "none", "--model", tiny_model, "--family", "direct"]
    code, _, err = infer(*common, "--users", "2", "--template", "direct-9", "--out", str(tmp_path / "c.parquet"))
    assert code == 0, err
    got = pl.read_parquet(tmp_path / "c.parquet")
    prompts = pl.read_parquet(toys_entities / "prompts.parquet").filter(
        pl.col("split") == "test", pl.col("family") == "direct"
    )
    first_two = prompts["user_id"].unique(maintain_order=True).head(2).to_list()
    want = prompts.filter(pl.col("user_id").is_in(first_two), pl.col("template_id") == "direct-9")
    assert got["prompt_id"].to_list() == want["prompt_id"].to_list() and got.height == 2
    probs = [sum(math.exp(s) for s in row) for row in got["scores"].to_list()]
    assert probs == pytest.approx([1.0, 1.0], abs=1e-3)  # constrained scores: a distribution over the 100 titles
    code, _, err = infer(
        *common,
        "--users",
        "2",
        "--template",
        "direct-9",
        "--item-scoring",
        "full",
        "--out",
        str(tmp_path / "f.parquet"),
    )
    assert code == 0, err
    full = pl.read_parquet(tmp_path / "f.parquet")
    assert sorted(full["ranked"][0].to_list()) == sorted(got["ranked"][0].to_list())
    assert (
        sum(math.exp(s) for s in full["scores"][0].to_list()) < 0.99
    )  # full-vocabulary log-probs are not renormalized
    code, _, err = infer(
        *common, "--users", "1", "--kind", "rank", "--item-scoring", "full", "--out", str(tmp_path / "k.parquet")
    )
    assert code == 0, err
    kinds = pl.read_parquet(tmp_path / "k.parquet")
    assert (
        kinds.height == 2 and set(kinds["template_id"]) & {"direct-9"} and all(len(r) == 100 for r in kinds["ranked"])
    )
    code, _, err = infer(*common, "--item-scoring", "best", "--out", str(tmp_path / "x.parquet"))
    assert code != 0 and "--item-scoring" in err and "Traceback" not in err
