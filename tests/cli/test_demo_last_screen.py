"""The demo's last screen (scripts/demo_last_screen.py) on the Toys and Musical Instruments slices
with the tiny model: text answers beside references, one user drawn by seed, both top-5 lists and
the held-out item's rank in each.

    python -m pytest tests/cli/test_demo_last_screen.py -q
"""

from __future__ import annotations

import importlib.util
import random
import sys

import polars as pl
import pytest

from tests.conftest import ROOT, run_cli, run_itemknn

pytest.importorskip("torch")


def _script():
    spec = importlib.util.spec_from_file_location("demo_last_screen", ROOT / "scripts" / "demo_last_screen.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def files(toys_entities, musical_data, tiny_model, tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    retr, rerank = d / "retr.parquet", d / "rerank.parquet"
    run_itemknn(toys_entities, "test", 30, retr)
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--seen",
        "--users",
        "5",
        "--exclude-history",
        "--top-k",
        "10",
        "--candidates-from",
        str(retr),
        "--rerank-k",
        "5",
        "--out",
        str(rerank),
        "--quiet",
    )
    assert code == 0, err
    texts = []
    for fam in ("rating", "explanation"):
        texts.append(d / f"{fam}.parquet")
        code, _, err = run_cli(
            "infer",
            "--data",
            str(musical_data),
            "--checkpoint",
            "none",
            "--model",
            tiny_model,
            "--family",
            fam,
            "--seen",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--out",
            str(texts[-1]),
            "--quiet",
        )
        assert code == 0, err
    return retr, rerank, texts


def test_last_screen_user_by_seed_lists_and_ranks(toys_entities, musical_data, files, capsys, monkeypatch):
    retr, rerank, texts = files
    mod = _script()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "demo_last_screen.py",
            "--data",
            str(toys_entities),
            "--sasrec",
            str(retr),
            "--rerank",
            str(rerank),
            "--text-data",
            str(musical_data),
            "--text",
            *map(str, texts),
            "--seed",
            "3",
            "-k",
            "5",
        ],
    )
    mod.main()
    out = capsys.readouterr().out
    prompts = pl.read_parquet(toys_entities / "prompts.parquet")
    answered = prompts.filter(pl.col("prompt_id").is_in(pl.read_parquet(rerank)["prompt_id"].to_list()))
    users = sorted(set(answered["user_id"].to_list()))
    user = random.Random(3).choice(users)  # drawn from the sorted users, whatever the lists hold
    assert f"user {user} (drawn with seed 3 from {len(users)} test users)" in out
    row = answered.filter(pl.col("user_id") == user).sort("prompt_id").row(0, named=True)
    ret_list = dict(zip(*pl.read_parquet(retr, columns=["prompt_id", "ranked"]).to_dict(as_series=False).values()))
    fus, how = mod.fused(toys_entities, rerank, retr)
    expect = [mod.rank_text(lst[row["prompt_id"]], row["item_id"]) for lst in (ret_list, fus)]
    assert f"SASRec: {expect[0]} · fused: {expect[1]}" in out
    assert ("W=" in how) and "fused:" in out
    from recsys_cli.artifacts import provenance

    scorer = provenance.read(rerank)["settings"]["item_scoring"]
    w = mod.validation_w(mod.CHOSEN, scorer)  # the best validation W of the scorer the rerank ran with
    if w is not None and w != 1.0:  # the fused list is the validation W's, not the W = 1 rerank file's order
        from recsys_cli.evaluation.tune import fused_rankings

        assert fus == fused_rankings(toys_entities, rerank, retr, w, "test")
    assert "Text answers on" in out
    preds = pl.concat([pl.read_parquet(t, columns=["prompt_id", "output"]) for t in texts])
    refs = pl.read_parquet(musical_data / "prompts.parquet", columns=["prompt_id", "target"])
    refs = refs.join(preds, on="prompt_id")
    rows = mod.text_rows(musical_data, texts, 2)
    assert refs.height == 4 and len(rows) == 4  # each answer beside its own reference
    assert sorted((r[2], r[3]) for r in rows) == sorted(zip(refs["output"].to_list(), refs["target"].to_list()))


def test_a_different_seed_can_pick_another_user(toys_entities, musical_data, files, capsys, monkeypatch):
    retr, rerank, texts = files
    mod = _script()
    seen = set()
    for seed in range(6):
        monkeypatch.setattr(
            sys,
            "argv",
            [
                "x",
                "--data",
                str(toys_entities),
                "--sasrec",
                str(retr),
                "--rerank",
                str(rerank),
                "--text-data",
                str(musical_data),
                "--text",
                str(texts[0]),
                "--seed",
                str(seed),
            ],
        )
        mod.main()
        line = next(ln for ln in capsys.readouterr().out.splitlines() if "drawn with seed" in ln)
        seen.add(line.split("user ")[1].split(" ")[0])
    assert len(seen) > 1


def test_calibrated_rating_row_names_its_temperature(musical_data, files, tiny_model, tmp_path):
    """The demo shows the ratings twice: the star distribution's expected value, then the same
    prompts through a calibration fitted on validation; the second row says the fitted T."""
    _, _, texts = files
    valid, calibrated = tmp_path / "valid.parquet", tmp_path / "calibrated.parquet"
    common = ["infer", "--data", str(musical_data), "--checkpoint", "none", "--model", tiny_model, "--family", "rating"]
    code, _, err = run_cli(*common, "--split", "valid", "--out", str(valid), "--quiet")
    assert code == 0, err
    code, _, err = run_cli(
        *common, "--seen", "--limit", "2", "--rating-calibration", str(valid), "--out", str(calibrated), "--quiet"
    )
    assert code == 0, err
    from recsys_cli.artifacts import provenance

    t = provenance.read(calibrated)["extra"]["rating_calibration"]["temperature"]
    rows = _script().text_rows(musical_data, [texts[0], calibrated], 2)
    assert [r[0].split("\n")[0] for r in rows] == ["rating"] * 2 + [
        f"rating, calibrated on validation (T = {t:.2f})"
    ] * 2
    assert [r[1] for r in rows[:2]] == [r[1] for r in rows[2:]]  # the same two prompts, before and after
    assert all(1.0 <= float(r[2]) <= 5.0 for r in rows[2:])
