"""Bad user input is one `Error:` line naming the file and the line or row, a non-zero exit,
no output directory and never "internal error" (issue 11, input validation).

    python -m pytest tests/cli/test_data_errors.py -q
"""

from __future__ import annotations

import json

import polars as pl

from tests.conftest import FIXTURES, run_cli

TABLE = FIXTURES / "table"
IDS = ["--user-col", "reviewerID", "--item-col", "asin"]


def fails(tmp_path, *args: str, expect: list[str]) -> str:
    """Run `recsys textualize ARGS --out tmp/R`: one Error line holding every `expect`."""
    out = tmp_path / "R"
    code, _, err = run_cli("textualize", *args, "--out", str(out), "--quiet")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for word in expect:
        assert word in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def _csv_lines():
    return (TABLE / "interactions.csv").read_text().splitlines()


def test_list_valued_item_title_jsonl_and_parquet(tmp_path):
    rows = [{"asin": "B004LLIKVU", "title": ["Amazon", "eGift Card"]}, {"asin": "B004Q7CK9M", "title": ["Gift"]}]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fails(
        tmp_path,
        "table",
        "-i",
        str(TABLE / "interactions.csv"),
        "--items",
        str(tmp_path / "items.jsonl"),
        *IDS,
        expect=["items.jsonl", "row 1", "'title'", "a list"],
    )
    pl.DataFrame(rows).write_parquet(tmp_path / "items.parquet")
    fails(
        tmp_path,
        "table",
        "-i",
        str(TABLE / "interactions.csv"),
        "--items",
        str(tmp_path / "items.parquet"),
        *IDS,
        expect=["items.parquet", "row 1", "'title'"],
    )


def test_list_valued_user_id_and_feature(tmp_path):
    inter = pl.read_csv(TABLE / "interactions.csv").with_columns(pl.concat_list("reviewerID").alias("reviewerID"))
    inter.write_parquet(tmp_path / "inter.parquet")
    fails(
        tmp_path,
        "table",
        "-i",
        str(tmp_path / "inter.parquet"),
        *IDS,
        expect=["inter.parquet", "row 1", "'reviewerID'"],
    )
    users = pl.read_csv(TABLE / "users.csv").with_columns(pl.concat_list("verified").alias("verified"))
    users.write_parquet(tmp_path / "users.parquet")
    fails(
        tmp_path,
        "table",
        "-i",
        str(TABLE / "interactions.csv"),
        "--users",
        str(tmp_path / "users.parquet"),
        *IDS,
        expect=["users.parquet", "'verified'", "a list"],
    )


def test_csv_with_an_open_quote_names_its_line(tmp_path):
    lines = _csv_lines()
    lines[7] = lines[7] + ',"left open'
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    line = fails(tmp_path, "table", "-i", str(tmp_path / "bad.csv"), *IDS, expect=["bad.csv", "line 8", "quote"])
    assert "row_offset" not in line and "chunk" not in line


def test_csv_quote_opened_inside_a_field(tmp_path):
    lines = _csv_lines()
    lines[4] = '"' + lines[4]
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    fails(tmp_path, "table", "-i", str(tmp_path / "bad.csv"), *IDS, expect=["bad.csv", "line 5"])


def test_non_utf8_csv_and_recbole_file(tmp_path):
    data = (TABLE / "interactions.csv").read_bytes().split(b"\n")
    data[12] = data[12][:5] + b"\xff\xfe" + data[12][5:]
    (tmp_path / "latin.csv").write_bytes(b"\n".join(data))
    fails(tmp_path, "table", "-i", str(tmp_path / "latin.csv"), *IDS, expect=["latin.csv", "line 13", "UTF-8"])
    d = tmp_path / "rb"
    d.mkdir()
    raw = (FIXTURES / "recbole" / "ml-100k" / "ml-100k.inter").read_bytes().split(b"\n")
    raw[40] = raw[40].replace(b"\t", b"\xe9\t", 1)
    (d / "ml.inter").write_bytes(b"\n".join(raw))
    fails(tmp_path, "recbole", "--dataset-dir", str(d), expect=["ml.inter", "line 41", "UTF-8"])


