"""bench/qlib.py, the quality benchmarks' shared helpers: the ranked-list check that backs the
"100% valid, distinct item ids" claim, stage times kept across a continued run, the paired bootstrap;
and bench/quality.py's reuse of a recorded beam part.

    python -m pytest tests/unit/test_bench_qlib.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import qlib  # noqa: E402


def test_list_check_counts_each_kind_of_bad_list(toys_data):
    items = pl.read_parquet(toys_data / "items.parquet", columns=["item_id"])["item_id"].to_list()
    good = items[:10]
    lists = {"a": good, "b": good[:9], "c": good[:9] + ["no-such-item"], "d": good[:9] + [good[0]]}
    out = qlib.list_check(toys_data, lists, ["a", "b", "c", "d", "missing"])
    assert out == {"lists": 5, "ok": 1, "short": 2, "unknown_item": 1, "duplicate": 1}


def test_list_check_reads_a_predictions_file(toys_data, tmp_path):
    items = pl.read_parquet(toys_data / "items.parquet", columns=["item_id"])["item_id"].to_list()
    f = tmp_path / "p.parquet"
    lists = [items[:12], items[:11] + [items[3]]]
    rows = {"family": ["sequential"] * 2, "template_id": ["sequential-1"] * 2, "seen": [True] * 2, "output": ["", ""]}
    pl.DataFrame({"prompt_id": ["x", "y"], **rows, "ranked": lists, "valid": [True] * 2}).write_parquet(f)
    assert qlib.list_check(toys_data, f, ["x", "y"]) == {
        "lists": 2,
        "ok": 1,
        "short": 0,
        "unknown_item": 0,
        "duplicate": 1,
    }


def test_runner_keeps_stage_times_across_invocations(tmp_path):
    work = tmp_path / "w"
    done = tmp_path / "done.txt"
    first = qlib.Runner(work)
    first.run("help", ["--help"])
    assert first.seconds["help"] > 0
    done.write_text("x")
    second = qlib.Runner(work)  # a continued run: the finished stage is reused, its time is still reported
    assert second.run("help", ["--help"], done) == ""
    assert second.seconds == first.seconds
    assert json.loads((work / "seconds.json").read_text()) == first.seconds


def test_paired_bootstrap_interval_brackets_the_difference():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 30, size=400)
    better = np.where(rng.random(400) < 0.5, np.minimum(base, 0), base)  # half the prompts hit at rank 0
    ci = qlib.paired_bootstrap(better, base, "HR@10", seed=0)
    lo, hi = ci["ci95"]
    assert lo <= ci["diff"] <= hi
    assert lo > 0 and ci["excludes_0"]
    same = qlib.paired_bootstrap(base, base, "NDCG@10", seed=0)
    assert same["diff"] == 0.0 and not same["excludes_0"]


def test_quality_reuses_a_finished_stage_without_waiting_for_the_cpu_lock(tmp_path, monkeypatch):
    import fcntl

    import quality

    lock = tmp_path / "cpu.lock"
    monkeypatch.setattr(quality, "LOCK", lock)
    done = tmp_path / "sasrec-valid.parquet"
    done.write_bytes(b"x")
    with lock.open("a") as held:  # another job holds the CPU: a finished stage must not wait for it
        fcntl.flock(held, fcntl.LOCK_EX)
        assert quality.LockedRunner(tmp_path / "work").run("sasrec valid", ["baseline"], done) == ""


def test_quality_names_one_file_per_validation_scorer(tmp_path):
    import quality

    names = list(quality.SCORERS) + list(quality.ID_SCORERS)
    slugs = [quality._slug(n) for n in names]
    assert len(set(slugs)) == len(names) and all(" " not in s and "," not in s for s in slugs)
    tier = {"k": 20}
    (tmp_path / f"valid-{quality._slug('listwise')}-k20.parquet").write_bytes(b"x")
    (tmp_path / f"valid-{quality._slug('rsllm listwise+ids')}-k20.parquet").write_bytes(b"x")
    assert sorted(quality._valid_files(tmp_path, tier)) == ["listwise", "rsllm listwise+ids"]


def test_prompt_ids_routes_on_the_template_answer_type_not_the_gold_text(toys_data):
    from recsys_cli.data import templates

    prompts = pl.read_parquet(toys_data / "prompts.parquet")
    users = sorted(prompts["user_id"].unique().to_list())
    picked = qlib.prompt_ids(toys_data, users, "test", "direct", True, one_per_user=False)
    got = prompts.filter(pl.col("prompt_id").is_in(picked))
    direct = prompts.filter((pl.col("split") == "test") & (pl.col("family") == "direct") & pl.col("seen"))
    yes_no = templates.answer_types(direct["template_id"]) == templates.YES_NO_ANSWER
    assert yes_no.any()  # the fixture holds yes/no direct prompts to leave out
    assert set(templates.answer_types(got["template_id"]).to_list()) == {templates.ITEM}
    assert got.height == direct.height - int(yes_no.sum())
