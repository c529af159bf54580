"""Millisecond timestamps are detected (`--time-unit auto`, the 1e11 median rule) or forced,
and stored as unix seconds; the profile no longer says "spans 4675 days" for ms data.

    python -m pytest tests/cli/test_data_timestamps.py -q
"""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.data.sources.timeunit import MS_THRESHOLD, detect, to_seconds
from recsys_cli.errors import InputError
from tests.cli.test_data_errors import IDS, TABLE
from tests.conftest import FIXTURES, run_cli

TIME = ["--time-col", "unixReviewTime", "--rating-col", "overall"]


def _run(tmp_path, name, csv, *extra):
    code, out, err = run_cli(
        "textualize", "table", "-i", str(csv), *IDS, *TIME, *extra, "--out", str(tmp_path / name), "--json", "--quiet"
    )
    assert code == 0, err
    return json.loads(out)


def _days(users: pl.DataFrame) -> list[int]:
    return [int(m.group(1)) for m in (re.search(r"spans (\d+) days", t) for t in users["text"]) if m]


def test_table_ms_detected_and_identical_to_seconds(tmp_path):
    pl.read_csv(TABLE / "interactions.csv").with_columns(pl.col("unixReviewTime") * 1000 + 999).write_csv(
        tmp_path / "ms.csv"
    )
    s_sec = _run(tmp_path, "S", TABLE / "interactions.csv")
    s_ms = _run(tmp_path, "M", tmp_path / "ms.csv")
    assert any("milliseconds (detected)" in n for n in s_ms["notes"])
    a = pl.read_parquet(tmp_path / "S" / schemas.INTERACTIONS)
    b = pl.read_parquet(tmp_path / "M" / schemas.INTERACTIONS)
    assert a["timestamp"].to_list() == b["timestamp"].to_list()  # floored to the same seconds
    for name in (schemas.SEQUENCES, schemas.USERS, schemas.CORPUS, schemas.PROMPTS):
        assert (tmp_path / "S" / name).read_bytes() == (tmp_path / "M" / name).read_bytes(), name
    days = _days(pl.read_parquet(tmp_path / "M" / schemas.USERS))
    assert days and max(days) < 4000  # ms read as seconds would give up to ~1.6 million days
    assert s_sec["users"] == s_ms["users"] == 80


def test_forced_unit_overrides_detection(tmp_path):
    pl.read_csv(TABLE / "interactions.csv").with_columns(pl.col("unixReviewTime") * 1000).write_csv(tmp_path / "ms.csv")
    # milliseconds forced to seconds land after the year 9999: refused (sources/plausible.py), nothing written
    code, _, err = run_cli(
        "textualize",
        "table",
        "-i",
        str(tmp_path / "ms.csv"),
        *IDS,
        *TIME,
        "--time-unit",
        "s",
        "--out",
        str(tmp_path / "F"),
        "--quiet",
    )
    assert code == 2 and "looks like ids, not times" in err and "--time-unit" in err and not (tmp_path / "F").exists()
    _run(tmp_path, "G", tmp_path / "ms.csv", "--time-unit", "ms")
    assert pl.read_parquet(tmp_path / "G" / schemas.INTERACTIONS)["timestamp"].max() < MS_THRESHOLD


def test_amazon_2023_ms_and_2018_seconds(tmp_path):
    code, out, err = run_cli(
        "textualize",
        "amazon",
        "-c",
        "Office_Products",
        "--data-dir",
        str(FIXTURES / "amazon" / "office_2023"),
        "--min-item-users",
        "0",
        "--out",
        str(tmp_path / "O"),
        "--json",
        "--quiet",
    )
    assert code == 0, err
    ts = pl.read_parquet(tmp_path / "O" / schemas.INTERACTIONS)["timestamp"]
    assert 1.0e9 < ts.min() and ts.max() < 1.7e9  # 2008-2023 in seconds
    assert max(_days(pl.read_parquet(tmp_path / "O" / schemas.USERS))) < 6000
    code, out, err = run_cli(
        "textualize",
        "amazon",
        "-c",
        "Gift_Cards",
        "--data-dir",
        str(FIXTURES / "amazon" / "gift_cards"),
        "--out",
        str(tmp_path / "G"),
        "--json",
        "--quiet",
    )
    assert code == 0, err
    raw = [
        json.loads(x)["unixReviewTime"]
        for x in (FIXTURES / "amazon" / "gift_cards" / "Gift_Cards_5.json").read_text().splitlines()
    ]
    assert set(pl.read_parquet(tmp_path / "G" / schemas.INTERACTIONS)["timestamp"].to_list()) <= set(raw)


def test_detection_rule():
    assert detect(pl.Series([1588687728923, 1602133857705])) == "ms"
    assert detect(pl.Series([874724710, 893286638])) == "s"
    assert detect(pl.Series([None, None], dtype=pl.Int64)) == "s"
    secs, used = to_seconds(pl.Series("t", [1588687728923.0, None]), "auto", "x")
    assert used == "ms" and secs.to_list() == [1588687728, None]
    with pytest.raises(InputError, match=r"x, line 7: .*--time-unit"):
        to_seconds(pl.Series("t", [1588687728923, 874724710]), "auto", "x", [3, 7])
