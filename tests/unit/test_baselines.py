"""Baselines on small hand-made artifact directories (the contract's schemas).

python -m pytest tests/unit/test_baselines.py
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import file_records, write_json, write_parquet
from recsys_cli.baselines import itemknn, popularity
from recsys_cli.baselines.context import load_context, per_user, rank_prompts


def make_data(tmp_path, sequences: dict[str, list[str]], items: list[str], direct: dict[str, list[str]] | None = None):
    """Write items / sequences / prompts (one sequential test prompt per user, plus direct
    prompts with the given candidates) in the contract's schemas."""
    write_parquet(
        pl.DataFrame({"item_id": items, "title": items}),
        tmp_path / schemas.ITEMS,
        {"item_id": pl.Utf8, "title": pl.Utf8},
    )
    write_parquet(
        pl.DataFrame({"user_id": list(sequences), "items": list(sequences.values())}), tmp_path / schemas.SEQUENCES
    )
    rows = []
    for user, seq in sequences.items():
        for split, target in (("test", seq[-1]), ("valid", seq[-2])):
            rows.append(
                {
                    "prompt_id": f"s-{split}-{user}",
                    "family": "sequential",
                    "template_id": "sequential-1",
                    "seen": True,
                    "split": split,
                    "user_id": user,
                    "item_id": target,
                    "source": "",
                    "target": target,
                    "candidates": None,
                }
            )
        if direct and user in direct:
            rows.append(
                {
                    "prompt_id": f"d-test-{user}",
                    "family": "direct",
                    "template_id": "direct-1",
                    "seen": False,
                    "split": "test",
                    "user_id": user,
                    "item_id": seq[-1],
                    "source": "",
                    "target": seq[-1],
                    "candidates": direct[user],
                }
            )
    schema = {c: schemas.PROMPTS_SCHEMA[c] for c in rows[0]}
    write_parquet(pl.DataFrame(rows, schema=schema), tmp_path / schemas.PROMPTS, schema)
    return as_run(tmp_path)


def as_run(data):
    """The manifest.json commands need to read a run directory (artifacts/io.py check_run_file)."""
    names = [n for n in schemas.TEXTUALIZE_FILES if (data / n).is_file()]
    write_json({"command": "textualize (test data)", "files": file_records(data, names)}, data / schemas.MANIFEST)
    return data


def test_context_leave_one_out(tmp_path):
    data = make_data(tmp_path, {"u1": ["a", "b", "c", "d"]}, ["a", "b", "c", "d", "e"])
    test, valid = load_context(data, "test"), load_context(data, "valid")
    assert test.histories["u1"] == ["a", "b", "c"] and valid.histories["u1"] == ["a", "b"]
    assert test.train["u1"] == ["a", "b"] and test.items == ["a", "b", "c", "d", "e"]


def test_popularity_hand_computed(tmp_path):
    seqs = {"u1": ["a", "b", "c", "x"], "u2": ["b", "c", "b", "y"], "u3": ["c", "b", "a", "z"]}
    data = make_data(tmp_path, seqs, ["a", "b", "c", "x", "y", "z"], direct={"u1": ["x", "a", "b", "q"]})
    ctx = load_context(data, "test")
    # test histories: abc, bcb, cba -> b:4, c:3, a:2
    counts = dict(zip(ctx.items, popularity.popularity_scores(ctx)))
    assert counts == {"a": 2, "b": 4, "c": 3, "x": 0, "y": 0, "z": 0}
    df = rank_prompts(ctx, per_user(popularity.scorer(ctx)), k=3, exclude_history=False)
    assert df.schema == pl.Schema(schemas.PREDICTIONS_SCHEMA)
    seq = df.filter(pl.col("prompt_id") == "s-test-u1").row(0, named=True)
    assert seq["ranked"] == ["b", "c", "a"] and seq["output"] == "b" and seq["valid"]
    assert seq["scores"] == [4.0, 3.0, 2.0]
    excluded = rank_prompts(ctx, per_user(popularity.scorer(ctx)), k=3)  # u2 bought b, c: they are left out
    assert excluded.filter(pl.col("prompt_id") == "s-test-u2")["ranked"].to_list() == [["a", "x", "y"]]
    direct = excluded.filter(pl.col("prompt_id") == "d-test-u1").row(0, named=True)
    # candidates: b (4) > a (2) > x (0); the unknown id q goes last
    assert direct["ranked"] == ["b", "a", "x", "q"]
    assert direct["scores"][-1] == -math.inf


def test_itemknn_hand_computed(tmp_path):
    seqs = {
        "u1": ["a", "b", "p", "p"],
        "u2": ["a", "c", "p", "p"],
        "u3": ["a", "b", "p", "p"],
        "u4": ["d", "e", "p", "p"],
    }
    data = make_data(tmp_path, seqs, ["a", "b", "c", "d", "e", "p"])
    ctx = load_context(data, "valid")  # histories: ab, ac, ab, de
    sim = itemknn.similarity(ctx).toarray()
    i = ctx.index
    # a in 3 users, b in 2, c in 1; co(a,b) = 2, co(a,c) = 1
    assert sim[i["a"], i["b"]] == pytest.approx(2 / math.sqrt(3 * 2))
    assert sim[i["a"], i["c"]] == pytest.approx(1 / math.sqrt(3 * 1))
    assert sim[i["a"], i["a"]] == 0 and sim[i["a"], i["d"]] == 0
    score = itemknn.scorer(ctx)("u2")  # history a, c: b gets sim(a,b) + sim(c,b) = 0.816 + 0
    assert score[i["b"]] == pytest.approx(2 / math.sqrt(6), rel=1e-5)
    assert int(np.argmax(score)) == i["b"]


