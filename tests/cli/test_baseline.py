"""`recsys baseline` on the textualized fixture slices, scored by `recsys score`.

python -m pytest tests/cli/test_baseline.py
"""

from __future__ import annotations

import json

import polars as pl

from recsys_cli.artifacts import provenance, schemas
from tests.conftest import run_cli


def test_popularity_and_itemknn_are_scored_like_the_model(toys_data, tmp_path):
    outs = []
    for name in ("popularity", "itemknn"):
        out = tmp_path / f"{name}.parquet"
        code, _, err = run_cli("baseline", name, "--data", str(toys_data), "--out", str(out), "--quiet")
        assert code == 0, err
        outs.append(out)
    df = pl.read_parquet(outs[0])
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS).filter(
        (pl.col("split") == "test") & ((pl.col("family") == "sequential") | pl.col("candidates").is_not_null())
    )
    assert df.schema == pl.Schema(schemas.PREDICTIONS_SCHEMA)
    assert sorted(df["prompt_id"]) == sorted(prompts["prompt_id"])
    seq = df.filter(pl.col("family") == "sequential")
    assert (seq["ranked"].list.len() == 20).all()
    prov = provenance.read(outs[1])
    assert prov["producer"] == {"kind": "baseline", "name": "itemknn", "config": {"window": 20}}
    assert prov["settings"] == {"split": "test", "top_k": 20, "exclude_history": True}
    hist = dict(
        zip(
            *pl.read_parquet(toys_data / schemas.SEQUENCES).select("user_id", "items").to_dict(as_series=False).values()
        )
    )
    users = dict(zip(prompts["prompt_id"], prompts["user_id"]))
    assert all(not set(r) & set(hist[users[p]][:-1]) for p, r in seq.select("prompt_id", "ranked").iter_rows())
    code, out, err = run_cli("score", "--data", str(toys_data), "--compare", *map(str, outs), "--json", "--quiet")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert {(r["method"], r["family"]) for r in rows} >= {("popularity", "sequential"), ("itemknn", "direct")}
    assert all(r["metrics"]["validity"] == 1.0 for r in rows)


def test_sasrec_is_deterministic_with_seed(toys_data, tmp_path):
    paths = []
    for run in range(2):
        out = tmp_path / f"sasrec{run}.parquet"
        code, stdout, err = run_cli(
            "baseline",
            "sasrec",
            "--data",
            str(toys_data),
            "--out",
            str(out),
            "--max-epochs",
            "1",
            "--hidden",
            "8",
            "--blocks",
            "1",
            "--max-len",
            "10",
            "--seed",
            "3",
            "--json",
            "--quiet",
            "--embeddings-out",
            str(tmp_path / f"sasrec{run}.safetensors"),
        )
        assert code == 0, err
        assert json.loads(stdout)["epochs"] == 1
        paths.append(out)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert (tmp_path / "sasrec0.safetensors").read_bytes() == (tmp_path / "sasrec1.safetensors").read_bytes()


def test_mf_on_reviews_and_error_without_ratings(musical_data, toys_data, tmp_path):
    out = tmp_path / "mf.parquet"
    code, _, err = run_cli("baseline", "mf", "--data", str(musical_data), "--out", str(out), "--quiet")
    assert code == 0, err
    code, stdout, err = run_cli("score", "--data", str(musical_data), "-p", str(out), "--json", "--quiet")
    assert code == 0, err
    rows = json.loads(stdout)["rows"]
    rating = [r["metrics"] for r in rows if r["family"] == "rating"]
    assert rating and all(m["unparsable"] == 0 and 0 < m["RMSE"] < 2.5 for m in rating)
    assert any(r["family"] == "rating yes/no" for r in rows)
    code, _, err = run_cli("baseline", "mf", "--data", str(toys_data), "--out", str(tmp_path / "x.parquet"))
    assert code == 2 and err.startswith("Error: ") and err.strip().count("\n") == 0
