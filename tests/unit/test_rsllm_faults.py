"""The three RSLLM faults of issue 28 (docs/rsllm.md) and the shipped RSLLM recipes:
1. the item loss's title side never sees the item's own soft token (it is encoded alone);
2. only prompts that show a history (sequential, direct) take part in the user loss;
3. a negative yes/no train prompt's history stops at its own position;
4. recipes/pretrain/rsllm-*.yaml run stage 1 then stage 2 in one `recsys pretrain`.

    python -m pytest tests/unit/test_rsllm_faults.py -q
"""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from recsys_cli.artifacts import item_embeddings
from recsys_cli.baselines import sasrec, sasrec_train
from recsys_cli.baselines.sasrec_encoder import UserEncoder, to_item_embeddings
from recsys_cli.data import split as loo
from recsys_cli.data.rsllm import HybridExample, history_rows, item_rows, prompt_history, shown_position
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.modeling.rsllm import HybridModules
from recsys_cli.training.data import ExampleStream, HybridSpec, load_sources
from recsys_cli.training.recipe import HybridArgs, load_recipe
from recsys_cli.training.rsllm import collate_hybrid, hybrid_step, title_text
from tests.conftest import ROOT, run_cli
from tests.unit.test_hybrid_model import SAS, _hyb, _lm, sas, setup  # noqa: F401 (sas, setup: fixtures)

RECIPES = [ROOT / "recipes/pretrain/rsllm-cpu.yaml", ROOT / "recipes/pretrain/rsllm-gpu.yaml"]


def _entity_ids(spans) -> list[str]:
    """A prompt's entity ids in text order (TokenizedDoc.entity_ids' order)."""
    return [e["entity_id"] for e in sorted(spans, key=lambda e: (e["start"], e["end"]))]


# --- 1. the item loss cannot be met by copying the soft token ---------------------------------


def test_title_side_of_the_item_loss_never_sees_its_soft_token(setup):  # noqa: F811
    lm, b = setup["lm"].eval(), setup["batch"]()
    n = len(b["lengths"])  # the examples' rows; the packed title rows follow
    soft = (b["soft_b"], b["soft_pos"], b["soft_row"])

    def forward():
        with torch.no_grad():
            out = lm(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], soft=soft, hidden=True)
            return out.hidden, title_text(lm, b, out.hidden, "hidden")

    h0, t0 = forward()
    saved = lm.hybrid.table.clone()
    try:
        noise = torch.randn(saved.shape, generator=torch.Generator().manual_seed(1))
        lm.hybrid.table.add_(noise * 3.0)  # every soft token's embedding moves
        h1, t1 = forward()
    finally:
        lm.hybrid.table.copy_(saved)
    in_context = b["input_ids"][:n] != setup["tok"].pad_token_id
    assert not torch.allclose(h0[:n][in_context], h1[:n][in_context], atol=1e-3)  # the prompts' states do move...
    assert torch.allclose(t0, t1, atol=1e-6)  # ...the title side the loss reads does not
    k = 0  # and it is the title encoded alone: its own short sequence, inter 0..n-1, Part A intra ids
    toks = b["title_tok"] == k
    ids, intra = b["title_ids"][toks][None], b["intra"][b["title_b"][toks], b["title_pos"][toks]][None]
    m = ids.shape[1]
    with torch.no_grad():
        alone = lm(ids, torch.arange(m)[None], intra, torch.zeros(1, 1, m, m), hidden=True).hidden[0].mean(0)
    assert torch.allclose(alone, t0[k], atol=1e-5)
    lm.train()


def test_item_loss_gradient_reaches_the_llm_through_the_title_rows(setup):  # noqa: F811
    lm, b = setup["lm"], setup["batch"]()
    lm.zero_grad(set_to_none=True)
    hybrid_step(lm, lm, b, _hyb(item_loss_weight=1.0, user_loss_weight=0.0), setup["enc"])["item_loss"].backward()
    lora = [p.grad for n, p in lm.named_parameters() if "lora_" in n and p.grad is not None]
    assert lora and any(g.abs().sum() > 0 for g in lora)  # the text side is trained too, not only the projector
    assert lm.hybrid.projector.net[0].weight.grad.abs().sum() > 0
    lm.zero_grad(set_to_none=True)


# --- 2. the user loss only on prompts that carry a history ------------------------------------


