"""RSLLM model side on the tiny random model and a tiny SASRec trained on the Toys slice:
projector + soft tokens (modeling/rsllm.py, RecsysLM hooks), the losses (training/rsllm.py),
checkpoint round trip, ablation flags, the saved-SASRec user encoder.

    python -m pytest tests/unit/test_hybrid_model.py -q
"""

from __future__ import annotations

import copy
from dataclasses import replace

import polars as pl
import pytest
import torch

from recsys_cli.artifacts import item_embeddings
from recsys_cli.artifacts.checkpoint import CheckpointConfig, LoraSettings
from recsys_cli.baselines import sasrec, sasrec_train
from recsys_cli.baselines.sasrec_encoder import UserEncoder, left_pad, to_item_embeddings
from recsys_cli.data import tokenize
from recsys_cli.data.rsllm import history_rows, hybrid_prompt, item_rows
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.checkpoint import load_checkpoint, prepare_base, save_checkpoint
from recsys_cli.modeling.lora import attach_lora
from recsys_cli.modeling.rsllm import attach_from_checkpoint, build_hybrid
from recsys_cli.modeling.wrapper import RecsysLM
from recsys_cli.training.recipe import HybridArgs, load_recipe
from recsys_cli.training.rsllm import collate_hybrid, hybrid_step, info_nce, schedule_step, stage_of

SAS = sasrec.SASRecConfig(hidden=16, blocks=1, max_len=10, max_epochs=2, batch_size=64, threads=1, seed=0)


@pytest.fixture(scope="module")
def sas(toys_data, tmp_path_factory):
    """A tiny SASRec trained 2 epochs on the slice, saved as R/baselines/sasrec.safetensors is."""
    seqs = pl.read_parquet(toys_data / "sequences.parquet")
    enc, vocab = sasrec.encode_sequences(seqs["items"].to_list())
    model, _ = sasrec_train.train(enc, len(vocab), SAS)
    path = tmp_path_factory.mktemp("sas") / "sasrec.safetensors"
    item_embeddings.save(path, to_item_embeddings(model, SAS, vocab, None))
    return {
        "model": model,
        "path": path,
        "emb": item_embeddings.load(path),
        "seqs": dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list())),
    }


def _lm(tiny_model, emb, hyb: HybridArgs):
    torch.manual_seed(0)
    base, tok, spec, special = prepare_base(tiny_model)
    lm = RecsysLM(attach_lora(base, sorted(special.values()), rank=4, dropout=0.0), positions="glm", max_intra=64)
    lm.new_token_ids = sorted(special.values())
    build_hybrid(lm, emb, hyb, seed=0)
    return lm, tok, spec


@pytest.fixture(scope="module")
def setup(tiny_model, sas, toys_data):
    lm, tok, spec = _lm(tiny_model, sas["emb"], HybridArgs(embeddings=str(sas["path"])))
    special = SpecialIds.from_tokenizer(tok)
    rows = item_rows(sas["emb"].item_ids)
    p = (
        pl.read_parquet(toys_data / "prompts.parquet")
        .filter((pl.col("split") == "train") & (pl.col("family") == "sequential"))
        .sort("prompt_id")
        .head(6)
    )
    src = tokenize.tokenize_documents(p["source"].to_list(), p["source_entities"].to_list(), tok)
    tgt = [tokenize.tokenize_target(t, e, tok) for t, e in zip(p["target"].to_list(), p["target_entities"].to_list())]
    hists = [
        history_rows(sas["seqs"][u], "train", i, rows) for u, i in zip(p["user_id"].to_list(), p["item_id"].to_list())
    ]

    def batch(id_tokens=True, placeholder=None):
        ph = tok.pad_token_id if placeholder is None else placeholder
        exs = [hybrid_prompt(s, t, special, None, rows, ph, 128, id_tokens, h) for s, t, h in zip(src, tgt, hists)]
        return collate_hybrid(exs, tok.pad_token_id, torch.float32, history_len=SAS.max_len)

    return {"lm": lm, "tok": tok, "spec": spec, "batch": batch, "enc": UserEncoder(sas["emb"])}


