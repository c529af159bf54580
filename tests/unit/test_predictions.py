"""The predictions contract (artifacts/predictions.py): the writer checks and round-trips its rows, and every
reader refuses a malformed file in one line that names the file, the row and what was expected.

    python -m pytest tests/unit/test_predictions.py -q
"""

from __future__ import annotations

import polars as pl
import pytest

from recsys_cli.artifacts import outputs, provenance, schemas
from recsys_cli.artifacts.predictions import Prediction, read_predictions, write_predictions
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.evaluation import tune
from recsys_cli.inference import chunks, merge, retriever
from recsys_cli.training import listwise, rerank
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def good(toys_data, tmp_path_factory):
    """popularity's valid predictions on the Toys slice (`recsys baseline`), and train-split lists for the
    training readers written through `write_predictions`: each train sequential prompt's target and 4 items."""
    d = tmp_path_factory.mktemp("preds")
    code, _, err = run_cli(
        "baseline",
        "popularity",
        "--data",
        str(toys_data),
        "--split",
        "valid",
        "--out",
        str(d / "pop-valid.parquet"),
        "--quiet",
    )
    assert code == 0, err
    items = pl.read_parquet(toys_data / schemas.ITEMS)["item_id"].to_list()[:5]
    train = (
        pl.read_parquet(toys_data / schemas.PROMPTS)
        .filter((pl.col("split") == "train") & (pl.col("family") == "sequential"))
        .head(40)
    )
    rows = [
        Prediction.answer(r, "", [r["item_id"]] + [i for i in items if i != r["item_id"]][:4], [0.0] * 5)
        for r in train.iter_rows(named=True)
    ]
    prov = provenance.make(toys_data, {"kind": "test"}, {"split": "train"})
    write_predictions(d / "pop-train.parquet", rows, metadata=provenance.encode(prov))
    return d


def _bad(df: pl.DataFrame, path, prov=None):
    """Write a malformed file the way another tool would (no contract check on the way out)."""
    df.write_parquet(path, metadata=None if prov is None else provenance.encode(prov))
    return path


def _dup_item(df: pl.DataFrame, row: int) -> pl.DataFrame:
    """`row`'s list with its first item repeated at the end."""
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.col("ranked").list.concat(pl.col("ranked").list.head(1)))
        .otherwise(pl.col("ranked"))
        .alias("ranked"),
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.col("scores").list.concat(pl.col("scores").list.head(1)))
        .otherwise(pl.col("scores"))
        .alias("scores"),
    )


def _unknown_item(df: pl.DataFrame, row: int) -> pl.DataFrame:
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.col("ranked").list.eval(pl.element() + "zz"))
        .otherwise(pl.col("ranked"))
        .alias("ranked")
    )


def _one_line(msg: str, path) -> str:
    assert "\n" not in msg.strip() and str(path) in msg and "Traceback" not in msg, msg
    return msg


def test_written_rows_read_back_and_output_is_the_title(toys_data, good):
    df = read_predictions(good / "pop-valid.parquet", toys_data, need_scores=True)
    assert df.columns == list(schemas.SCHEMAS[schemas.PREDICTIONS]) and df.height > 0
    titles = dict(pl.read_parquet(toys_data / schemas.ITEMS, columns=["item_id", "title"]).iter_rows())
    first = df.row(0, named=True)
    assert first["output"] == titles[first["ranked"][0]] != first["ranked"][0]  # text, the id lives in ranked
    assert provenance.read(good / "pop-valid.parquet")["producer"]["name"] == "popularity"


def test_writer_is_atomic_owned_and_checks_rows(tmp_path):
    prompt = {"prompt_id": "p1", "family": "sequential", "template_id": "sequential-1", "seen": True}
    out = tmp_path / "p.parquet"
    assert write_predictions(out, [Prediction.answer(prompt, "A", ["a", "b"], [0.5, None])]) == 1
    back = pl.read_parquet(out)
    assert back["ranked"].to_list() == [["a", "b"]] and back["scores"].to_list() == [[0.5, None]]
    assert outputs.owner_kind(out) == outputs.PREDICTIONS and not list(tmp_path.glob(".p.parquet.*"))
    with pytest.raises(RecsysError, match="row 0: distinct item ids; 'a' appears twice"):
        write_predictions(out, [Prediction.answer(prompt, "A", ["a", "a"], [1.0, 2.0])])
    with pytest.raises(RecsysError, match="one score per ranked item"):
        write_predictions(out, [Prediction.answer(prompt, "A", ["a", "b"], [1.0])])
    user = tmp_path / "mine.parquet"
    user.write_text("a user's file")
    with pytest.raises(RecsysError):
        write_predictions(user, [Prediction.answer(prompt, "A", ["a"], [1.0])])
    assert user.read_text() == "a user's file"


def test_score_refuses_malformed_files(toys_data, good, tmp_path):
    """report and compare (`recsys score`, `--compare`) and examples (`recsys show answers`)."""
    src = pl.read_parquet(good / "pop-valid.parquet")
    cases = {
        "missing columns ['output']": _bad(src.drop("output"), tmp_path / "no-output.parquet"),
        "row 0: prompt_id": _bad(
            src.with_columns(
                pl.when(pl.int_range(pl.len()) == 2)
                .then(pl.lit(src["prompt_id"][0]))
                .otherwise(pl.col("prompt_id"))
                .alias("prompt_id")
            ),
            tmp_path / "dup-prompt.parquet",
        ),
        "row 3: prompt_id is null": _bad(
            src.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(None).otherwise(pl.col("prompt_id")).alias("prompt_id")
            ),
            tmp_path / "null-prompt.parquet",
        ),
        "column ranked": _bad(src.with_columns(pl.col("ranked").list.len()), tmp_path / "ranked-int.parquet"),
    }
    for want, path in cases.items():
        for args in (
            ("score", "-p", str(path)),
            ("score", "--compare", str(good / "pop-valid.parquet"), str(path)),
            ("show", "answers", "-p", str(path)),
        ):
            code, _, err = (
                run_cli(*args[:-2], "--data", str(toys_data), *args[-2:])
                if args[0] == "show"
                else run_cli(*args, "--data", str(toys_data))
            )
            assert code != 0 and want in _one_line(err, path), (args, err)