@pytest.fixture(scope="module")
def musical(musical_data, tok, tiny_model):
    """The Musical Instruments slice (train prompts of all five families), a tiny SASRec on it
    and a stage-2 ExampleStream."""
    seqs = pl.read_parquet(musical_data / "sequences.parquet")
    enc, vocab = sasrec.encode_sequences(seqs["items"].to_list())
    model, _ = sasrec_train.train(enc, len(vocab), SAS)
    emb = to_item_embeddings(model, SAS, vocab, None)
    rows = item_rows(emb.item_ids)
    src = load_sources(musical_data, tok, need_corpus=False)
    recipe = load_recipe(None, [("train.max_steps", 4), ("train.max_length", 256)])
    stream = ExampleStream(src, recipe, SpecialIds.from_tokenizer(tok), HybridSpec(rows, int(tok.pad_token_id)))
    return {"emb": emb, "rows": rows, "src": src, "stream": stream}


def test_rating_explanation_and_review_prompts_get_no_user_loss_term(musical, tiny_model):
    src, stream = musical["src"], musical["stream"]
    fams = ["sequential", "rating", "direct", "explanation", "review", "sequential", "direct", "rating"]
    picked, exs = {}, []
    for fam in fams:
        j = picked[fam] = picked.get(fam, -1) + 1
        (s, t), key = src.prompts[fam][j], src.keys[fam][j]
        exs.append(stream.prompt(s, t, key, family=fam))
        if fam in ("rating", "explanation", "review"):
            assert isinstance(exs[-1], HybridExample) and exs[-1].history == []  # a hybrid prompt without a user term
    old = [history_rows(src.sequences[k[0]], k[2], k[1], musical["rows"]) for k in src.keys["rating"][:5]]
    assert any(old)  # the old rule gave rating prompts a history
    with_history = [i for i, f in enumerate(fams) if f in ("sequential", "direct")]
    assert all(exs[i].history for i in with_history)
    mixed = collate_hybrid(exs, 0, torch.float32, history_len=SAS.max_len)
    assert mixed["user_b"].tolist() == with_history
    lm, _, _ = _lm(tiny_model, musical["emb"], HybridArgs(embeddings="x"))
    enc, hyb = UserEncoder(musical["emb"]), _hyb(item_loss_weight=0.0, user_loss_weight=1.0)
    only = collate_hybrid([exs[i] for i in with_history], 0, torch.float32, history_len=SAS.max_len)
    with torch.no_grad():
        a, c = hybrid_step(lm.eval(), lm, mixed, hyb, enc), hybrid_step(lm, lm, only, hyb, enc)
    assert float(a["user_loss"]) == pytest.approx(float(c["user_loss"]), abs=1e-5)  # the other prompts add nothing


# --- 3. a negative yes/no prompt's history stops at its position ------------------------------


def test_negative_yes_no_history_stops_at_the_prompt_position(toys_data):
    prompts = (
        pl.read_parquet(toys_data / "prompts.parquet")
        .filter((pl.col("split") == "train") & pl.col("family").is_in(["sequential", "direct"]))
        .sort("prompt_id")
    )
    seqs = pl.read_parquet(toys_data / "sequences.parquet")
    seqs = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    rows = item_rows(sorted({i for s in seqs.values() for i in s}))
    negatives, positives, leaked = 0, 0, 0
    for p in prompts.iter_rows(named=True):
        seq, shown = seqs[p["user_id"]], _entity_ids(p["source_entities"])
        if p["item_id"] in seq:  # a positive prompt: its position is known; the rule finds it from the history shown
            if len(set(seq)) == len(seq):
                history_shown = [e for e in shown if e != f"item:{p['item_id']}"]  # yes/no prompts name their item too
                assert shown_position(seq, history_shown) == seq.index(p["item_id"])
                positives += 1
            continue
        t = shown_position(seq, shown)
        hist = prompt_history(seq, p["family"], "train", p["item_id"], shown, rows)
        assert t is not None and t in loo.train_positions(len(seq))
        shown_items = [e[len("item:") :] for e in shown if e[len("item:") :] in seq]
        assert shown_items == seq[max(0, t - 10) : t]  # the history its text shows ends right before t
        assert hist == [rows[i] for i in seq[:t]]  # no history item at or after the position
        old = history_rows(seq, "train", p["item_id"], rows)  # the old fallback: items[:-2]
        leaked += len(old) > t
        negatives += 1
    assert negatives > 50 and positives > 500 and leaked > negatives // 2  # the fault was real on most of them


def test_prompt_history_rules():
    seq = list("abcdefgh")
    rows = item_rows(seq)
    assert prompt_history(seq, "rating", "train", "c", [], rows) == []  # no history in that family
    assert prompt_history(seq, "direct", "train", "z", ["item:b", "item:z", "item:c"], rows) == [1, 2, 3]
    assert prompt_history(seq, "direct", "train", "z", ["item:z"], rows) == []  # no position: nothing, never items[:-2]
    assert prompt_history(seq, "direct", "train", "z", ["item:f", "item:g"], rows) == []  # past the training part
    assert prompt_history(seq, "sequential", "valid", "g", [], rows) == [1, 2, 3, 4, 5, 6]