def _hyb(**kw) -> HybridArgs:
    return replace(HybridArgs(embeddings="x"), **kw)


def test_projector_and_soft_tokens_receive_gradients(setup):
    lm, b = setup["lm"], setup["batch"]()
    assert len(b["soft_b"]) >= 6 and len(b["user_b"]) == 6
    lm.zero_grad(set_to_none=True)
    hybrid_step(lm, lm, b, _hyb(item_loss_weight=0.0, user_loss_weight=0.0), setup["enc"])["loss"].backward()
    grads = [p.grad for p in lm.hybrid.projector.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)  # through the soft tokens' LM loss alone
    assert lm.hybrid.user_head.weight.grad is None
    lm.zero_grad(set_to_none=True)
    hybrid_step(
        lm, lm, setup["batch"](id_tokens=False), _hyb(item_loss_weight=0.0, user_loss_weight=0.0), setup["enc"]
    )["loss"].backward()
    assert all(p.grad is None for p in lm.hybrid.projector.parameters())  # no soft tokens, no ID loss: no gradient
    lm.zero_grad(set_to_none=True)
    hybrid_step(
        lm, lm, setup["batch"](id_tokens=False), _hyb(item_loss_weight=1.0, user_loss_weight=1.0), setup["enc"]
    )["loss"].backward()
    assert lm.hybrid.projector.net[0].weight.grad.abs().sum() > 0 and lm.hybrid.user_head.weight.grad.abs().sum() > 0
    lm.zero_grad(set_to_none=True)


def test_each_loss_term_scales_with_its_weight(setup):
    lm, b, enc = setup["lm"], setup["batch"](), setup["enc"]
    with torch.no_grad():
        runs = {
            w: hybrid_step(lm, lm, b, _hyb(item_loss_weight=w[0], user_loss_weight=w[1]), enc)
            for w in [(0.0, 0.0), (0.1, 0.0), (0.0, 0.2), (0.5, 0.3)]
        }
    lm_loss = float(runs[(0.0, 0.0)]["lm_loss"])
    item, user = float(runs[(0.1, 0.0)]["item_loss"]), float(runs[(0.0, 0.2)]["user_loss"])
    assert item > 0 and user > 0 and runs[(0.0, 0.0)]["item_loss"] is None and runs[(0.1, 0.0)]["user_loss"] is None
    assert float(runs[(0.0, 0.0)]["loss"]) == lm_loss  # contrastive losses off: exactly the LM loss
    for (wi, wu), r in runs.items():
        assert float(r["lm_loss"]) == pytest.approx(lm_loss, abs=1e-6)  # the weights never change the LM term
        assert float(r["loss"]) == pytest.approx(lm_loss + wi * item + wu * user, rel=1e-5)
    assert float(runs[(0.5, 0.3)]["item_loss"]) == pytest.approx(item, rel=1e-6)


def test_soft_token_replaces_the_placeholder_embedding_and_keeps_intra(setup):
    lm = setup["lm"].eval()
    b1, b2 = setup["batch"](placeholder=setup["tok"].pad_token_id), setup["batch"](placeholder=42)
    soft = lambda b: (b["soft_b"], b["soft_pos"], b["soft_row"])  # noqa: E731
    with torch.no_grad():
        l1 = lm(b1["input_ids"], b1["inter"], b1["intra"], b1["attn_mask_4d"], soft=soft(b1)).logits
        l2 = lm(b2["input_ids"], b2["inter"], b2["intra"], b2["attn_mask_4d"], soft=soft(b2)).logits
        l3 = lm(b1["input_ids"], b1["inter"], b1["intra"], b1["attn_mask_4d"]).logits
        e = lm.embed(b1["input_ids"], b1["intra"], soft(b1))
        want = lm.hybrid.project(b1["soft_row"]) + lm.intra_embed(b1["intra"][b1["soft_b"], b1["soft_pos"]])
    assert torch.equal(l1, l2) and not torch.allclose(l1, l3)
    assert torch.allclose(e[b1["soft_b"], b1["soft_pos"]], want, atol=1e-6)  # projected ID + its intra embedding
    lm.train()