def test_unknown_user_gets_empty_invalid_row(tmp_path):
    data = make_data(tmp_path, {"u1": ["a", "b", "c"]}, ["a", "b", "c"])
    ctx = load_context(data, "test")
    ctx.sequences.pop("u1")
    ctx.histories.pop("u1")
    df = rank_prompts(ctx, per_user(popularity.scorer(ctx)))
    assert df["ranked"].to_list() == [[]] and df["valid"].to_list() == [False]


def test_sasrec_learns_a_deterministic_successor_and_is_seeded(tmp_path):
    from recsys_cli.baselines.sasrec import SASRecConfig
    from recsys_cli.baselines.sasrec_train import fit

    n_items = 12
    items = [f"i{k:02d}" for k in range(n_items)]
    # every user walks the ring i00 -> i01 -> ... so the next item is always the successor
    seqs = {f"u{u:03d}": [items[(u + k) % n_items] for k in range(8)] for u in range(60)}
    data = make_data(tmp_path, seqs, items)
    ctx = load_context(data, "test")
    cfg = SASRecConfig(
        hidden=16,
        blocks=1,
        max_len=4,
        dropout=0.0,
        lr=1e-2,
        batch_size=32,
        max_epochs=20,
        patience=20,
        seed=0,
        threads=1,
    )
    first = rank_prompts(ctx, fit(ctx, cfg, "test").score, k=5)
    truth = dict(zip(ctx.prompts["prompt_id"], ctx.prompts["item_id"]))
    top1 = np.mean([r[0] == truth[p] for p, r in zip(first["prompt_id"], first["ranked"])])
    assert top1 > 0.8
    again = rank_prompts(ctx, fit(ctx, cfg, "test").score, k=5)
    assert first.equals(again)


def test_sasrec_sampled_softmax_learns_too():
    from recsys_cli.baselines.sasrec import SASRecConfig
    from recsys_cli.baselines.sasrec_train import train

    seqs = [[(u + k) % 12 + 1 for k in range(8)] for u in range(60)]  # ring of 12 items, ids 1..12
    cfg = SASRecConfig(
        hidden=16,
        blocks=1,
        max_len=4,
        dropout=0.0,
        lr=1e-2,
        batch_size=32,
        max_epochs=15,
        patience=15,
        seed=0,
        threads=1,
        negatives=5,
    )
    _, history = train(seqs, 12, cfg)
    assert history[0]["valid_HR@5"] < 0.9 and max(r["valid_HR@5"] for r in history) == 1.0


def test_mf_fits_ratings_and_answers_like_prompts(tmp_path):
    from recsys_cli.baselines.mf import MFConfig, fit_predict

    rng = np.random.default_rng(0)
    users, items = [f"u{k}" for k in range(30)], [f"i{k}" for k in range(20)]
    ub, ib = rng.normal(0, 0.8, 30), rng.normal(0, 0.8, 20)
    rows = [
        (u, i, float(np.clip(round(3.5 + ub[a] + ib[b]), 1, 5)))
        for a, u in enumerate(users)
        for b, i in enumerate(items)
        if rng.random() < 0.6
    ]
    inter = pl.DataFrame(rows, schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "rating": pl.Float64}, orient="row")
    write_parquet(
        inter, tmp_path / schemas.INTERACTIONS, {"user_id": pl.Utf8, "item_id": pl.Utf8, "rating": pl.Float64}
    )
    held = inter.sample(40, seed=0)
    prompts = held.with_columns(
        pl.format("r{}", pl.int_range(pl.len())).alias("prompt_id"),
        pl.lit("rating").alias("family"),
        pl.lit("rating-1").alias("template_id"),
        pl.lit(True).alias("seen"),
        pl.when(pl.int_range(pl.len()) < 20).then(pl.lit("valid")).otherwise(pl.lit("test")).alias("split"),
        pl.col("rating").cast(pl.Int64).cast(pl.Utf8).alias("target"),
    )
    like = (
        prompts.filter(pl.col("split") == "test")
        .head(5)
        .with_columns(
            (pl.col("prompt_id") + "-like").alias("prompt_id"),
            pl.lit("rating-5").alias("template_id"),
            pl.when(pl.col("rating") >= 4).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("target"),
        )
    )
    cols = ["prompt_id", "family", "template_id", "seen", "split", "user_id", "item_id", "target"]
    write_parquet(
        pl.concat([prompts.select(cols), like.select(cols)]),
        tmp_path / schemas.PROMPTS,
        {c: schemas.PROMPTS_SCHEMA[c] for c in cols},
    )
    as_run(tmp_path)
    df, summary = fit_predict(tmp_path, "test", MFConfig(seed=0, threads=1))
    assert summary["train_ratings"] == inter.height - 40  # held-out pairs never trained on
    test = prompts.filter(pl.col("split") == "test").sort("prompt_id")
    pred = df.filter(~pl.col("prompt_id").str.ends_with("-like")).sort("prompt_id")
    err = pred["output"].cast(pl.Float64).to_numpy() - test["rating"].to_numpy()
    base = test["rating"].to_numpy() - inter["rating"].mean()
    assert np.sqrt(np.mean(err**2)) < np.sqrt(np.mean(base**2))  # beats the global mean
    assert set(df.filter(pl.col("prompt_id").str.ends_with("-like"))["output"]) <= {"yes", "no"}
    again, _ = fit_predict(tmp_path, "test", MFConfig(seed=0, threads=1))
    assert df.equals(again)
