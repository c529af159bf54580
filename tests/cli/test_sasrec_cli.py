"""`recsys baseline sasrec` on the textualized Toys slice: provenance, top-N with scores, the
saved item embeddings + encoder, the train-split retriever.

    python -m pytest tests/cli/test_sasrec_cli.py -q
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from recsys_cli.artifacts import item_embeddings, provenance, schemas
from recsys_cli.artifacts.io import data_fingerprint
from recsys_cli.baselines import sasrec
from recsys_cli.baselines.sasrec import SASRecConfig
from recsys_cli.baselines.sasrec_encoder import UserEncoder
from tests.conftest import run_cli

TINY = ["--max-epochs", "2", "--hidden", "8", "--blocks", "1", "--max-len", "10", "--seed", "1", "--threads", "1"]


def _sasrec(data, *args):
    code, out, err = run_cli("baseline", "sasrec", "--data", str(data), *TINY, *args, "--json", "--quiet")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def test_run(toys_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("sasrec")
    summary = _sasrec(
        toys_data,
        "--top-k",
        "60",
        "--out",
        str(d / "test.parquet"),
        "--embeddings-out",
        str(d / "emb.safetensors"),
        "--valid-out",
        str(d / "valid.parquet"),
    )
    return d, summary


def test_predictions_carry_provenance_and_scored_top_n(toys_data, test_run):
    d, summary = test_run
    prov = provenance.read(d / "test.parquet")
    assert prov["data_fingerprint"] == data_fingerprint(toys_data)
    assert prov["producer"]["kind"] == "baseline" and prov["producer"]["name"] == "sasrec"
    assert prov["producer"]["config"]["hidden"] == 8 and prov["producer"]["config"]["exclude_history"] is True
    assert prov["settings"] == {"split": "test", "top_k": 60, "exclude_history": True}
    assert summary["epochs"] == 2 and "valid_x_NDCG@10" in summary
    assert prov["producer"]["config"]["refit"] is True and summary["refit_epochs"] == summary["best_epoch"] >= 1
    assert prov["producer"]["config"]["protocol"] == summary["protocol"] == sasrec.protocol("test", True)
    df = pl.read_parquet(d / "test.parquet")
    seq = df.filter(pl.col("family") == "sequential")
    assert (seq["ranked"].list.len() == 60).all() and (seq["scores"].list.len() == 60).all()
    assert all(s == sorted(s, reverse=True) for s in seq["scores"].to_list())


def test_saved_embeddings_are_the_early_stopped_model_not_the_refit(toys_data, test_run, tmp_path):
    d, _ = test_run
    emb = item_embeddings.load(d / "emb.safetensors", data_dir=toys_data)  # checks the data fingerprint
    assert emb.model == "sasrec" and emb.dim == 8 and emb.config["max_len"] == 10
    enc = UserEncoder(emb)  # rebuilt from the stored config, strict state_dict
    _sasrec(
        toys_data,
        "--split",
        "valid",
        "--no-refit",
        "--top-k",
        "60",
        "--out",
        str(tmp_path / "valid.parquet"),
        "--embeddings-out",
        str(tmp_path / "valid.safetensors"),
    )
    valid_emb = item_embeddings.load(tmp_path / "valid.safetensors")  # the same items[:-2] model (config: refit False)
    assert torch.equal(valid_emb.table, emb.table) and valid_emb.encoder.keys() == emb.encoder.keys()
    assert all(torch.equal(valid_emb.encoder[k], emb.encoder[k]) for k in emb.encoder)
    seqs = pl.read_parquet(toys_data / schemas.SEQUENCES)
    items = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    for split, cut, same in (("valid", 2, True), ("test", 1, False)):
        prompts = pl.read_parquet(toys_data / schemas.PROMPTS).filter(
            (pl.col("split") == split) & (pl.col("family") == "sequential")
        )
        path = tmp_path / "valid.parquet" if split == "valid" else d / "test.parquet"
        preds = pl.read_parquet(path).join(prompts.select("prompt_id", "user_id"), on="prompt_id").head(25)
        hists = [emb.rows(items[u][:-cut]) for u in preds["user_id"]]
        with torch.no_grad():
            scores = (enc.encode(hists) @ emb.table[1:].T).numpy()  # [U, N]
        close = [
            np.allclose([row[r - 1] for r in emb.rows(ranked)], got, atol=1e-4)
            for row, ranked, got in zip(scores, preds["ranked"].to_list(), preds["scores"].to_list())
        ]
        assert all(close) if same else not any(close)  # test prompts are scored by the refit model


def test_valid_predictions_come_from_the_test_protocol_shifted_by_one(toys_data, test_run, tmp_path):
    d, _ = test_run
    summary = _sasrec(toys_data, "--split", "valid", "--top-k", "60", "--out", str(tmp_path / "valid.parquet"))
    prov = provenance.read(tmp_path / "valid.parquet")
    protocol = sasrec.protocol("valid", True)
    assert summary["protocol"] == prov["producer"]["config"]["protocol"] == protocol
    assert "refit on items[:-2]" in protocol and summary["refit_epochs"] == summary["best_epoch"] >= 1
    assert "embeddings" not in summary  # it trains no early-stopped items[:-2] model
    # the test run's --valid-out runs the same protocol: byte for byte the file this valid run wrote
    assert (tmp_path / "valid.parquet").read_bytes() == (d / "valid.parquet").read_bytes()
    assert provenance.read(d / "valid.parquet")["settings"]["split"] == "valid"
    code, _, err = run_cli(
        "baseline", "sasrec", "--data", str(toys_data), "--split", "valid", "--embeddings-out", str(tmp_path / "e")
    )
    assert code == 2 and "--embeddings-out" in err and not (tmp_path / "e").exists()


def test_seeded_runs_are_identical_and_include_history_differs(toys_data, test_run, tmp_path):
    d, _ = test_run
    _sasrec(
        toys_data,
        "--top-k",
        "60",
        "--out",
        str(tmp_path / "again.parquet"),
        "--embeddings-out",
        str(tmp_path / "e.safetensors"),
    )
    assert (tmp_path / "again.parquet").read_bytes() == (
        d / "test.parquet"
    ).read_bytes()  # --valid-out changes nothing else
    assert (tmp_path / "e.safetensors").read_bytes() == (d / "emb.safetensors").read_bytes()
    _sasrec(
        toys_data,
        "--include-history",
        "--out",
        str(tmp_path / "p5.parquet"),
        "--embeddings-out",
        str(tmp_path / "p5.safetensors"),
    )
    assert provenance.read(tmp_path / "p5.parquet")["settings"]["exclude_history"] is False


def test_train_split_answers_train_prompts_without_embeddings(toys_data, tmp_path):
    out = tmp_path / "train.parquet"
    before = sorted(p.name for p in toys_data.rglob("*"))
    summary = _sasrec(toys_data, "--split", "train", "--top-k", "50", "--out", str(out))
    assert "embeddings" not in summary and sorted(p.name for p in toys_data.rglob("*")) == before
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS).filter(
        (pl.col("split") == "train") & ~pl.col("target").str.to_lowercase().is_in(["yes", "no"])
    )
    df = pl.read_parquet(out)
    assert sorted(df["prompt_id"]) == sorted(prompts["prompt_id"]) and (df["ranked"].list.len() == 50).all()
    assert provenance.read(out)["settings"]["split"] == "train"
    code, _, err = run_cli(
        "baseline", "sasrec", "--data", str(toys_data), "--split", "train", "--embeddings-out", str(tmp_path / "x")
    )
    assert code == 2 and "--embeddings-out" in err
    code, _, err = run_cli(
        "baseline", "sasrec", "--data", str(toys_data), "--split", "valid", "--valid-out", str(tmp_path / "v")
    )
    assert code == 2 and "--valid-out" in err and not (tmp_path / "v").exists()


def test_cli_defaults_are_the_config_defaults():
    from typer.main import get_command

    from recsys_cli.commands.baseline import app

    cmd = get_command(app).commands["sasrec"]
    defaults = {p.name: p.default for p in cmd.params}
    cfg = SASRecConfig()
    for name in (
        "max_epochs",
        "patience",
        "hidden",
        "blocks",
        "heads",
        "max_len",
        "dropout",
        "lr",
        "batch_size",
        "negatives",
        "threads",
        "max_minutes",
        "exclude_history",
        "refit",
    ):
        assert defaults[name] == getattr(cfg, name), name


def test_popularity_refuses_the_train_split(toys_data):
    code, _, err = run_cli("baseline", "popularity", "--data", str(toys_data), "--split", "train")
    assert code == 2 and "sasrec --split train" in err
