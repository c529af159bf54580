"""ID-aware listwise candidates (RSLLM x rerank, docs/rerank.md "ID-aware candidates"): with a
hybrid checkpoint each candidate title may carry its projected SASRec item embedding as a soft
token, placed by the history rule (data/rsllm.hybridize), counted in the length budget, read
by the score, trained by `listwise.candidate_ids`, switched by `infer --listwise-candidate-ids`.

    python -m pytest tests/unit/test_listwise_ids.py -q
"""

from __future__ import annotations

import json
import random

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.artifacts import provenance, schemas  # noqa: E402
from recsys_cli.data import listwise as lw  # noqa: E402
from recsys_cli.data.rsllm import hybridize  # noqa: E402
from recsys_cli.errors import RecsysError  # noqa: E402
from tests.conftest import ROOT, run_cli  # noqa: E402

SAS = ["--max-epochs", "1", "--hidden", "8", "--blocks", "1", "--max-len", "10", "--seed", "1", "--threads", "1"]
TINY = str(ROOT / "recipes/pretrain/tiny-cpu.yaml")


def _titles(tok, names):
    return [lw.title_tokens(tok(" " + n, add_special_tokens=False)["input_ids"]) for n in names]


def test_each_candidate_soft_token_sits_right_after_its_title(tok, special):
    vocab = lw.Vocab.of(tok)
    hist = list(zip(["h1", "h2"], _titles(tok, ["Kite", "Yo-yo Deluxe"])))
    items = ["c1", "c2", "c3"]
    cands = _titles(tok, ["Robot Kit", "Doll House With Furniture", "Wooden Train"])
    rows = {"h1": 1, "h2": 2, "c1": 5, "c3": 7}  # c2 is unknown to the recommender: no soft token
    doc = lw.build(vocab, lw.TEMPLATES[0], hist, cands, 512, rows, items)
    assert doc.entity_ids == ["item:h1", "item:h2", "item:c1", "item:c2", "item:c3"]
    ids, intra, soft = lw.part_a(doc, special, rows, placeholder=3)
    assert [r for _, r in soft] == [1, 2, 5, 7]
    ex = lw.example(doc, 1, 3, vocab, special)
    hx = hybridize(ex, doc.entity_ids, rows, 3)  # training lays Part A out identically
    assert hx.input_ids[: hx.part_a_len] == ids and hx.intra[: hx.part_a_len] == intra
    assert hx.inter[: hx.part_a_len] == list(range(hx.part_a_len))  # a soft token takes an inter position like a token
    assert hx.inter[hx.part_a_len] == hx.part_a_len - 1  # [START] at the shifted [gM]
    for k, (j, title) in enumerate([(0, cands[0]), (2, cands[2])]):
        pos = soft[2 + k][0]
        assert ids[pos] == 3 and ids[pos - len(title) : pos] == title  # right after its own title
        assert ids[pos - len(title) - 1] == vocab.labels[j]  # ... which follows the candidate's label
        assert intra[pos - len(title) : pos + 1] == list(range(1, len(title) + 2))  # the title's intra, then n + 1
    c2 = ids.index(vocab.labels[1]) + 1
    assert ids[c2 : c2 + len(cands[1]) + 1] == [*cands[1], vocab.cand_sep[0]]  # unknown item: no soft token
    plain = lw.build(vocab, lw.TEMPLATES[0], hist, cands, 512, rows)  # switch off: history soft tokens only
    assert [r for _, r in lw.part_a(plain, special, rows, placeholder=3)[2]] == [1, 2]


def test_candidate_soft_tokens_count_in_the_length_check(tok):
    vocab = lw.Vocab.of(tok)
    items = [f"c{i}" for i in range(6)]
    cands = _titles(tok, [f"Puzzle Box Number {i}" for i in range(6)])
    rows = {i: n + 1 for n, i in enumerate(items)}
    tpl = lw.TEMPLATES[1]
    assert lw.candidate_soft(items, rows) == 6 and lw.candidate_soft(items, None) == lw.candidate_soft(None, rows) == 0
    need = lw.fixed_length(vocab, tpl, cands, 6) + len(vocab.empty)
    assert need == lw.fixed_length(vocab, tpl, cands) + len(vocab.empty) + 6
    lw.build(vocab, tpl, [], cands, need - 1, rows)  # fits without the candidate IDs ...
    with pytest.raises(RecsysError) as err:  # ... and is refused in one line with them
        lw.build(vocab, tpl, [], cands, need - 1, rows, items)
    assert "\n" not in str(err.value) and f"need {need} tokens" in str(err.value)
    hist = list(zip(["h1", "h2"], _titles(tok, ["Kite", "Marbles"])))
    doc = lw.build(vocab, tpl, hist, cands, need + 3, {**rows, "h1": 9, "h2": 10}, items)
    assert doc.entity_ids[0] == "item:h2" and len(doc.entity_ids) == 7  # the older history title made room


