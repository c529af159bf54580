"""Bad input: one `Error:` line naming file / line / expectation, non-zero exit, no output dir."""

from __future__ import annotations

import gzip
import shutil

import pytest

from tests.conftest import FIXTURES, MUSICAL, TOYS, run_cli


def _toys_copy(tmp_path):
    d = tmp_path / "toys"
    d.mkdir()
    for name in ("sequential_data.txt", "datamaps.json", "meta.jsonl"):
        shutil.copy(TOYS / name, d / name)
    return d


def _fails(tmp_path, *args, expect: list[str]):
    out = tmp_path / "R"
    code, stdout, err = run_cli("textualize", *args, "--out", str(out), "--quiet")
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for word in expect:
        assert word in lines[0], lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".R.")]  # no temp dir left
    return lines[0]


def test_missing_data_dir(tmp_path):
    _fails(tmp_path, "amazon", "--category", "toys", "--data-dir", str(tmp_path / "nope"), expect=["nope", "not found"])


def test_missing_datamaps(tmp_path):
    d = _toys_copy(tmp_path)
    (d / "datamaps.json").unlink()
    _fails(tmp_path, "amazon", "--category", "toys", "--data-dir", str(d), expect=["datamaps.json", "file not found"])


def test_unknown_item_in_sequence(tmp_path):
    d = _toys_copy(tmp_path)
    with open(d / "sequential_data.txt", "a") as fh:
        fh.write("99999 1 2 999999\n")
    line = _fails(
        tmp_path, "amazon", "--category", "toys", "--data-dir", str(d), expect=["sequential_data.txt", "line 301"]
    )
    assert "999999" in line or "99999" in line


def test_empty_sequences(tmp_path):
    d = _toys_copy(tmp_path)
    (d / "sequential_data.txt").write_text("")
    _fails(tmp_path, "amazon", "--category", "toys", "--data-dir", str(d), expect=["sequential_data.txt", "empty"])


def test_malformed_json_line_in_meta(tmp_path):
    d = _toys_copy(tmp_path)
    lines = (d / "meta.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-5]
    (d / "meta.jsonl").write_text("\n".join(lines) + "\n")
    _fails(tmp_path, "amazon", "--category", "toys", "--data-dir", str(d), expect=["meta.jsonl", "line 5", "JSON"])


def test_malformed_json_line_in_gz_reviews(tmp_path):
    d = tmp_path / "mi"
    d.mkdir()
    lines = gzip.open(MUSICAL / "reviews_Musical_Instruments_5.json.gz", "rt").read().splitlines()
    lines[9] = '{"reviewerID": "A1", "asin": '
    with gzip.open(d / "reviews_Musical_Instruments_5.json.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    _fails(
        tmp_path,
        "amazon",
        "--category",
        "Musical_Instruments",
        "--data-dir",
        str(d),
        expect=["reviews_Musical_Instruments_5.json.gz", "line 10"],
    )


def test_undecodable_bytes(tmp_path):
    d = _toys_copy(tmp_path)
    data = (d / "sequential_data.txt").read_bytes().splitlines(keepends=True)
    data[2] = b"3 13 \xff\xfe 14\n"
    (d / "sequential_data.txt").write_bytes(b"".join(data))
    _fails(
        tmp_path,
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(d),
        expect=["sequential_data.txt", "line 3", "UTF-8"],
    )


def test_empty_review_file(tmp_path):
    d = tmp_path / "gc"
    d.mkdir()
    (d / "Gift_Cards_5.json").write_text("\n")
    _fails(tmp_path, "amazon", "--category", "Gift_Cards", "--data-dir", str(d), expect=["Gift_Cards_5.json", "empty"])


@pytest.mark.parametrize("category", ["Garden_Gnomes", "../etc"])
def test_unknown_category(tmp_path, category):
    _fails(tmp_path, "amazon", "--category", category, "--data-dir", str(MUSICAL), expect=["unknown category"])


def test_existing_output_is_kept_when_a_run_fails(tmp_path):
    out = tmp_path / "R"
    assert (
        run_cli(
            "textualize",
            "amazon",
            "--category",
            "toys",
            "--data-dir",
            str(FIXTURES / "amazon" / "toys_meta2014"),
            "--out",
            str(out),
            "--quiet",
        )[0]
        == 0
    )
    before = sorted(p.name for p in out.iterdir())
    code, _, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(tmp_path / "missing"),
        "--out",
        str(out),
        "--quiet",
    )
    assert code != 0 and err.startswith("Error: ")
    assert sorted(p.name for p in out.iterdir()) == before


def test_table_missing_column_and_bad_value(tmp_path):
    src = FIXTURES / "table" / "interactions.csv"
    _fails(
        tmp_path,
        "table",
        "--interactions",
        str(src),
        "--user-col",
        "user",
        expect=["interactions.csv", "header", "'user'"],
    )
    bad = tmp_path / "bad.csv"
    lines = src.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",five"
    bad.write_text("\n".join(lines) + "\n")
    _fails(
        tmp_path,
        "table",
        "--interactions",
        str(bad),
        "--user-col",
        "reviewerID",
        "--item-col",
        "asin",
        "--time-col",
        "unixReviewTime",
        "--rating-col",
        "overall",
        expect=["bad.csv", "row 5", "overall"],
    )
    _fails(tmp_path, "table", "--interactions", str(tmp_path / "none.csv"), expect=["none.csv", "file not found"])
    empty = tmp_path / "empty.csv"
    empty.write_text("reviewerID,asin\n")
    _fails(
        tmp_path,
        "table",
        "--interactions",
        str(empty),
        "--user-col",
        "reviewerID",
        "--item-col",
        "asin",
        expect=["empty.csv", "empty"],
    )