# --- 4. the shipped recipes run both stages ---------------------------------------------------


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_rsllm_recipes_run_both_stages(path):
    r = load_recipe(path)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# recsys pretrain ") and path.name in first
    h = r.hybrid
    assert h.embeddings == "{data}/baselines/sasrec.safetensors" and h.init_checkpoint is None
    assert 0 < h.stage1_steps < r.train.max_steps and h.item_loss_weight > 0 and h.user_loss_weight > 0


def test_rsllm_recipe_trains_stage_1_then_stage_2_in_one_run(toys_entities, tmp_path, tiny_model):
    data = tmp_path / "R"
    shutil.copytree(toys_entities, data)  # `baseline sasrec` writes R/baselines/: a private copy
    sas_args = [
        "--max-epochs",
        "1",
        "--hidden",
        "8",
        "--blocks",
        "1",
        "--max-len",
        "10",
        "--seed",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "sas.parquet"),
        "--quiet",
    ]
    code, _, err = run_cli("baseline", "sasrec", "--data", str(data), *sas_args)
    assert code == 0, err
    assert (data / "baselines" / "sasrec.safetensors").is_file()
    recipe = RECIPES[0]
    text_only = tmp_path / "text-only.yaml"  # the same recipe without its hybrid section: what stage 1 must equal
    lines = recipe.read_text().splitlines()
    cut = lines.index("hybrid:")
    end = next((j for j in range(cut + 1, len(lines)) if lines[j][:1].isalpha()), len(lines))
    text_only.write_text("\n".join(lines[:cut] + lines[end:]) + "\n")
    common = [
        "--set",
        f"model.name={tiny_model}",
        "--max-length",
        "64",
        "--batch-size",
        "4",
        "--save-every",
        "100",
        "--eval-every",
        "100",
        "--set",
        "train.warmup_steps=1",
        "--set",
        "eval.eval_prompts=4",
        "--quiet",
        "--json",
    ]
    runs = {}
    plan = (
        ("both", recipe, ["--max-steps", "4", "--set", "hybrid.stage1_steps=2"]),
        ("text", text_only, ["--max-steps", "2"]),
    )
    for name, cfg, extra in plan:
        out = str(tmp_path / name)
        code, _, err = run_cli("pretrain", "--data", str(data), "--config", str(cfg), "--out", out, *extra, *common)
        assert code == 0, err
        runs[name] = tmp_path / name
    rows = [json.loads(x) for x in (runs["both"] / "metrics.jsonl").read_text().splitlines()]
    text = [json.loads(x) for x in (runs["text"] / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [1, 1, 2, 2]
    assert all(r["item_loss"] > 0 and r["user_loss"] > 0 for r in rows[2:])
    stage1 = [r["loss"] for r in rows[:2]]
    assert stage1 == pytest.approx([r["loss"] for r in text], abs=1e-6)  # stage 1 is the text-only run
    adapter = lambda c: load_file(str(c / "adapter" / "adapter_model.safetensors"))  # noqa: E731
    after1, after2 = adapter(runs["text"]), adapter(runs["both"])
    lora_b = [k for k in after1 if "lora_B" in k]
    assert lora_b and any(after1[k].abs().sum() > 0 for k in lora_b)  # stage 1 moved the adapter (lora_B starts at 0)
    assert any(not torch.equal(after1[k], after2[k]) for k in lora_b)  # stage 2 moved it again
    cfg = json.loads((runs["both"] / "recsys_checkpoint.json").read_text())
    assert cfg["hybrid"]["embeddings"] == str((data / "baselines" / "sasrec.safetensors").resolve())  # {data} = --data
    emb = item_embeddings.load(data / "baselines" / "sasrec.safetensors")
    torch.manual_seed(load_recipe(recipe).train.seed)  # build_hybrid's seeded init (net weights: seed and shapes only)
    init = HybridModules(emb.table, cfg["hybrid"]["hidden"], "mlp2", cfg["hybrid"]["projector_hidden"], 1.0, "rms")
    ex = load_file(str(runs["both"] / "extras.safetensors"))
    assert not torch.equal(ex["hybrid.projector.net.0.weight"], init.projector.net[0].weight.detach())  # trained
    assert json.loads((runs["text"] / "recsys_checkpoint.json").read_text())["hybrid"] is None
