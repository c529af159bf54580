"""`recsys textualize table` on the committed table fixture (derived from real Gift Cards data)."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl

from recsys_cli.artifacts import schemas
from tests.conftest import FIXTURES, run_cli

TABLE = FIXTURES / "table"
ARGS = [
    "--interactions",
    str(TABLE / "interactions.csv"),
    "--items",
    str(TABLE / "items.csv"),
    "--users",
    str(TABLE / "users.csv"),
    "--user-col",
    "reviewerID",
    "--item-col",
    "asin",
    "--time-col",
    "unixReviewTime",
    "--rating-col",
    "overall",
    "--category-col",
    "category",
]


def test_table_with_user_features(tmp_path):
    out = tmp_path / "R"
    code, stdout, err = run_cli("textualize", "table", *ARGS, "--out", str(out), "--json", "--quiet")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["source"] == "table" and s["users"] == 80 and s["items"] == 129 and s["interactions"] == 536
    fams = {r["family"] for r in s["prompts_by_family"]}
    assert fams == {"sequential", "direct", "rating"}  # ratings but no review text
    users = pl.read_parquet(out / schemas.USERS)
    row = users.filter(pl.col("user_id") == "A10PEXB6XAQ5XF")["text"][0]
    assert "verified yes" in row and "first_year 2015" in row and "favourite_amount 50" in row
    prof = pl.read_parquet(out / schemas.CORPUS).filter(
        (pl.col("period") == "profile") & (pl.col("user_id") == "A10PEXB6XAQ5XF")
    )
    text, ents = prof.row(0)[3], prof.row(0)[4]
    feats = {e["entity_id"]: text[e["start"] : e["end"]] for e in ents if e["kind"] == "feature"}
    assert feats == {
        "feature:verified=yes": "yes",
        "feature:first_year=2015": "2015",
        "feature:favourite_amount=50": "50",
    }
    items = pl.read_parquet(out / schemas.ITEMS)
    assert items.filter(pl.col("item_id") == "B004Q7CK9M")["categories"][0].to_list() == ["Gift Cards"]
    assert items["price"].drop_nulls().len() > 0


def test_table_parquet_input_matches_csv(tmp_path):
    pq = tmp_path / "inter.parquet"
    pl.read_csv(TABLE / "interactions.csv").write_parquet(pq)
    args = [a if a != str(TABLE / "interactions.csv") else str(pq) for a in ARGS]
    assert run_cli("textualize", "table", *args, "--out", str(tmp_path / "P"), "--quiet")[0] == 0
    assert run_cli("textualize", "table", *ARGS, "--out", str(tmp_path / "C"), "--quiet")[0] == 0
    for name in (schemas.SEQUENCES, schemas.PROMPTS, schemas.CORPUS):
        assert (tmp_path / "P" / name).read_bytes() == (tmp_path / "C" / name).read_bytes()


def test_textualize_run_does_not_import_torch(tmp_path):
    probe = (
        "import sys\nfrom recsys_cli.main import main\n"
        f"try:\n    main(['textualize', 'table', *{ARGS!r}, '--out', {str(tmp_path / 'R')!r}, '--quiet'])\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert (tmp_path / "R" / schemas.PROMPTS).is_file()


def test_table_date_strings_and_bad_date(tmp_path):
    df = pl.read_csv(TABLE / "interactions.csv")
    dated = df.with_columns(when=pl.from_epoch("unixReviewTime", time_unit="s").dt.strftime("%Y-%m-%d")).drop(
        "unixReviewTime"
    )
    dated.write_csv(tmp_path / "dated.csv")
    base = [
        "--interactions",
        str(tmp_path / "dated.csv"),
        "--user-col",
        "reviewerID",
        "--item-col",
        "asin",
        "--time-col",
        "when",
        "--rating-col",
        "overall",
    ]
    code, out, err = run_cli("textualize", "table", *base, "--out", str(tmp_path / "R"), "--quiet", "--json")
    assert code == 0, err
    assert pl.read_parquet(tmp_path / "R" / schemas.INTERACTIONS)["timestamp"].null_count() == 0
    dated.with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("someday")).otherwise(pl.col("when")).alias("when")
    ).write_csv(tmp_path / "dated.csv")
    code, _, err = run_cli("textualize", "table", *base, "--out", str(tmp_path / "S"), "--quiet")
    assert code != 0 and err.startswith("Error: ") and "row 8" in err and "someday" in err
    assert not (tmp_path / "S").exists()
