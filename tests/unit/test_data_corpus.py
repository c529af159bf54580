"""The corpus periods cut by time (issue 12 fidelity fix 6), the index fallback, the
dropped copies, and byte-identical output for the same inputs and seed.

    python -m pytest tests/unit/test_data_corpus.py -q
"""

from __future__ import annotations

import hashlib
import json
import random

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.data import corpus
from recsys_cli.data.spans import Registry
from tests.conftest import FIXTURES, MUSICAL, run_cli

DAY = 86400


def test_time_windows_follow_the_cut_points():
    t_end = 1_500_000_000
    times = [
        t_end - 800 * DAY,
        t_end - 200 * DAY,
        t_end - 89 * DAY,
        t_end - 30 * DAY,
        t_end - 6 * DAY,
        t_end - 3600,
        t_end,
    ]
    assert corpus.window_start("long", 7, times) == 0
    assert corpus.window_start("medium", 7, times) == 2  # the last 90 days
    assert corpus.window_start("short", 7, times) == 4  # the last 7 days
    rng = random.Random(0)
    assert corpus.sample_window("medium", 7, rng, times) == [2, 3, 4, 5, 6]
    assert corpus.sample_window("short", 7, rng, times) == [4, 5, 6]
    many = [t_end - (40 - k) * DAY // 8 for k in range(41)]  # 41 items over the last 5 days
    for _ in range(20):
        short = corpus.sample_window("short", 41, rng, many)
        assert len(short) == corpus.SHORT_RUN and short == list(range(short[0], short[0] + 5))
        assert len(corpus.sample_window("medium", 41, rng, many)) == corpus.MEDIUM_MAX
    one = [t_end - 400 * DAY, t_end - 300 * DAY, t_end]  # sparse history: windows shrink to the last item
    assert corpus.sample_window("short", 3, rng, one) == [2] and corpus.sample_window("medium", 3, rng, one) == [2]
    assert corpus.window_start("medium", 7) == 3 and corpus.window_start("short", 7) == 2  # no times: by position


def _columns(times):
    reg = Registry()
    mentions = [reg.mark(f"Item {i}.", "item", f"item:{i}") for i in range(8)]
    profiles = [("p0", []), ("p1", [])]
    hist = [[0, 1, 2], [3, 4, 5, 6, 7, 0, 1]]
    return corpus.corpus_columns(["a", "b"], ["user_a", "user_b"], hist, mentions, profiles, 10, 0, times)


def test_copies_are_dropped_and_counted():
    doc_ids, uids, periods, texts, _, stats = _columns(None)
    assert stats["sampled"] == 20 and stats["sampled_by_period"] == {"long": 2, "medium": 6, "short": 12}
    assert stats["users_by_position"] == 2 and stats["users_by_time"] == 0
    docs = [(u, t.split(":", 1)[1]) for u, p, t in zip(uids, periods, texts) if p != "profile"]
    assert len(docs) == len(set(docs)) == stats["sampled"] - stats["dropped_copies"]
    a_docs = [t.split(": ", 1)[1] for u, p, t in zip(uids, periods, texts) if u == "a" and p != "profile"]
    assert a_docs == [
        "Item 0. Item 1. Item 2.",
        "Item 1. Item 2.",
    ]  # 3 items: all, or the latest half; 8 copies dropped
    t0 = 1_400_000_000
    times = [[t0, t0 + DAY, t0 + 2 * DAY], [t0 + k * 40 * DAY for k in range(7)]]
    *_, stats_t = _columns(times)
    assert stats_t["users_by_time"] == 2
    *_, mixed = _columns([times[0], [None] * 7])
    assert mixed["users_by_time"] == 1 and mixed["users_by_position"] == 1


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_same_inputs_and_seed_are_byte_identical_with_timestamps(tmp_path):
    for name in ("a", "b"):
        code, _, err = run_cli(
            "textualize",
            "amazon",
            "-c",
            "Musical_Instruments",
            "--data-dir",
            str(MUSICAL),
            "--seed",
            "5",
            "--out",
            str(tmp_path / name),
            "--quiet",
        )
        assert code == 0, err
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    code, out, err = run_cli(
        "textualize",
        "recbole",
        "--dataset-dir",
        str(FIXTURES / "recbole" / "ml-100k"),
        "--seed",
        "5",
        "--out",
        str(tmp_path / "c"),
        "--json",
        "--quiet",
    )
    assert code == 0, err
    assert any("cut by time" in n for n in json.loads(out)["notes"])
    code, _, err = run_cli(
        "textualize",
        "recbole",
        "--dataset-dir",
        str(FIXTURES / "recbole" / "ml-100k"),
        "--seed",
        "5",
        "--out",
        str(tmp_path / "d"),
        "--quiet",
    )
    assert code == 0, err
    assert _hashes(tmp_path / "c") == _hashes(tmp_path / "d")


def test_time_cut_corpus_never_leaks_held_out_items(tmp_path):
    code, _, err = run_cli(
        "textualize",
        "amazon",
        "-c",
        "Musical_Instruments",
        "--data-dir",
        str(MUSICAL),
        "--out",
        str(tmp_path / "R"),
        "--quiet",
    )
    assert code == 0, err
    seq = dict(pl.read_parquet(tmp_path / "R" / schemas.SEQUENCES).iter_rows())
    docs = pl.read_parquet(tmp_path / "R" / schemas.CORPUS).filter(pl.col("period") != "profile")
    inter = pl.read_parquet(tmp_path / "R" / schemas.INTERACTIONS)
    when = {(u, i): t for u, i, t in inter.select("user_id", "item_id", "timestamp").iter_rows()}
    for user, period, ents in docs.select("user_id", "period", "entities").iter_rows():
        ids = [e["entity_id"][5:] for e in ents if e["kind"] == "item"]
        train = seq[user][:-2]
        assert set(ids) <= set(train)
        if period == "short":  # within 7 days of the last training item
            assert when[(user, train[-1])] - min(when[(user, i)] for i in ids) <= 7 * DAY
        if period == "medium":
            assert when[(user, train[-1])] - min(when[(user, i)] for i in ids) <= 90 * DAY
