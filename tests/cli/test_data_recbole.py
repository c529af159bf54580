"""`recsys textualize recbole` on the committed full RecBole ML-100K (issue 16 item 4): typed
headers parsed, token_seq split, user features as profile text without the type suffixes.

    python -m pytest tests/cli/test_data_recbole.py -q
"""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from tests.conftest import FIXTURES, run_cli

ML = FIXTURES / "recbole" / "ml-100k"


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    out = tmp_path_factory.mktemp("ml") / "R"
    code, stdout, err = run_cli(
        "textualize", "recbole", "--dataset-dir", str(ML), "--out", str(out), "--json", "--quiet"
    )
    assert code == 0, err
    return out, json.loads(stdout)


def test_counts_reach_943_1682_100000(ml100k):
    out, s = ml100k
    assert (s["users"], s["items"], s["interactions"]) == (943, 1682, 100_000)
    assert s["source"] == "recbole" and s["has_reviews"]
    assert pl.read_parquet(out / schemas.SEQUENCES)["items"].list.len().sum() == 100_000
    man = json.loads((out / schemas.MANIFEST).read_text())
    assert {i["name"] for i in man["inputs"]} == {"ml-100k.inter", "ml-100k.item", "ml-100k.user"}


def test_profile_reads_like_features_without_type_suffixes(ml100k):
    out, _ = ml100k
    users = dict(pl.read_parquet(out / schemas.USERS).iter_rows())
    assert users["1"].startswith("user_1 profile: age 24; gender M; occupation technician; zip_code 85711.")
    assert users["2"].startswith("user_2 profile: age 53; gender F; occupation other;")
    corpus = pl.read_parquet(out / schemas.CORPUS)
    for name in (schemas.USERS, schemas.ITEMS, schemas.CORPUS, schemas.PROMPTS):
        for col in ("text", "source", "target"):
            df = pl.read_parquet(out / name)
            if col in df.columns:
                assert not df[col].str.contains(r":token|:float|token_seq").any(), (name, col)
    prof = corpus.filter((pl.col("user_id") == "1") & (pl.col("period") == "profile")).row(0, named=True)
    feats = {e["entity_id"] for e in prof["entities"] if e["kind"] == "feature"}
    assert {"feature:age=24", "feature:gender=m", "feature:occupation=technician"} <= feats


def test_token_seq_genres_become_categories_and_titles_stay_whole(ml100k):
    out, _ = ml100k
    items = pl.read_parquet(out / schemas.ITEMS)
    toy = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story" and toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert (
        items.filter(pl.col("item_id") == "246")["title"][0]
        == items.filter(pl.col("item_id") == "268")["title"][0]
        == "Chasing Amy"
    )
    assert items.filter(pl.col("item_id") == "267")["title"][0] == "unkonwn"  # kept as the data has it
    assert "Misérables, Les" in items["title"].to_list()


def test_timestamps_ratings_and_time_periods(ml100k):
    out, s = ml100k
    inter = pl.read_parquet(out / schemas.INTERACTIONS)
    assert inter["timestamp"].min() == 874724710 and inter["timestamp"].max() == 893286638
    assert set(inter["rating"].unique().to_list()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert any("cut by time" in n for n in s["notes"])
    fams = {r["family"] for r in s["prompts_by_family"]}
    assert {"sequential", "direct", "rating"} <= fams


def test_dataset_name_and_missing_side_files(tmp_path):
    d = tmp_path / "two"
    d.mkdir()
    shutil.copy(ML / "ml-100k.inter", d / "ml-100k.inter")
    lines = (ML / "ml-100k.inter").read_text().splitlines()
    (d / "small.inter").write_text("\n".join(lines[:2001]) + "\n")
    code, out, err = run_cli(
        "textualize",
        "recbole",
        "--dataset-dir",
        str(d),
        "--dataset",
        "small",
        "--out",
        str(tmp_path / "R"),
        "--json",
        "--quiet",
    )
    assert code == 0, err
    s = json.loads(out)
    assert 0 < s["interactions"] <= 2000 and s["filters"]["raw_rows"] == 2000
    assert any("no small.item" in n for n in s["notes"])
    assert pl.read_parquet(tmp_path / "R" / schemas.ITEMS)["title"].str.starts_with("item ").all()