# --- a tiny RSLLM: SASRec embeddings, train-split candidates, a hybrid checkpoint ----------


@pytest.fixture(scope="module")
def rsllm(toys_entities, tmp_path_factory):
    d = tmp_path_factory.mktemp("listwise-ids")
    emb, train = d / "sas.safetensors", d / "sas-train.parquet"
    valid = ["--split", "valid", "--no-refit", "--out", str(d / "sas-valid.parquet"), "--embeddings-out", str(emb)]
    for args in (valid, ["--split", "train", "--out", str(train)]):
        code, _, err = run_cli(
            "baseline", "sasrec", "--data", str(toys_entities), *SAS, "--top-k", "20", *args, "--quiet"
        )
        assert code == 0, err
    return {"data": toys_entities, "d": d, "emb": emb, "train": train}


def _hybrid_lm(tiny_model, emb_path):
    from recsys_cli.artifacts import item_embeddings
    from recsys_cli.data.rsllm import item_rows
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.modeling.rsllm import build_hybrid
    from recsys_cli.training.recipe import HybridArgs

    lm, tok, _ = load_base_for_inference(tiny_model)
    emb = item_embeddings.load(emb_path)
    build_hybrid(lm, emb, HybridArgs(embeddings=str(emb_path)), seed=0)
    return lm.eval(), tok, item_rows(emb.item_ids)


def test_a_candidate_item_embedding_reaches_its_score_only_with_the_switch(rsllm, tiny_model):
    from recsys_cli.inference.engine import Engine
    from recsys_cli.inference.listwise import ListwiseScorer
    from recsys_cli.inference.options import InferOptions

    lm, tok, rows = _hybrid_lm(tiny_model, rsllm["emb"])
    data = rsllm["data"]
    items = pl.read_parquet(data / schemas.ITEMS)
    seqs = pl.read_parquet(data / schemas.SEQUENCES)
    sequences = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    prompts = pl.read_parquet(data / schemas.PROMPTS).filter(
        (pl.col("split") == "test") & (pl.col("family") == "sequential")
    )
    row = prompts.row(0, named=True)
    unseen = [i for i in items["item_id"].to_list() if i not in set(sequences[row["user_id"]]) and i in rows]
    cands = random.Random(0).sample(unseen, 8)
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))

    def score(on: bool) -> list[float]:
        opts = InferOptions(item_scoring="listwise", listwise_candidate_ids=on)
        scorer = ListwiseScorer(Engine(lm, tok, opts, None, None, titles, hybrid_rows=rows), sequences, "test")
        with torch.inference_mode():
            return scorer.score([row], [cands])[0]

    r = rows[cands[3]]
    before_on, before_off = score(True), score(False)
    assert before_on != pytest.approx(before_off, abs=1e-5)  # the candidate IDs are read at all
    saved = lm.hybrid.table[r].clone()
    try:
        with torch.no_grad():
            lm.hybrid.table[r] = torch.randn(saved.shape, generator=torch.Generator().manual_seed(1)) * 3
        after_on, after_off = score(True), score(False)
    finally:
        with torch.no_grad():
            lm.hybrid.table[r] = saved
    assert abs(after_on[3] - before_on[3]) > 1e-4  # candidate 3's own ID embedding moved its score
    assert after_off == before_off  # switch off: the candidate's embedding never reaches the prompt
    assert score(True) == before_on  # restored: the same scores again


