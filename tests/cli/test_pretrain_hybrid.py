"""RSLLM wired into `recsys pretrain` and `recsys infer` (docs/rsllm.md): two stages with separate
loss columns, the hybrid checkpoint at infer (every mode, reproducible, the projector really
used), the continuation from a text-only checkpoint, each ablation flag in the real pretrain
path, and Part A positions around soft tokens equal in training and inference.

    python -m pytest tests/cli/test_pretrain_hybrid.py -q -p no:xdist
"""

from __future__ import annotations

import hashlib
import json
import shutil

import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save_file

from recsys_cli.artifacts import item_embeddings
from recsys_cli.modeling.rsllm import HybridModules
from recsys_cli.training.recipe import load_recipe
from tests.conftest import ROOT, run_cli

TINY = str(ROOT / "recipes/pretrain/tiny-cpu.yaml")
SAS = ["--max-epochs", "1", "--hidden", "8", "--blocks", "1", "--max-len", "10", "--seed", "1", "--threads", "1"]
SHORT = ["--max-length", "64", "--batch-size", "4", "--save-every", "100"]


def _pretrain(data, out, *args):
    code, stdout, err = run_cli(
        "pretrain", "--data", str(data), "--config", TINY, "--out", str(out), *SHORT, *args, "--quiet", "--json"
    )
    assert code == 0, err
    return json.loads(stdout)


