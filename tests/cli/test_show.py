"""`recsys show`: answers beside references, and one user's history beside their top-k.

python -m pytest tests/cli/test_show.py -q
"""

from __future__ import annotations

import json

import polars as pl

from recsys_cli.data import split as loo
from tests.conftest import run_cli


def _popularity(data, tmp_path):
    out = tmp_path / "pop.parquet"
    code, _, err = run_cli(
        "baseline", "popularity", "--data", str(data), "--out", str(out), "--top-k", "5", "--quiet", "--json"
    )
    assert code == 0, err
    return out


def test_user_view_shows_real_history_and_the_ranked_titles(toys_data, tmp_path):
    pred = _popularity(toys_data, tmp_path)
    code, out, err = run_cli(
        "show", "user", "--data", str(toys_data), "-p", str(pred), "-k", "3", "--history", "4", "--json"
    )
    assert code == 0, err
    view = json.loads(out)
    first = pl.read_parquet(pred).filter(pl.col("ranked").list.len() > 0).row(0, named=True)
    prompts = (
        pl.read_parquet(toys_data / "prompts.parquet")
        .filter(pl.col("prompt_id") == first["prompt_id"])
        .row(0, named=True)
    )
    seq = (
        pl.read_parquet(toys_data / "sequences.parquet")
        .filter(pl.col("user_id") == prompts["user_id"])["items"][0]
        .to_list()
    )
    titles = dict(pl.read_parquet(toys_data / "items.parquet").select("item_id", "title").iter_rows())
    past = loo.history(seq, prompts["split"], prompts["item_id"])
    assert view["user_id"] == prompts["user_id"] and view["history_length"] == len(past)
    assert view["history_titles"] == [titles[i] for i in past[-4:]]
    assert view["top_titles"] == [titles[i] for i in first["ranked"][:3]]
    code, text, _ = run_cli("show", "user", "--data", str(toys_data), "-p", str(pred), "-k", "3")
    assert code == 0 and view["top_titles"][0][:20] in text and "held-out next item" in text


def test_answers_pair_output_with_reference_and_bad_family_is_one_line(toys_data, tmp_path):
    pred = _popularity(toys_data, tmp_path)
    code, out, err = run_cli(
        "show", "answers", "--data", str(toys_data), "-p", str(pred), "--family", "direct", "-n", "2", "--json"
    )
    assert code == 0, err
    rows = json.loads(out)
    prompts = pl.read_parquet(toys_data / "prompts.parquet")
    assert len(rows) == 2 and all(r["family"] == "direct" for r in rows)
    for r in rows:
        p = prompts.filter(pl.col("prompt_id") == r["prompt_id"]).row(0, named=True)
        assert r["prompt"] == p["source"] and r["reference"] == p["target"] and len(r["top_titles"]) == 5
    code, _, err = run_cli("show", "answers", "--data", str(toys_data), "-p", str(pred), "--family", "rating")
    assert code != 0 and "no answered prompt of family rating" in err and "Traceback" not in err
