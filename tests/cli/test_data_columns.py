"""`textualize table`: every option that names a column must name an existing column; the
optional ones default to the conventional name only when it is present (issue 11 item 4).

    python -m pytest tests/cli/test_data_columns.py -q
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from tests.cli.test_data_errors import IDS, TABLE, fails
from tests.conftest import run_cli

INTER = ["-i", str(TABLE / "interactions.csv")]
FOUND_INTER = "reviewerID, asin, unixReviewTime, overall"


@pytest.mark.parametrize(
    "option,value,table,found",
    [
        ("--rating-col", "stars", INTER, FOUND_INTER),
        ("--time-col", "ts", INTER, FOUND_INTER),
        ("--review-col", "text", INTER, FOUND_INTER),
        ("--title-col", "name", [*INTER, "--items", str(TABLE / "items.csv")], "asin, title, category, brand, price"),
        (
            "--category-col",
            "genres",
            [*INTER, "--items", str(TABLE / "items.csv")],
            "asin, title, category, brand, price",
        ),
        (
            "--user-features",
            "age,sex",
            [*INTER, "--users", str(TABLE / "users.csv")],
            "reviewerID, verified, first_year, favourite_amount",
        ),
    ],
)
def test_a_named_column_that_is_missing_is_an_error_listing_the_columns(tmp_path, option, value, table, found):
    line = fails(tmp_path, "table", *table, *IDS, option, value, expect=[option, value, "no such column", found])
    assert "header" in line


def test_item_and_user_options_need_their_table(tmp_path):
    fails(tmp_path, "table", *INTER, *IDS, "--title-col", "title", expect=["--title-col", "no --items"])
    fails(tmp_path, "table", *INTER, *IDS, "--user-features", "verified", expect=["--user-features", "no --users"])
    fails(
        tmp_path,
        "table",
        *INTER,
        "--user-col",
        "reviewer",
        "--item-col",
        "asin",
        expect=["--user-col", "'reviewer'", FOUND_INTER],
    )


def test_conventional_names_are_used_only_when_present(tmp_path):
    df = pl.read_csv(TABLE / "interactions.csv").rename(
        {"reviewerID": "user_id", "asin": "item_id", "unixReviewTime": "timestamp", "overall": "rating"}
    )
    df.write_csv(tmp_path / "conv.csv")
    code, out, err = run_cli(
        "textualize", "table", "-i", str(tmp_path / "conv.csv"), "--out", str(tmp_path / "A"), "--json", "--quiet"
    )
    assert code == 0, err
    s = json.loads(out)
    assert {r["family"] for r in s["prompts_by_family"]} >= {"rating"}  # 'rating' found without --rating-col
    inter = pl.read_parquet(tmp_path / "A" / schemas.INTERACTIONS)
    assert inter["timestamp"].null_count() == 0 and inter["rating"].null_count() == 0
    # without the conventional columns nothing is required: no ratings, no timestamps
    df.select("user_id", "item_id").write_csv(tmp_path / "ids.csv")
    code, out, err = run_cli(
        "textualize", "table", "-i", str(tmp_path / "ids.csv"), "--out", str(tmp_path / "B"), "--json", "--quiet"
    )
    assert code == 0, err
    assert pl.read_parquet(tmp_path / "B" / schemas.INTERACTIONS)["timestamp"].null_count() == 536
    assert any("cut by position" in n for n in json.loads(out)["notes"])


def test_explicit_user_features_pick_only_those(tmp_path):
    code, _, err = run_cli(
        "textualize",
        "table",
        *INTER,
        "--users",
        str(TABLE / "users.csv"),
        *IDS,
        "--user-features",
        "first_year",
        "--out",
        str(tmp_path / "R"),
        "--quiet",
    )
    assert code == 0, err
    text = pl.read_parquet(tmp_path / "R" / schemas.USERS).filter(pl.col("user_id") == "A10PEXB6XAQ5XF")["text"][0]
    assert "first_year 2015" in text and "verified" not in text and "favourite_amount" not in text
