"""`recsys baseline mean` and `recsys baseline retrieval` on the real Gift Cards 2018 slice:
answers come from training interactions only.

    python -m pytest tests/cli/test_text_baselines.py -q
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.conftest import FIXTURES, run_cli


@pytest.fixture(scope="module")
def gift(tmp_path_factory):
    out = tmp_path_factory.mktemp("gift") / "R"
    code, _, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "gift_cards",
        "--data-dir",
        str(FIXTURES / "amazon" / "gift_cards"),
        "--out",
        str(out),
        "--seed",
        "0",
        "--quiet",
    )
    assert code == 0, err
    return out


def _held_pairs(data) -> set[tuple[str, str]]:
    p = pl.read_parquet(data / "prompts.parquet").filter(pl.col("split").is_in(["valid", "test"]))
    return set(zip(p["user_id"], p["item_id"]))


def _run(data, *args):
    code, out, err = run_cli("baseline", *args, "--data", str(data), "--quiet", "--json")
    assert code == 0, err
    return json.loads(out)


def test_user_mean_is_the_mean_of_the_users_training_ratings(gift):
    summary = _run(gift, "mean", "--by", "user")
    held = _held_pairs(gift)
    inter = pl.read_parquet(gift / "interactions.parquet")
    train = [
        r for r in inter.iter_rows(named=True) if (r["user_id"], r["item_id"]) not in held and r["rating"] is not None
    ]
    mu = sum(r["rating"] for r in train) / len(train)
    assert summary["global_mean"] == pytest.approx(mu, abs=1e-4)
    preds = pl.read_parquet(summary["out"]).join(pl.read_parquet(gift / "prompts.parquet"), on="prompt_id")
    stars = preds.filter(~pl.col("output").is_in(["yes", "no"]))
    assert stars.height > 0
    for r in stars.head(20).iter_rows(named=True):
        own = [t["rating"] for t in train if t["user_id"] == r["user_id"]]
        assert float(r["output"]) == pytest.approx(sum(own) / len(own) if own else mu, abs=0.006)
    g = _run(gift, "mean", "--by", "global")
    assert set(pl.read_parquet(g["out"]).filter(~pl.col("output").is_in(["yes", "no"]))["output"]) == {f"{mu:.2f}"}


def test_retrieval_answers_with_the_users_own_training_text(gift):
    summary = _run(gift, "retrieval")
    held = _held_pairs(gift)
    inter = pl.read_parquet(gift / "interactions.parquet")
    train = inter.filter(
        ~pl.struct("user_id", "item_id").map_elements(
            lambda s: (s["user_id"], s["item_id"]) in held, return_dtype=pl.Boolean
        )
    )
    preds = pl.read_parquet(summary["out"]).join(pl.read_parquet(gift / "prompts.parquet"), on="prompt_id")
    expl = preds.filter(pl.col("family") == "explanation")
    assert expl.height > 0
    own = 0
    for r in expl.iter_rows(named=True):
        mine = set(train.filter(pl.col("user_id") == r["user_id"])["explanation"].drop_nulls())
        assert r["output"] in (mine or set(train["explanation"].drop_nulls()))
        own += bool(mine)
    assert expl.height - own <= summary["prompts_without_own_texts"]  # only users without own texts fall back
    code, _, err = run_cli("baseline", "mean", "--data", str(gift), "--by", "median")
    assert code == 2 and "expected global or user" in err and "Traceback" not in err