def test_jsonl_table_bad_line_and_amazon_meta_list_title(tmp_path):
    rows = [json.dumps({"reviewerID": "A1", "asin": "B1"})] * 3 + ["{not json"]
    (tmp_path / "inter.jsonl").write_text("\n".join(rows) + "\n")
    fails(tmp_path, "table", "-i", str(tmp_path / "inter.jsonl"), *IDS, expect=["inter.jsonl", "line 4", "JSON"])
    d = tmp_path / "gc"
    d.mkdir()
    (d / "Gift_Cards_5.json").write_bytes((FIXTURES / "amazon" / "gift_cards" / "Gift_Cards_5.json").read_bytes())
    meta = (FIXTURES / "amazon" / "gift_cards" / "meta_Gift_Cards.json").read_text().splitlines()
    obj = json.loads(meta[2])
    obj["title"] = [obj["title"], "variant"]
    meta[2] = json.dumps(obj)
    (d / "meta_Gift_Cards.json").write_text("\n".join(meta) + "\n")
    fails(
        tmp_path,
        "amazon",
        "-c",
        "Gift_Cards",
        "--data-dir",
        str(d),
        expect=["meta_Gift_Cards.json", "line 3", "'title'"],
    )


def test_bad_values_in_2023_and_recbole_files(tmp_path):
    d = tmp_path / "a23"
    d.mkdir()
    line = (FIXTURES / "amazon" / "reviews2023_lines" / "Subscription_Boxes.jsonl").read_text().strip()
    obj = json.loads(line)
    (d / "Subscription_Boxes.jsonl").write_text("\n".join([line, json.dumps(obj | {"timestamp": "2020-10-08"})]) + "\n")
    fails(
        tmp_path,
        "amazon",
        "-c",
        "Subscription_Boxes",
        "--data-dir",
        str(d),
        expect=["Subscription_Boxes.jsonl", "line 2", "'timestamp'"],
    )
    r = tmp_path / "rb"
    r.mkdir()
    lines = (FIXTURES / "recbole" / "ml-100k" / "ml-100k.inter").read_text().splitlines()
    (r / "x.inter").write_text("\n".join(lines[:50] + [lines[50].rsplit("\t", 1)[0] + "\tlate"] + lines[51:60]) + "\n")
    fails(tmp_path, "recbole", "--dataset-dir", str(r), expect=["x.inter", "line 51", "'timestamp'", "late"])
    (r / "x.inter").write_text("user_id\titem_id:token\n1\t2\n")
    fails(tmp_path, "recbole", "--dataset-dir", str(r), expect=["x.inter", "line 1", "name:type"])
    (r / "x.inter").write_text("user_id:token\titem_id:token\n" + "1\t2\n" * 3 + "1\t2\t3\n")
    fails(tmp_path, "recbole", "--dataset-dir", str(r), expect=["x.inter", "line 5", "2 tab-separated fields"])
    (r / "y.inter").write_text("user_id:token\titem_id:token\n")
    fails(tmp_path, "recbole", "--dataset-dir", str(r), expect=["x, y", "--dataset"])


def test_bad_time_unit_and_mixed_units(tmp_path):
    fails(
        tmp_path,
        "table",
        "-i",
        str(TABLE / "interactions.csv"),
        *IDS,
        "--time-unit",
        "ns",
        expect=["--time-unit", "'ns'"],
    )
    df = pl.read_csv(TABLE / "interactions.csv")
    mixed = df.with_columns(
        pl.when(pl.int_range(pl.len()) >= 10).then(pl.col("unixReviewTime") * 1000).otherwise(pl.col("unixReviewTime"))
    )
    mixed.write_csv(tmp_path / "mixed.csv")
    fails(
        tmp_path,
        "table",
        "-i",
        str(tmp_path / "mixed.csv"),
        *IDS,
        "--time-col",
        "unixReviewTime",
        expect=["mixed.csv", "row 1", "--time-unit"],
    )
