"""Strict parsing (issue 26, item 3): a row cut short, an empty key or a time that is not a
time is one `Error:` line naming the file and its line, exit code 2, and --out untouched;
swapped item/time columns are refused; a few implausible times are one warning line.

    python -m pytest tests/cli/test_strict_parsing.py -q

Every input is a small file written from the committed fixtures (RecBole ML-100K, the Gift
Cards table). --out is an earlier good run: each refused command must leave every one of its
files with the same sha256, and add none.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import polars as pl
import pytest

from tests.conftest import FIXTURES, GIFT_CARDS, run_cli

ML = FIXTURES / "recbole" / "ml-100k"
TABLE = FIXTURES / "table"
TABLE_ARGS = [
    "--user-col",
    "reviewerID",
    "--item-col",
    "asin",
    "--time-col",
    "unixReviewTime",
    "--rating-col",
    "overall",
]
ML_USERS = 20  # the first 20 users of ML-100K: about 2,000 rows, each user's whole history


def _ml_lines() -> list[str]:
    """Header + every row of ML-100K users 1..ML_USERS (tab-separated, file order kept)."""
    lines = (ML / "ml-100k.inter").read_text().splitlines()
    return [lines[0]] + [x for x in lines[1:] if int(x.split("\t")[0]) <= ML_USERS]


def _write_recbole(tmp_path, lines: list[str]):
    d = tmp_path / "rb"
    d.mkdir(exist_ok=True)
    (d / "ml.inter").write_text("\n".join(lines) + "\n")
    return ["recbole", "--dataset-dir", str(d)]


def _table_lines() -> list[str]:
    return (TABLE / "interactions.csv").read_text().splitlines()


def _write(tmp_path, name: str, lines: list[str]) -> str:
    (tmp_path / name).write_text("\n".join(lines) + "\n")
    return str(tmp_path / name)


def _hashes(folder) -> dict[str, str]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """An earlier good textualize run of the ML slice: the --out every refused command must leave alone."""
    base = tmp_path_factory.mktemp("good")
    out = base / "R"
    code, _, err = run_cli("textualize", *_write_recbole(base, _ml_lines()), "--out", str(out), "--quiet")
    assert code == 0, err
    return out


def refused(tmp_path, good_run, args: list[str], expect: list[str]) -> str:
    """`recsys textualize ARGS --out R` (R: a copy of a good run): exit 2, one Error line holding
    every `expect`, and every file of R as it was."""
    out = tmp_path / "R"
    shutil.copytree(good_run, out)
    before = _hashes(out)
    code, stdout, err = run_cli("textualize", *args, "--out", str(out), "--quiet")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (code, err)
    assert "Traceback" not in err and "internal error" not in err and stdout == ""
    for word in expect:
        assert word in lines[0], (word, lines[0])
    assert _hashes(out) == before
    return lines[0]


def test_recbole_row_cut_to_two_fields(tmp_path, good_run):
    lines = _ml_lines()
    lines[5] = "\t".join(lines[5].split("\t")[:2])  # file line 6: user and item, no rating, no timestamp
    refused(
        tmp_path,
        good_run,
        _write_recbole(tmp_path, lines),
        ["ml.inter, line 6:", "4 tab-separated fields", "user_id, item_id, rating, timestamp", "found 2"],
    )


def test_recbole_blank_lines_are_skipped_and_later_lines_keep_their_numbers(tmp_path, good_run):
    lines = _ml_lines()
    lines[9] = "\t".join(lines[9].split("\t")[:3])  # line 10, cut to 3 fields
    lines[3:3] = ["", ""]  # two blank lines: the cut row is now line 12
    refused(tmp_path, good_run, _write_recbole(tmp_path, lines), ["ml.inter, line 12:", "found 3"])


@pytest.mark.parametrize(
    "field, expect", [(0, "a non-empty user_id"), (1, "a non-empty item_id"), (3, "a time in 'timestamp'")]
)
def test_recbole_empty_field(tmp_path, good_run, field, expect):
    lines = _ml_lines()
    parts = lines[30].split("\t")
    parts[field] = " " if field == 1 else ""  # a key of spaces is as empty as no key
    lines[30] = "\t".join(parts)
    refused(tmp_path, good_run, _write_recbole(tmp_path, lines), ["ml.inter, line 31:", expect])


def test_recbole_timestamp_that_is_not_a_number(tmp_path, good_run):
    lines = _ml_lines()
    lines[40] = lines[40].rsplit("\t", 1)[0] + "\t1998-03-04"
    refused(
        tmp_path,
        good_run,
        _write_recbole(tmp_path, lines),
        ["ml.inter, line 41:", "'timestamp' as a number", "1998-03-04"],
    )


def test_recbole_header_with_item_and_timestamp_swapped(tmp_path, good_run):
    lines = _ml_lines()
    lines[0] = "user_id:token\ttimestamp:float\trating:float\titem_id:token"  # item ids read as times
    line = refused(
        tmp_path, good_run, _write_recbole(tmp_path, lines), ["ml.inter:", "'timestamp' looks like ids, not times"]
    )
    assert "before 1995-01-01" in line and "1970-01-01" in line and "timestamp:float" in line


def test_recbole_seconds_read_as_milliseconds(tmp_path, good_run):
    refused(
        tmp_path,
        good_run,
        [*_write_recbole(tmp_path, _ml_lines()), "--time-unit", "ms"],
        ["ml.inter:", "looks like ids, not times", "--time-unit"],
    )


def test_table_row_cut_short_names_its_line(tmp_path, good_run):
    lines = _table_lines()
    lines[7] = ",".join(lines[7].split(",")[:2])  # reviewerID, asin only
    path = _write(tmp_path, "inter.csv", lines)
    refused(
        tmp_path,
        good_run,
        ["table", "-i", path, *TABLE_ARGS],
        ["inter.csv, line 8:", "4 fields like the header (reviewerID, asin, unixReviewTime, overall); found 2"],
    )


def test_table_empty_item_and_unparsable_time(tmp_path, good_run):
    lines = _table_lines()
    parts = lines[11].split(",")
    lines[11] = ",".join([parts[0], "", *parts[2:]])
    path = _write(tmp_path, "inter.csv", lines)
    refused(
        tmp_path,
        good_run,
        ["table", "-i", path, *TABLE_ARGS],
        ["inter.csv, line 12 (row 11):", "a non-empty 'asin'", "--item-col"],
    )
    lines = _table_lines()
    parts = lines[20].split(",")
    lines[20] = ",".join([*parts[:2], "soon", parts[3]])
    path = _write(tmp_path, "inter.csv", lines)
    shutil.rmtree(tmp_path / "R")
    refused(
        tmp_path,
        good_run,
        ["table", "-i", path, *TABLE_ARGS],
        ["inter.csv, line 21 (row 20):", "'unixReviewTime'", "'soon'"],
    )


def test_table_jsonl_empty_user_and_missing_time(tmp_path, good_run):
    rows = pl.read_csv(TABLE / "interactions.csv").to_dicts()
    rows[4]["reviewerID"] = ""
    path = _write(tmp_path, "inter.jsonl", [json.dumps(r) for r in rows])
    refused(
        tmp_path,
        good_run,
        ["table", "-i", path, *TABLE_ARGS],
        ["inter.jsonl, line 5 (row 5):", "a non-empty 'reviewerID'"],
    )
    rows = pl.read_csv(TABLE / "interactions.csv").to_dicts()
    del rows[9]["unixReviewTime"]
    path = _write(tmp_path, "inter.jsonl", [json.dumps(r) for r in rows])
    shutil.rmtree(tmp_path / "R")
    refused(
        tmp_path,
        good_run,
        ["table", "-i", path, *TABLE_ARGS],
        ["inter.jsonl, line 10 (row 10):", "a time in 'unixReviewTime' on every row"],
    )


def test_table_item_and_time_columns_swapped(tmp_path, good_run):
    rows = [x.split("\t") for x in _ml_lines()[1:]]
    path = _write(tmp_path, "ratings.csv", ["user_id,item_id,rating,timestamp"] + [",".join(r) for r in rows])
    line = refused(
        tmp_path,
        good_run,
        ["table", "-i", path, "--item-col", "timestamp", "--time-col", "item_id"],
        ["ratings.csv:", "'item_id' looks like ids, not times", "check --time-col and --time-unit"],
    )
    assert f"of {len(rows):,} values (100%)" in line
    # the Gift Cards table swapped: asins as times name their first line (was an internal polars error)
    shutil.rmtree(tmp_path / "R")
    refused(
        tmp_path,
        good_run,
        [
            "table",
            "-i",
            str(TABLE / "interactions.csv"),
            "--user-col",
            "reviewerID",
            "--item-col",
            "unixReviewTime",
            "--time-col",
            "asin",
        ],
        ["interactions.csv, line 2 (row 1):", "'asin' as unix seconds or a date", "'B004LLIKVU'"],
    )


def test_table_item_column_that_is_a_row_id(tmp_path, good_run):
    df = pl.read_csv(TABLE / "interactions.csv").with_row_index("review_id")
    df.write_csv(tmp_path / "reviews.csv")
    refused(
        tmp_path,
        good_run,
        ["table", "-i", str(tmp_path / "reviews.csv"), "--user-col", "reviewerID", "--item-col", "review_id"],
        ["reviews.csv:", "'review_id' has a different value on each of its 536 rows", "check --item-col"],
    )


def test_amazon_review_without_time_among_timed_ones(tmp_path, good_run):
    d = tmp_path / "gc"
    d.mkdir()
    lines = (GIFT_CARDS / "Gift_Cards_5.json").read_text().splitlines()
    obj = json.loads(lines[6])
    del obj["unixReviewTime"]
    lines[6] = json.dumps(obj)
    (d / "Gift_Cards_5.json").write_text("\n".join(lines) + "\n")
    refused(
        tmp_path,
        good_run,
        ["amazon", "-c", "Gift_Cards", "--data-dir", str(d)],
        ["Gift_Cards_5.json, line 7:", "a time in 'unixReviewTime' on every row"],
    )


def test_a_few_times_before_1995_give_one_warning_and_a_run(tmp_path):
    df = pl.read_csv(TABLE / "interactions.csv")
    old = df.with_columns(
        pl.when(pl.int_range(pl.len()).is_in([3, 9]))
        .then(pl.lit(631_152_000))  # 1990-01-01
        .otherwise(pl.col("unixReviewTime"))
        .alias("unixReviewTime")
    )
    old.write_csv(tmp_path / "old.csv")
    out = tmp_path / "R"
    code, stdout, err = run_cli(
        "textualize", "table", "-i", str(tmp_path / "old.csv"), *TABLE_ARGS, "--out", str(out), "--quiet", "--json"
    )
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith(
        f"warning: {tmp_path / 'old.csv'}: 2 of 536 times in 'unixReviewTime' (0.4%) fall before 1995-01-01"
    )
    assert "line 5 (row 4): 631152000 = 1990-01-01" in lines[0]
    assert any(n.startswith("warning: ") and "2 of 536" in n for n in json.loads(stdout)["notes"])
    assert pl.read_parquet(out / "interactions.parquet")["timestamp"].min() == 631_152_000  # kept as they are


def test_nearly_unique_item_column_warns(tmp_path):
    df = pl.read_csv(TABLE / "interactions.csv").with_row_index("k")
    # every review its own item but the first 20, which share 4 items: 520 distinct in 536 rows
    shared = pl.when(pl.col("k") < 20).then(pl.col("k") % 4).otherwise(pl.col("k"))
    df = df.with_columns(shared.cast(pl.Utf8).alias("asin"))
    df.drop("k").write_csv(tmp_path / "many.csv")
    code, _, err = run_cli(
        "textualize", "table", "-i", str(tmp_path / "many.csv"), *TABLE_ARGS, "--out", str(tmp_path / "R"), "--quiet"
    )
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 0 and len(lines) == 1, err
    assert lines[0].startswith(f"warning: {tmp_path / 'many.csv'}: 'asin' has 520 distinct values in 536 rows (97.0%)")
    assert "check --item-col" in lines[0]


def test_refused_input_never_creates_out(tmp_path):
    lines = _ml_lines()
    lines[5] = "\t".join(lines[5].split("\t")[:2])
    code, _, err = run_cli("textualize", *_write_recbole(tmp_path, lines), "--out", str(tmp_path / "new"), "--quiet")
    assert code == 2 and err.count("\n") == 1 and "line 6" in err
    assert not (tmp_path / "new").exists()
