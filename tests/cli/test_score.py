"""`recsys score` on the textualized fixture slices, with predictions built from the prompts.

python -m pytest tests/cli/test_score.py
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import write_parquet
from tests.conftest import run_cli


def predictions(data, families, make) -> pl.DataFrame:
    """One predictions row per test prompt of `families`; make(row) -> (output, ranked)."""
    prompts = pl.read_parquet(data / schemas.PROMPTS).filter(
        (pl.col("split") == "test") & pl.col("family").is_in(families)
    )
    rows = {c: [] for c in schemas.PREDICTIONS_SCHEMA}
    for row in prompts.iter_rows(named=True):
        output, ranked = make(row)
        for c, v in (
            ("prompt_id", row["prompt_id"]),
            ("family", row["family"]),
            ("template_id", row["template_id"]),
            ("seen", row["seen"]),
            ("output", output),
            ("ranked", ranked),
            ("scores", None if ranked is None else [0.0] * len(ranked)),
            ("valid", True),
        ):
            rows[c].append(v)
    return pl.DataFrame(rows, schema=schemas.PREDICTIONS_SCHEMA)


def oracle(row):
    if row["family"] in ("sequential", "direct") and row["target"] not in ("yes", "no"):
        others = [c for c in (row["candidates"] or []) if c != row["item_id"]]
        return row["target"], [row["item_id"], *others[:9]]
    return row["target"], None


def wrong(row):
    if row["family"] in ("sequential", "direct") and row["target"] not in ("yes", "no"):
        return "nothing", ["not-an-item"] * 10
    return {"yes": "no", "no": "yes"}.get(row["target"], "unparsable"), None


@pytest.fixture(scope="module")
def toys_preds(toys_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("preds")
    write_parquet(
        predictions(toys_data, ["sequential", "direct"], oracle), d / "oracle.parquet", schemas.PREDICTIONS_SCHEMA
    )
    write_parquet(
        predictions(toys_data, ["sequential", "direct"], wrong), d / "wrong.parquet", schemas.PREDICTIONS_SCHEMA
    )
    return d


def score_json(*args):
    code, out, err = run_cli("score", *args, "--json", "--quiet")
    assert code == 0, err
    return json.loads(out)["rows"]


def test_oracle_and_wrong_predictions(toys_data, toys_preds):
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS).filter(pl.col("split") == "test")
    rows = score_json("--data", str(toys_data), "--predictions", str(toys_preds / "oracle.parquet"))
    seq = {r["seen"]: r["metrics"] for r in rows if r["family"] == "sequential"}
    assert set(seq) == {True, False}  # seen and unseen templates are separate rows
    for seen, m in seq.items():
        want = prompts.filter((pl.col("family") == "sequential") & (pl.col("seen") == seen)).height
        assert m["n"] == want and m["HR@1"] == 1.0 and m["NDCG@10"] == 1.0 and m["validity"] == 1.0
    direct = [r for r in rows if r["family"] == "direct"]
    assert direct and all(r["metrics"]["HR@1"] == 1.0 for r in direct)
    yes_no = [r for r in rows if r["family"] == "direct yes/no"]
    assert yes_no and all(r["metrics"]["accuracy"] == 1.0 for r in yes_no)

    bad = score_json("--data", str(toys_data), "-p", str(toys_preds / "wrong.parquet"), "--task", "sequential")
    assert {r["family"] for r in bad} == {"sequential"}
    assert all(r["metrics"]["HR@10"] == 0.0 and r["metrics"]["validity"] == 0.0 for r in bad)


def test_compare_markdown_plot(toys_data, toys_preds, tmp_path):
    md, png = tmp_path / "t.md", tmp_path / "t.png"
    code, out, err = run_cli(
        "score",
        "--data",
        str(toys_data),
        "--compare",
        str(toys_preds / "wrong.parquet"),
        str(toys_preds / "oracle.parquet"),
        "--task",
        "sequential",
        "--markdown",
        str(md),
        "--plot",
        str(png),
    )
    assert code == 0, err
    assert out.index("wrong") < out.index("oracle")  # methods keep the order given
    text = md.read_text()
    assert "| oracle | seen | **1.0000** |" in text and "| wrong | seen | 0.0000 |" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_gives_paired_intervals_against_the_first_file(toys_data, toys_preds, tmp_path):
    few = pl.read_parquet(toys_preds / "oracle.parquet").filter(pl.col("family") == "sequential").head(7)
    write_parquet(few, tmp_path / "few.parquet", schemas.PREDICTIONS_SCHEMA)
    md = tmp_path / "t.md"
    rows = score_json(
        "--data",
        str(toys_data),
        "--compare",
        str(toys_preds / "wrong.parquet"),
        str(toys_preds / "oracle.parquet"),
        str(tmp_path / "few.parquet"),
        "--task",
        "sequential",
        "--markdown",
        str(md),
    )
    assert rows and all("vs_first" not in r for r in rows if r["method"] == "wrong")
    for r in (r for r in rows if r["method"] == "oracle"):  # every prompt: rank 0 against a miss
        paired = r["vs_first"]
        assert paired["against"] == "wrong" and paired["n"] == r["metrics"]["n"]
        for m in ("NDCG@10", "HR@10"):
            assert paired[m]["diff"] == 1.0 and paired[m]["ci95"] == [1.0, 1.0] and paired[m]["excludes_0"]
    few_rows = [r for r in rows if r["method"] == "few"]
    assert sum(r["vs_first"]["n"] for r in few_rows) == 7  # paired on the prompts both files answered
    text = md.read_text()
    assert "ΔNDCG@10 vs wrong [95% CI]" in text and "+1.0000 [+1.0000, +1.0000] *" in text
    code, out, err = run_cli(
        "score",
        "--data",
        str(toys_data),
        "--compare",
        str(toys_preds / "wrong.parquet"),
        str(toys_preds / "oracle.parquet"),
        "--task",
        "sequential",
    )
    assert code == 0 and "+1.0000" in out, err
    single = score_json("--data", str(toys_data), "-p", str(toys_preds / "oracle.parquet"), "--task", "sequential")
    assert all("vs_first" not in r for r in single)


def test_unknown_prompt_is_one_line_error(toys_data, toys_preds, tmp_path):
    df = pl.read_parquet(toys_preds / "oracle.parquet")
    df = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("nope")).otherwise(pl.col("prompt_id")).alias("prompt_id")
    )
    bad = tmp_path / "bad.parquet"
    write_parquet(df, bad, schemas.PREDICTIONS_SCHEMA)
    code, _, err = run_cli("score", "--data", str(toys_data), "-p", str(bad))
    assert code == 2
    assert err.strip().count("\n") == 0 and "bad.parquet, row 3" in err and "'nope'" in err and "Traceback" not in err
    code, _, err = run_cli("score", "--data", str(toys_data), "-p", str(toys_data / schemas.ITEMS))
    assert code == 2 and "missing columns" in err


def test_text_and_rating_on_reviews(musical_data, tmp_path):
    def half(row):
        if row["family"] == "rating" and row["target"] not in ("yes", "no"):
            return ("4 stars" if int(float(row["target"])) % 2 else "n/a"), None
        return row["target"], None

    p = tmp_path / "half.parquet"
    write_parquet(predictions(musical_data, ["rating", "explanation", "review"], half), p, schemas.PREDICTIONS_SCHEMA)
    for flag in ([], ["--p5-compatible"]):
        rows = score_json("--data", str(musical_data), "-p", str(p), *flag)
        expl = [r["metrics"] for r in rows if r["family"] == "explanation"]
        assert expl and all(
            m["BLEU-4"] == pytest.approx(100) and m["ROUGE-L"] == pytest.approx(100, abs=1e-4) for m in expl
        )
        summ = [r["metrics"] for r in rows if r["family"] == "review"]
        assert summ and all("BLEU-2" in m for m in summ)
    prompts = pl.read_parquet(musical_data / schemas.PROMPTS).filter(
        (pl.col("split") == "test") & (pl.col("family") == "rating") & ~pl.col("target").is_in(["yes", "no"])
    )
    gold = prompts["target"].cast(pl.Float64).cast(pl.Int64)
    odd = gold.filter(gold % 2 == 1)
    rating = [r["metrics"] for r in rows if r["family"] == "rating"]
    assert sum(m["n"] for m in rating) == prompts.height
    assert sum(m["unparsable"] for m in rating) == prompts.height - odd.len()  # even stars -> "n/a"
    err2 = ((odd - 4) ** 2).sum()  # "4 stars" parsed as 4 on the odd ones
    total_sq = sum(m["RMSE"] ** 2 * (m["n"] - m["unparsable"]) for m in rating if m["n"] > m["unparsable"])
    assert total_sq == pytest.approx(err2)


def test_common_prompts_scores_the_intersection(toys_data, toys_preds, tmp_path):
    """A model run on a few prompts (infer --limit) against a full baseline file: with
    --common-prompts both are scored on the same prompts only."""
    few = pl.read_parquet(toys_preds / "oracle.parquet").filter(pl.col("family") == "sequential").head(7)
    write_parquet(few, tmp_path / "few.parquet", schemas.PREDICTIONS_SCHEMA)
    args = (
        "--data",
        str(toys_data),
        "--compare",
        str(tmp_path / "few.parquet"),
        str(toys_preds / "wrong.parquet"),
        "--task",
        "sequential",
    )
    full = {
        r["method"]: sum(x["metrics"]["n"] for x in score_json(*args) if x["method"] == r["method"])
        for r in score_json(*args)
    }
    assert full["few"] == 7 and full["wrong"] > 7
    rows = score_json(*args, "--common-prompts")
    for method in ("few", "wrong"):
        assert sum(r["metrics"]["n"] for r in rows if r["method"] == method) == 7
