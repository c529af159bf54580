"""Every subcommand in sequence, through the CLI as a user types it, on the committed
Gift Cards fixture (2018 reviews + metadata, so all five task families exist) with the
tiny random model. Each artifact is checked against the schema module.

    python -m pytest tests/e2e -q
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from tests.conftest import GIFT_CARDS, ROOT, run_cli


def _check_schema(path: Path, schema: dict) -> pl.DataFrame:
    df = pl.read_parquet(path)
    assert list(df.columns)[: len(schema)] == list(schema), f"{path.name}: columns {df.columns}"
    for col, dtype in schema.items():
        assert df.schema[col] == dtype, f"{path.name}.{col}: {df.schema[col]} != {dtype}"
    assert df.height > 0, f"{path.name} is empty"
    return df


def _ok(*args: str) -> str:
    code, out, err = run_cli(*args)
    assert code == 0, f"recsys {' '.join(args)} failed ({code}): {err[-2000:]}"
    return out


def _textualize_gift_cards(data):
    """textualize the Gift Cards fixture into `data` and check every file's schema and the manifest."""
    out = _ok(
        "textualize",
        "amazon",
        "--category",
        "Gift_Cards",
        "--data-dir",
        str(GIFT_CARDS),
        "--out",
        str(data),
        "--json",
        "--quiet",
    )
    summary = json.loads(out)
    assert summary, "textualize --json printed nothing"
    for name in schemas.TEXTUALIZE_FILES:
        _check_schema(data / name, schemas.SCHEMAS[name])
    prompts = pl.read_parquet(data / schemas.PROMPTS)
    assert set(prompts["family"].unique()) == set(schemas.FAMILIES)
    manifest = json.loads((data / schemas.MANIFEST).read_text())
    assert manifest["command"].startswith("textualize") and manifest["inputs"]


def _entities_and_mask_preview(data, tiny_model):
    """build-entities, then two entity-level mask previews whose position arrays line up."""
    _ok("build-entities", "--data", str(data), "--model", tiny_model, "--quiet")
    ents = _check_schema(data / schemas.ENTITIES, schemas.ENTITIES_SCHEMA)
    assert set(ents["kind"].unique()) >= {"item", "category"}
    assert (data / schemas.ENTITIES_MINHASH).is_file()

    lines = [
        json.loads(x)
        for x in _ok(
            "mask-preview",
            "--data",
            str(data),
            "-n",
            "2",
            "--level",
            "entity",
            "--model",
            tiny_model,
            "--json",
            "--quiet",
        ).splitlines()
        if x.strip()
    ]
    assert len(lines) == 2
    for ex in lines:
        assert len(ex["input_ids"]) == len(ex["inter"]) == len(ex["intra"]) == len(ex["tokens"])
        assert 0 < ex["part_a_len"] < len(ex["input_ids"])


def _pretrain_four_steps(data, ckpt):
    """four steps of the tiny recipe; the checkpoint holds every file and logs step 4."""
    recipe = ROOT / "recipes" / "pretrain" / "tiny-cpu.yaml"
    _ok(
        "pretrain",
        "--data",
        str(data),
        "--config",
        str(recipe),
        "--out",
        str(ckpt),
        "--max-steps",
        "4",
        "--seed",
        "0",
        "--quiet",
    )
    for name in (
        schemas.CKPT_ADAPTER,
        schemas.CKPT_TOKENIZER,
        schemas.CKPT_EXTRAS,
        schemas.CKPT_CONFIG,
        schemas.CKPT_METRICS,
    ):
        assert (ckpt / name).exists(), f"checkpoint lacks {name}"
    steps = [json.loads(x) for x in (ckpt / schemas.CKPT_METRICS).read_text().splitlines() if x.strip()]
    assert any(row.get("step") == 4 for row in steps)


def _infer_every_family(tmp_path, data, ckpt) -> dict:
    """four test prompts of each family; ranking answers hold catalogue items only."""
    preds = {}
    for family in schemas.FAMILIES:
        path = tmp_path / f"pred-{family}.parquet"
        _ok(
            "infer",
            "--data",
            str(data),
            "--checkpoint",
            str(ckpt),
            "--split",
            "test",
            "--family",
            family,
            "--limit",
            "4",
            "--batch-size",
            "4",
            "--max-new-tokens",
            "8",
            "--out",
            str(path),
            "--quiet",
        )
        df = _check_schema(path, schemas.PREDICTIONS_SCHEMA)
        assert set(df["family"].unique()) == {family}
        if family in schemas.RANKING_FAMILIES:
            items = set(pl.read_parquet(data / schemas.ITEMS)["item_id"])
            ranked = [i for lst in df["ranked"].drop_nulls() for i in lst]
            assert ranked and set(ranked) <= items
        preds[family] = path
    return preds


@pytest.mark.slow
def test_whole_pipeline(tmp_path, tiny_model):
    data, ckpt = tmp_path / "R", tmp_path / "C"
    _textualize_gift_cards(data)
    _entities_and_mask_preview(data, tiny_model)
    _pretrain_four_steps(data, ckpt)
    preds = _infer_every_family(tmp_path, data, ckpt)

    base = tmp_path / "popularity.parquet"
    _ok("baseline", "popularity", "--data", str(data), "--out", str(base), "--quiet")
    _check_schema(base, schemas.PREDICTIONS_SCHEMA)

    all_preds = tmp_path / "all.parquet"
    pl.concat([pl.read_parquet(p) for p in preds.values()]).write_parquet(all_preds)
    report = json.loads(
        _ok("score", "--data", str(data), "--predictions", str(all_preds), "--task", "all", "--json", "--quiet")
    )
    text = json.dumps(report)
    for metric in ("RMSE", "HR@10", "NDCG@10", "BLEU", "ROUGE"):
        assert metric.lower() in text.lower(), f"score --json lacks {metric}"