def test_hidden_states_come_from_the_same_forward(setup):
    lm, b = setup["lm"].eval(), setup["batch"]()
    args = (b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"])
    soft = (b["soft_b"], b["soft_pos"], b["soft_row"])
    with torch.no_grad():
        a = lm(*args, labels=b["labels"], soft=soft, hidden=True)
        c = lm(*args, labels=b["labels"], soft=soft)
        keep = (b["labels"] != -100).any(0).nonzero().squeeze(1)
        head = lm.base.get_output_embeddings()(a.hidden[:, keep])
    assert a.hidden.shape == (*b["input_ids"].shape, lm.base.get_input_embeddings().weight.shape[1])
    assert torch.equal(a.logits, c.logits) and float(a.loss) == float(c.loss) and not hasattr(c, "hidden")
    assert torch.allclose(head, a.logits, atol=1e-5)  # the final-norm states the LM head reads
    lm.train()


def test_hybrid_checkpoint_roundtrip_identical_logits(setup, sas, tmp_path, tiny_model):
    lm, tok, spec = copy.deepcopy(setup["lm"]), setup["tok"], setup["spec"]
    with torch.no_grad():
        for p in [*lm.hybrid.parameters(), lm.intra_embed.weight]:
            p.add_(torch.randn_like(p) * 0.1)
    desc = lm.hybrid.describe(str(sas["path"]), sas["emb"].item_ids)
    cfg = CheckpointConfig(
        base_model=spec.stored_name,
        base_fingerprint=spec.fingerprint,
        positions="glm",
        max_intra=0,
        vocab_size=0,
        special_tokens={},
        new_token_ids=[],
        lora=LoraSettings(4, 8, 0.0),
        hybrid=desc,
    )
    save_checkpoint(lm, tok, tmp_path / "C", cfg)
    b = setup["batch"]()
    args = (b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"])
    soft = (b["soft_b"], b["soft_pos"], b["soft_row"])
    with torch.no_grad():
        want = lm.eval()(*args, soft=soft).logits
    for merge in (False, True):
        lm2, _, cfg2 = load_checkpoint(tmp_path / "C", merge=merge)
        assert cfg2.hybrid == desc and any(k.startswith("hybrid.projector.") for k in lm2.extras)
        attach_from_checkpoint(lm2, cfg2.hybrid, lm2.extras, item_embeddings.load(sas["path"]))
        with torch.no_grad():
            got = lm2.eval()(*args, soft=soft).logits
        assert torch.allclose(got, want, atol=1e-5), (merge, (got - want).abs().max())
    other = item_embeddings.load(sas["path"])
    other.table = other.table + 1.0
    with pytest.raises(RecsysError, match="differs"):
        attach_from_checkpoint(lm2, cfg2.hybrid, lm2.extras, other)
    assert attach_from_checkpoint(lm2, None, lm2.extras, other) is None  # a text-only checkpoint


def test_text_only_model_has_no_extras_and_rejects_soft(setup, tiny_model):
    base, tok, _, special = prepare_base(tiny_model)
    lm = RecsysLM(base)
    assert lm.extra_tensors() == {} and lm.hybrid is None
    ids = torch.tensor([[5, 6, 7]])
    mask = torch.zeros(1, 1, 3, 3)
    with pytest.raises(ValueError, match="hybrid"):
        lm(
            ids,
            torch.arange(3)[None],
            torch.zeros_like(ids),
            mask,
            soft=(torch.tensor([0]), torch.tensor([1]), torch.tensor([1])),
        )


def test_freeze_projector_changes_only_the_projector(tiny_model, sas, setup):
    free, _, _ = _lm(tiny_model, sas["emb"], _hyb())
    frozen, _, _ = _lm(tiny_model, sas["emb"], _hyb(freeze_projector=True))
    for a, c in zip(free.state_dict().values(), frozen.state_dict().values()):
        assert torch.equal(a, c)  # same init, the projector included (seeded)
    names = lambda m: {n for n, p in m.named_parameters() if p.requires_grad}  # noqa: E731
    assert names(free) - names(frozen) == {n for n, _ in free.named_parameters() if n.startswith("hybrid.projector.")}
    before = {k: v.clone() for k, v in frozen.hybrid.projector.state_dict().items()}
    opt = torch.optim.AdamW([p for p in frozen.parameters() if p.requires_grad], lr=1e-2)
    hybrid_step(frozen, frozen, setup["batch"](), _hyb(freeze_projector=True), setup["enc"])["loss"].backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in frozen.hybrid.projector.state_dict().items())
    assert not torch.equal(frozen.hybrid.user_head.weight, free.hybrid.user_head.weight)  # the rest still trains


def test_stages_and_schedule():
    two, one = _hyb(stage1_steps=30), _hyb(stage1_steps=0)
    assert [stage_of(s, two) for s in (0, 29, 30, 99)] == [1, 1, 2, 2] and stage_of(0, one) == 2
    assert schedule_step(10, two, 100) == (10, 30) and schedule_step(30, two, 100) == (0, 70)
    assert schedule_step(40, replace(two, restart_schedule=False), 100) == (40, 100) and schedule_step(5, one, 100) == (
        5,
        100,
    )


def test_recipe_keys_and_checks(tmp_path):
    r = load_recipe(
        None,
        [
            ("hybrid.embeddings", "R/baselines/sasrec.safetensors"),
            ("hybrid.stage1_steps", 50),
            ("hybrid.item_text", "embedding"),
            ("hybrid.projector_norm", "none"),
            ("train.max_steps", 100),
        ],
    )
    assert r.hybrid.stage1_steps == 50 and r.hybrid.item_text == "embedding" and r.hybrid.restart_schedule
    for bad in [("hybrid.item_text", "mean"), ("hybrid.temperature", 0), ("hybrid.projector_norm", "layer")]:
        with pytest.raises(RecsysError):
            load_recipe(None, [("hybrid.embeddings", "x"), bad])
    with pytest.raises(RecsysError, match="below train.max_steps"):
        load_recipe(None, [("hybrid.embeddings", "x"), ("hybrid.stage1_steps", 200)])
    with pytest.raises(RecsysError, match="need hybrid.embeddings"):
        load_recipe(None, [("hybrid.stage1_steps", 10)])


def test_saved_sasrec_encoder_gives_the_trained_user_states(sas):
    hists = [[1, 2, 3], [5], list(range(1, 30))]
    enc = UserEncoder(sas["emb"])
    with torch.no_grad():
        want = sas["model"].eval().last_state(left_pad(hists, SAS.max_len))
    assert torch.allclose(enc.encode(hists), want, atol=1e-6)
    broken = item_embeddings.load(sas["path"])
    broken.encoder.pop(next(iter(broken.encoder)))
    with pytest.raises(RecsysError, match="does not fit"):
        UserEncoder(broken)


def test_info_nce_prefers_aligned_pairs_and_masks_duplicates():
    torch.manual_seed(0)
    a = torch.randn(6, 8)
    assert float(info_nce(a, a, 0.1)) < float(info_nce(a, a[torch.randperm(6)], 0.1))
    assert float(info_nce(a[:1], a[:1], 0.1)) == 0.0
    dup = torch.cat([a[:1], a[:1], a[1:3]])  # rows 0 and 1 are the same user
    keys = torch.tensor([0, 0, 1, 2])
    masked = float(info_nce(dup, dup, 0.1, keys))
    assert masked < float(info_nce(dup, dup, 0.1))  # the duplicate is not a negative of its twin