def _rows(ckpt):
    return [json.loads(x) for x in (ckpt / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def run(toys_entities, tmp_path_factory):
    """SASRec file + predictions, a text-only stage-1 checkpoint and a two-stage hybrid one."""
    d = tmp_path_factory.mktemp("rsllm")
    code, _, err = run_cli(
        "baseline",
        "sasrec",
        "--data",
        str(toys_entities),
        *SAS,
        "--top-k",
        "20",
        "--out",
        str(d / "sas.parquet"),
        "--embeddings-out",
        str(d / "sas.safetensors"),
        "--quiet",
    )
    assert code == 0, err
    emb = d / "sas.safetensors"
    _pretrain(toys_entities, d / "text", "--max-steps", "2", "--eval-every", "2")
    _pretrain(
        toys_entities,
        d / "hyb",
        "--max-steps",
        "4",
        "--eval-every",
        "4",
        "--set",
        f"hybrid.embeddings={emb}",
        "--set",
        "hybrid.stage1_steps=2",
    )
    return {"data": toys_entities, "d": d, "emb": emb, "text": d / "text", "hyb": d / "hyb"}


def _seeded_init(emb_path, seed: int = 0) -> HybridModules:
    """The projector + head build_hybrid starts from (net weights depend only on seed and shapes)."""
    emb = item_embeddings.load(emb_path)
    torch.manual_seed(seed)
    return HybridModules(emb.table, 64, "mlp2", 256, 1.0, "rms")


def _extras(ckpt) -> dict:
    return load_file(str(ckpt / "extras.safetensors"))


def test_two_stages_write_stage_and_loss_columns_and_train_the_projector(run):
    rows = _rows(run["hyb"])
    assert [r["stage"] for r in rows] == [1, 1, 2, 2]
    assert all(r["item_loss"] is None and r["user_loss"] is None and r["lm_loss"] == r["loss"] for r in rows[:2])
    for r in rows[2:]:
        assert r["item_loss"] > 0 and r["user_loss"] > 0
        assert r["loss"] == pytest.approx(r["lm_loss"] + 0.1 * r["item_loss"] + 0.1 * r["user_loss"], rel=1e-4)
    assert rows[2]["lr"] == rows[0]["lr"]  # restart_schedule: stage 2 warms up again
    cfg = json.loads((run["hyb"] / "recsys_checkpoint.json").read_text())
    assert cfg["hybrid"]["projector"] == "mlp2" and len(cfg["hybrid"]["embeddings_sha256"]) == 64
    ex, init = _extras(run["hyb"]), _seeded_init(run["emb"])
    assert not torch.equal(ex["hybrid.projector.net.0.weight"], init.projector.net[0].weight.detach())
    assert not torch.equal(ex["hybrid.user_head.weight"], init.user_head.weight.detach())
    assert json.loads((run["text"] / "recsys_checkpoint.json").read_text())["hybrid"] is None
    assert not any(k.startswith("hybrid.") for k in _extras(run["text"]))


def _infer(run, ckpt, out, *args):
    code, stdout, err = run_cli(
        "infer",
        "--data",
        str(run["data"]),
        "--checkpoint",
        str(ckpt),
        "--users",
        "1",
        "--top-k",
        "3",
        "--out",
        str(out),
        "--overwrite",
        *args,
        "--quiet",
        "--json",
    )
    assert code == 0, err
    return pl.read_parquet(out), json.loads(stdout)


def test_hybrid_checkpoint_infers_every_mode_reproducibly_with_its_projector(run, tmp_path):
    a, summary = _infer(run, run["hyb"], tmp_path / "a.parquet")
    assert {"items", "candidates"} <= set(summary["modes"]) and a["valid"].all()
    b, _ = _infer(run, run["hyb"], tmp_path / "b.parquet")
    assert a["scores"].to_list() == b["scores"].to_list() and a["ranked"].to_list() == b["ranked"].to_list()
    from recsys_cli.artifacts.provenance import read

    prov = read(tmp_path / "a.parquet")
    assert (
        prov["producer"]["hybrid"]["embeddings_sha256"]
        == json.loads((run["hyb"] / "recsys_checkpoint.json").read_text())["hybrid"]["embeddings_sha256"]
    )
    # the same adapter with the projector's output layer zeroed scores differently: the projector is used
    zero = tmp_path / "zero"
    shutil.copytree(run["hyb"], zero, ignore=shutil.ignore_patterns("predictions", "train_state"))
    ex = _extras(zero)
    ex["hybrid.projector.net.2.weight"].zero_()
    ex["hybrid.projector.net.2.bias"].zero_()
    save_file(ex, str(zero / "extras.safetensors"))
    cfg = json.loads((zero / "recsys_checkpoint.json").read_text())  # a deliberate edit: its new sha256 recorded
    cfg["files_sha256"]["extras.safetensors"] = hashlib.sha256((zero / "extras.safetensors").read_bytes()).hexdigest()
    (zero / "recsys_checkpoint.json").write_text(json.dumps(cfg))
    z, _ = _infer(run, zero, tmp_path / "z.parquet")
    assert z["scores"].to_list() != a["scores"].to_list()
    # rerank (two-stage, --candidates-from) runs with the soft tokens too
    r, summary = _infer(
        run,
        run["hyb"],
        tmp_path / "r.parquet",
        "--family",
        "sequential",
        "--candidates-from",
        str(run["d"] / "sas.parquet"),
        "--rerank-k",
        "5",
    )
    assert summary["modes"]["rerank"]["prompts"] == r.height > 0 and r["valid"].all()


def test_other_embeddings_are_refused_in_one_line(run, tmp_path):
    emb = item_embeddings.load(run["emb"])
    emb.table = emb.table.clone()
    emb.table[1] += 1.0
    other = tmp_path / "other.safetensors"
    item_embeddings.save(other, emb)
    code, _, err = run_cli(
        "infer",
        "--data",
        str(run["data"]),
        "--checkpoint",
        str(run["hyb"]),
        "--limit",
        "1",
        "--out",
        str(tmp_path / "p.parquet"),
        "--hybrid-embeddings",
        str(other),
        "--quiet",
    )
    assert (
        code == 2
        and "differ from the ones this checkpoint was trained with" in err
        and len(err.strip().splitlines()) == 1
    )
    code, _, err = run_cli(
        "infer",
        "--data",
        str(run["data"]),
        "--checkpoint",
        str(run["text"]),
        "--limit",
        "1",
        "--out",
        str(tmp_path / "p.parquet"),
        "--hybrid-embeddings",
        str(run["emb"]),
        "--quiet",
    )
    assert code == 2 and "text-only checkpoint" in err
    emb.table, emb.data_fingerprint = item_embeddings.load(run["emb"]).table, "0" * 64  # trained on other data
    item_embeddings.save(other, emb)
    code, _, err = run_cli(
        "pretrain",
        "--data",
        str(run["data"]),
        "--config",
        TINY,
        "--out",
        str(tmp_path / "C"),
        "--max-steps",
        "2",
        "--set",
        f"hybrid.embeddings={other}",
        "--quiet",
    )
    assert code == 2 and "trained on other data" in err and len(err.strip().splitlines()) == 1


def _trainer(run, out, **hyb):
    from recsys_cli.training.loop import Trainer

    over = [("train.max_steps", 4), ("train.max_length", 64), ("hybrid.embeddings", str(run["emb"]))]
    over += [(f"hybrid.{k}", v) for k, v in hyb.items()]
    return Trainer(load_recipe(TINY, over), run["data"], out)


def test_init_checkpoint_continues_the_text_only_adapter_and_intra_table(run, tmp_path):
    from recsys_cli.errors import RecsysError
    from recsys_cli.modeling.checkpoint import load_checkpoint

    t = _trainer(run, tmp_path / "C", init_checkpoint=str(run["text"]), stage1_steps=0)
    ref, _, _ = load_checkpoint(run["text"])
    want = {n: p for n, p in ref.named_parameters() if p.requires_grad}
    got = dict(t.lm.named_parameters())
    lora_b = [n for n in want if "lora_B" in n]
    assert lora_b and all(torch.equal(got[n], want[n]) for n in want if not n.startswith("hybrid."))
    assert any(bool(want[n].abs().sum() > 0) for n in lora_b)  # stage 1 trained them (a fresh B is zero)
    assert (
        torch.equal(t.lm.intra_embed.weight, ref.intra_embed.weight) and not t.opt.state
    )  # weights, no optimizer state
    with pytest.raises(RecsysError, match="LoRA settings"):
        from recsys_cli.training.loop import Trainer

        r = load_recipe(
            TINY,
            [
                ("train.max_steps", 4),
                ("lora.rank", 4),
                ("hybrid.embeddings", str(run["emb"])),
                ("hybrid.init_checkpoint", str(run["text"])),
            ],
        )
        Trainer(r, run["data"], tmp_path / "C2")


def test_id_tokens_off_draws_the_same_examples_without_soft_tokens(run, tmp_path):
    on, off = _trainer(run, tmp_path / "on"), _trainer(run, tmp_path / "off", id_tokens=False)
    a = [e for m in range(2) for e in on.examples(0, m)]
    b = [e for m in range(2) for e in off.examples(0, m)]
    assert sum(len(e.soft) for e in a) > 0 and all(not e.soft for e in b)
    for x, y in zip(a, b):
        keep = [i for i in range(len(x.input_ids)) if i not in {p for p, _ in x.soft}]
        assert [x.input_ids[i] for i in keep] == y.input_ids and [x.labels[i] for i in keep] == y.labels
        assert [r for _, _, r in x.titles] == [r for _, _, r in y.titles] and x.history == y.history
    # stage 1 of a two-stage run draws the plain text examples
    two = _trainer(run, tmp_path / "two", stage1_steps=2)
    assert all(type(e).__name__ == "Example" for e in two.examples(0, 0))
    assert all(type(e).__name__ == "HybridExample" for e in two.examples(2, 0))


def test_ablation_flags_in_the_pretrain_path(run, tmp_path):
    frozen = tmp_path / "frozen"
    _pretrain(
        run["data"],
        frozen,
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--set",
        f"hybrid.embeddings={run['emb']}",
        "--set",
        "hybrid.freeze_projector=true",
    )
    rows = _rows(frozen)
    assert [r["stage"] for r in rows] == [2, 2] and all(
        r["item_loss"] is not None for r in rows
    )  # stage1_steps 0: single stage
    ex, init = _extras(frozen), _seeded_init(run["emb"])
    for k, v in init.projector.state_dict().items():
        if k != "gain":  # the gain starts at the token-embedding RMS of the base
            assert torch.equal(ex[f"hybrid.projector.{k}"], v), k
    plain = tmp_path / "nolosses"
    _pretrain(
        run["data"],
        plain,
        "--max-steps",
        "2",
        "--eval-every",
        "2",
        "--set",
        f"hybrid.embeddings={run['emb']}",
        "--set",
        "hybrid.item_loss_weight=0",
        "--set",
        "hybrid.user_loss_weight=0",
    )
    for r in _rows(plain):
        assert r["item_loss"] is None and r["user_loss"] is None and r["loss"] == r["lm_loss"]


def test_part_a_positions_around_soft_tokens_match_training(run, tmp_path):
    from recsys_cli.inference.engine import Engine
    from recsys_cli.inference.options import InferOptions

    t = _trainer(run, tmp_path / "C")
    p = (
        pl.read_parquet(run["data"] / "prompts.parquet")
        .filter((pl.col("split") == "train") & (pl.col("family") == "sequential"))
        .sort("prompt_id")
    )
    eng = Engine(None, t.tok, InferOptions(), None, None, {}, hybrid_rows=t.hyb.spec.rows)
    src, tgt = t.sources.prompts["sequential"][0], t.sources.keys["sequential"][0]
    row = p.filter((pl.col("user_id") == tgt[0]) & (pl.col("item_id") == tgt[1])).to_dicts()[0]
    ex = t.stream.prompt(*src, tgt)
    ids, intra, soft = eng.part_a([row])
    la = ex.part_a_len
    assert ex.soft and soft[0] == ex.soft and ids[0] == ex.input_ids[:la] and intra[0] == ex.intra[:la]
    assert ex.inter[:la] == list(range(la))  # prefill numbers Part A 0..la-1 the same way
    for pos, _ in ex.soft:
        assert ex.intra[pos] == ex.intra[pos - 1] + 1 and ex.labels[pos] == -100