def test_training_with_candidate_ids_puts_them_in_examples_and_trains_the_projector(rsllm, tiny_model, tmp_path):
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    sets = [
        ("model.name", tiny_model),
        ("train.max_steps", 2),
        ("train.batch_size", 2),
        ("train.max_length", 96),
        ("train.precision", "fp32"),
        ("eval.eval_every", 100),
        ("train.save_every", 100),
        ("hybrid.embeddings", str(rsllm["emb"])),
        ("hybrid.item_loss_weight", 0.0),
        ("hybrid.user_loss_weight", 0.0),
        ("listwise.candidates", str(rsllm["train"])),
        ("listwise.k", 6),
        ("listwise.weight", 1.0),
    ]
    on = Trainer(load_recipe(None, sets + [("listwise.candidate_ids", True)]), rsllm["data"], tmp_path / "on")
    off = Trainer(load_recipe(None, sets), rsllm["data"], tmp_path / "off")
    for i in range(4):
        a, b = on.stream.example(i, stage=2), off.stream.example(i, stage=2)
        k = len(a.allowed[a.part_a_len])
        assert a.labels[-1] == b.labels[-1] and k == 6  # the same draw
        assert len(a.soft) == len(b.soft) + k and len(a) == len(b) + k  # one soft token per candidate
        assert [r for _, r in a.soft][: len(b.soft)] == [r for _, r in b.soft]  # the history's, then the candidates'
        assert [(p, r) for p, r in a.soft] == [(e, r) for _, e, r in a.titles]  # each right after its title
    assert on.r.to_dict()["listwise"]["candidate_ids"] is True  # the checkpoint's recipe records it
    before = {n: p.detach().clone() for n, p in on.lm.named_parameters() if p.requires_grad}
    assert on.train()["steps"] == 2
    moved = {n for n, p in on.lm.named_parameters() if n in before and not p.detach().equal(before[n])}
    assert any(n.startswith("hybrid.projector") for n in moved) and any("lora" in n for n in moved)
    with pytest.raises(RecsysError, match="listwise.candidate_ids needs an RSLLM run"):
        load_recipe(None, sets[:7] + [("listwise.candidate_ids", True)])


@pytest.fixture(scope="module")
def ckpt(rsllm, tiny_model):
    out = rsllm["d"] / "C"
    code, stdout, err = run_cli(
        "pretrain",
        "--data",
        str(rsllm["data"]),
        "--config",
        TINY,
        "--out",
        str(out),
        "--max-length",
        "64",
        "--batch-size",
        "2",
        "--save-every",
        "100",
        "--max-steps",
        "1",
        "--eval-every",
        "100",
        "--set",
        f"hybrid.embeddings={rsllm['emb']}",
        "--set",
        f"listwise.candidates={rsllm['train']}",
        "--set",
        "listwise.k=6",
        "--set",
        "listwise.weight=0.5",
        "--set",
        "listwise.candidate_ids=true",
        "--quiet",
        "--json",
    )
    assert code == 0, err
    return out


def test_cli_writes_valid_distinct_lists_and_records_the_setting(rsllm, ckpt, tiny_model, tmp_path):
    data = rsllm["data"]
    cfg = json.loads((ckpt / schemas.CKPT_CONFIG).read_text())
    assert cfg["recipe"]["listwise"]["candidate_ids"] is True and cfg["hybrid"]

    def infer(out, *more):
        return run_cli(
            "infer",
            "--data",
            str(data),
            "--checkpoint",
            str(ckpt),
            "--out",
            str(out),
            "--item-scoring",
            "listwise",
            "--candidates-from",
            str(rsllm["d"] / "sas-valid.parquet"),
            "--rerank-k",
            "10",
            "--split",
            "valid",
            "--family",
            "sequential",
            "--users",
            "2",
            *more,
            "--quiet",
        )

    items = set(pl.read_parquet(data / schemas.ITEMS)["item_id"].to_list())
    got = {}
    for name, more in (("default", ()), ("off", ("--no-listwise-candidate-ids",))):
        out = tmp_path / f"{name}.parquet"
        code, _, err = infer(out, *more)
        assert code == 0, err
        got[name] = pl.read_parquet(out).sort("prompt_id")
        assert provenance.read(out)["settings"]["listwise"]["candidate_ids"] is (name == "default")
        assert got[name].height == 2  # one valid sequential prompt per user
        for r in got[name].iter_rows(named=True):
            assert r["valid"] and len(r["ranked"]) == len(set(r["ranked"])) == 20 and set(r["ranked"]) <= items
    assert got["default"]["scores"].to_list() != got["off"]["scores"].to_list()  # the candidate IDs were read
    assert [sorted(x[:10]) for x in got["default"]["ranked"]] == [sorted(x[:10]) for x in got["off"]["ranked"]]
    # asked for without a hybrid checkpoint, or without listwise scoring: one line each, nothing written
    out = tmp_path / "x.parquet"
    for args in (
        ("--checkpoint", "none", "--model", tiny_model, "--item-scoring", "listwise", "--listwise-candidate-ids"),
        ("--checkpoint", str(ckpt), "--listwise-candidate-ids"),
    ):
        code, _, err = run_cli(
            "infer",
            "--data",
            str(data),
            "--out",
            str(out),
            "--candidates-from",
            str(rsllm["d"] / "sas-valid.parquet"),
            "--rerank-k",
            "10",
            "--split",
            "valid",
            "--limit",
            "1",
            *args,
            "--quiet",
        )
        lines = [x for x in err.splitlines() if x.strip()]
        assert code != 0 and len(lines) == 1 and "Traceback" not in err and "--listwise-candidate-ids" in lines[0], err
    assert not out.exists()