def test_two_stage_readers_refuse_malformed_files(toys_data, good, tmp_path):
    """inference/retriever (--candidates-from) and the fusion sweep (evaluation/tune.load_cases)."""
    src = pl.read_parquet(good / "pop-valid.parquet")
    prov = provenance.read(good / "pop-valid.parquet")
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS).filter(pl.col("prompt_id").is_in(src["prompt_id"].implode()))
    prompts = prompts.select("prompt_id", "candidates")
    for df, want in (
        (src.drop("scores"), "missing columns ['scores']"),
        (_unknown_item(src, 4), "row 4: item ids of"),
        (_dup_item(src, 1), "row 1: distinct item ids"),
        (
            src.with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("scores")).alias("scores")
            ),
            "row 5: one score per ranked item",
        ),
    ):
        path = _bad(df, tmp_path / "retr.parquet", prov)
        with pytest.raises(InputError) as got:
            retriever.load(path, toys_data, "valid", prompts, 5)
        assert want in _one_line(str(got.value), path)
    settings = {
        "split": "valid",
        "retriever": retriever.identity_of(good / "pop-valid.parquet", prov),
        "rerank_k": 5,
        "fusion": 1.0,
        "item_scoring": "constrained",
    }
    rr = provenance.make(toys_data, {"kind": "base-model", "name": "hand-made"}, settings)
    for df, want in ((src.drop("scores"), "missing columns ['scores']"), (_unknown_item(src, 0), "row 0: item ids of")):
        path = _bad(df, tmp_path / "rerank.parquet", rr)
        with pytest.raises(InputError) as got:
            tune.load_cases(toys_data, path, good / "pop-valid.parquet")
        assert want in _one_line(str(got.value), path)
    code, _, err = run_cli(
        "tune",
        "--data",
        str(toys_data),
        "--rerank",
        str(path),
        "--retriever",
        str(good / "pop-valid.parquet"),
        "--out",
        str(tmp_path / "t.json"),
    )
    assert code != 0 and "item ids of" in _one_line(err, path)


def test_training_readers_refuse_malformed_files(toys_data, good, tmp_path):
    """training/rerank and training/listwise read train-split candidate lists."""
    src = pl.read_parquet(good / "pop-train.parquet")
    prov = provenance.read(good / "pop-train.parquet")
    bad = _bad(_unknown_item(src, 2), tmp_path / "train-bad.parquet", prov)
    with pytest.raises(InputError) as got:
        rerank.load_rerank_prompts(toys_data, bad, 5, tokenizer=None)
    assert "row 2: item ids of items.parquet" in _one_line(str(got.value), bad)
    with pytest.raises(InputError) as got:
        listwise._train_prompts(toys_data, bad)
    assert "row 2: item ids of items.parquet" in _one_line(str(got.value), bad)
    nocol = _bad(src.drop("ranked"), tmp_path / "train-nocol.parquet", prov)
    with pytest.raises(InputError, match="missing columns \\['ranked'\\]"):
        listwise._train_prompts(toys_data, nocol)


def test_infer_chunks_and_shards_refuse_malformed_files(toys_data, good, tmp_path):
    """inference/chunks (resume, chunk merge) and inference/merge (merge-predictions)."""
    src = pl.read_parquet(good / "pop-valid.parquet").head(6)
    out = tmp_path / "out.parquet"
    parts = chunks.parts_dir(out)
    parts.mkdir()
    chunk = parts / "part-000000.parquet"
    _bad(pl.concat([src, src.head(1)]), chunk)
    with pytest.raises(InputError) as got:
        chunks.done_prompt_ids(out)
    assert "row 0: prompt_id" in _one_line(str(got.value), chunk) and "repeated" in str(got.value)
    _bad(src.drop("ranked"), chunk)
    with pytest.raises(InputError, match="missing columns \\['ranked'\\]"):
        chunks.merge_parts(out, src["prompt_id"].to_list())
    shards = []
    for i in range(2):
        prov = provenance.make(toys_data, {"kind": "test"}, {"shard": f"{i}/2"}, {"selected": 6})
        df = src.gather_every(2, offset=i)
        shards.append(_bad(_dup_item(df, 1) if i else df, tmp_path / f"s{i}.parquet", prov))
    with pytest.raises(InputError) as got:
        merge.merge(shards, tmp_path / "merged.parquet")
    assert "row 1: distinct item ids" in _one_line(str(got.value), shards[1])
    code, _, err = run_cli("merge-predictions", "--out", str(tmp_path / "m.parquet"), *map(str, shards))
    assert code != 0 and "distinct item ids" in _one_line(err, shards[1])


def test_other_data_and_unreadable_files(toys_data, musical_data, good, tmp_path):
    path = good / "pop-valid.parquet"
    with pytest.raises(InputError, match="made on other data|data in"):
        read_predictions(path, musical_data)
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    with pytest.raises(InputError, match="readable Parquet"):
        read_predictions(text, toys_data)
    with pytest.raises(RecsysError, match="not found"):
        read_predictions(tmp_path / "none.parquet", toys_data)
