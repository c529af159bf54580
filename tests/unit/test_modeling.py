"""RecsysLM, the float 4D GLM mask and checkpoint io on the tiny random model.

python -m pytest tests/unit/test_modeling.py
"""

from __future__ import annotations

import json

import pytest
import torch

from recsys_cli.artifacts.checkpoint import CheckpointConfig, LoraSettings
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.checkpoint import load_base_for_inference, load_checkpoint, prepare_base, save_checkpoint
from recsys_cli.modeling.lora import attach_lora
from recsys_cli.modeling.mask import build_attention_mask
from recsys_cli.modeling.registry import load_base_model, resolve_model
from recsys_cli.modeling.wrapper import RecsysLM


def _cfg(spec, step: int, fingerprint: str | None = None) -> CheckpointConfig:
    """The checkpoint config the training loop writes (model fields are filled from the model)."""
    return CheckpointConfig(
        base_model=spec.stored_name,
        base_fingerprint=fingerprint or spec.fingerprint,
        positions="glm",
        max_intra=0,
        vocab_size=0,
        special_tokens={},
        new_token_ids=[],
        lora=LoraSettings(4, 8, 0.0),
        step=step,
    )


TEXT = "The user bought a red wooden train set and later a puzzle of the solar system."


@pytest.fixture(scope="module")
def lora_lm(tiny_model):
    torch.manual_seed(0)
    base, tok, spec, special = prepare_base(tiny_model)
    peft_model = attach_lora(base, sorted(special.values()), rank=4, dropout=0.0)
    lm = RecsysLM(peft_model, positions="glm")
    lm.new_token_ids = sorted(special.values())
    return lm.eval(), tok, spec


def test_mask_is_float_with_glm_layout():
    m = build_attention_mask([3], [5], 6, torch.float32)  # [1,1,6,6]
    assert m.dtype == torch.float32 and m.shape == (1, 1, 6, 6)
    allowed = (m[0, 0] == 0).int().tolist()
    blocked = torch.finfo(torch.float32).min
    assert m.min().item() == blocked
    assert allowed[0] == [1, 1, 1, 0, 0, 0]  # Part A: bidirectional inside A only
    assert allowed[2] == [1, 1, 1, 0, 0, 0]
    assert allowed[3] == [1, 1, 1, 1, 0, 0]  # Part B: all of A + causal
    assert allowed[4] == [1, 1, 1, 1, 1, 0]
    assert allowed[5] == [0, 0, 0, 0, 0, 1]  # padding row: itself only (finite softmax)
    assert build_attention_mask([1], [2], 2, torch.bfloat16).min().item() == torch.finfo(torch.bfloat16).min


def test_bool_mask_rejected(lora_lm):
    lm, tok, _ = lora_lm
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(TypeError):
        lm(ids, torch.arange(3)[None], torch.zeros_like(ids), torch.ones(1, 1, 3, 3, dtype=torch.bool))


def test_step0_equals_base_model(lora_lm, tiny_model):
    lm, tok, spec = lora_lm
    base = load_base_model(spec).eval()
    ids = torch.tensor([tok(TEXT)["input_ids"]])  # [1, L]
    L = ids.shape[1]
    causal = build_attention_mask([0], [L], L, torch.float32)
    with torch.no_grad():
        want = base(input_ids=ids).logits  # [1, L, V]
        lm.positions = "linear"
        got_linear = lm(ids, None, None, causal).logits[..., : want.shape[-1]]
        lm.positions = "glm"
        intra = torch.randint(0, 10, (1, L))  # zero table: any intra ids are a no-op
        got_glm = lm(ids, torch.arange(L)[None], intra, causal).logits[..., : want.shape[-1]]
    assert torch.allclose(got_linear, want, atol=1e-5)
    assert torch.allclose(got_glm, want, atol=1e-5)


def test_padding_does_not_change_real_rows(lora_lm):
    lm, tok, _ = lora_lm
    a = tok(TEXT)["input_ids"]
    b = a[:7]
    with torch.no_grad():
        single = lm(
            torch.tensor([b]),
            torch.arange(7)[None],
            torch.zeros(1, 7, dtype=torch.long),
            build_attention_mask([3], [7], 7, torch.float32),
        ).logits
        L = len(a)
        ids = torch.full((2, L), tok.pad_token_id)
        ids[0], ids[1, :7] = torch.tensor(a), torch.tensor(b)
        inter = torch.arange(L).repeat(2, 1)
        mask = build_attention_mask([4, 3], [L, 7], L, torch.float32)
        batch = lm(ids, inter, torch.zeros_like(ids), mask).logits
    assert torch.isfinite(batch).all()
    assert torch.allclose(batch[1, :7], single[0], atol=1e-5)


def test_bidirectional_part_a_sees_the_future(lora_lm):
    lm, tok, _ = lora_lm
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    L = ids.shape[1]
    pos = torch.arange(L)[None]
    z = torch.zeros_like(ids)
    with torch.no_grad():
        causal = lm(ids, pos, z, build_attention_mask([0], [L], L, torch.float32)).logits
        glm = lm(ids, pos, z, build_attention_mask([L], [L], L, torch.float32)).logits
    assert not torch.allclose(causal[0, 0], glm[0, 0], atol=1e-3)  # first row now sees the future
    # Part B is causal: changing the last token leaves every earlier Part B row unchanged
    ids2 = ids.clone()
    ids2[0, -1] = tok.eos_token_id
    m = build_attention_mask([4], [L], L, torch.float32)
    with torch.no_grad():
        x, y = lm(ids, pos, z, m).logits, lm(ids2, pos, z, m).logits
    assert torch.allclose(x[0, :-1], y[0, :-1], atol=1e-5)


def test_kv_cache_matches_full_forward(lora_lm):
    from transformers import DynamicCache

    lm, tok, _ = lora_lm
    ids = torch.tensor([tok(TEXT)["input_ids"]])
    L, p = ids.shape[1], 6
    inter, intra = torch.arange(L)[None], (torch.arange(L)[None] % 3)
    full_mask = build_attention_mask([p], [L], L, torch.float32)
    with torch.no_grad():
        full = lm(ids, inter, intra, full_mask).logits
        cache = DynamicCache()
        out = lm(ids[:, :p], inter[:, :p], intra[:, :p], full_mask[:, :, :p, :p], cache=cache, use_cache=True)
        step = lm(
            ids[:, p : p + 1],
            inter[:, p : p + 1],
            intra[:, p : p + 1],
            full_mask[:, :, p : p + 1, : p + 1],
            cache=out.cache,
            use_cache=True,
        )
    assert torch.allclose(step.logits[0, 0], full[0, p], atol=1e-4)


def _perturb(lm):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in lm.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_checkpoint_roundtrip_identical_logits(lora_lm, tiny_model, tmp_path):
    lm, tok, spec = lora_lm
    _perturb(lm)
    ids = torch.tensor([tok(TEXT)["input_ids"] + [lm.new_token_ids[3]]])  # includes [START]
    L = ids.shape[1]
    args = (ids, torch.arange(L)[None], torch.arange(L)[None] % 5, build_attention_mask([4], [L], L, torch.float32))
    with torch.no_grad():
        want = lm(*args).logits
    save_checkpoint(lm, tok, tmp_path / "C", _cfg(spec, 3))
    assert json.loads((tmp_path / "C" / "recsys_checkpoint.json").read_text())["vocab_size"] == len(tok)
    for merge in (False, True):
        lm2, tok2, cfg = load_checkpoint(tmp_path / "C", merge=merge)
        lm2.eval()
        with torch.no_grad():
            got = lm2(*args).logits
        assert len(tok2) == len(tok) and cfg.step == 3
        assert torch.allclose(got, want, atol=1e-5 if not merge else 1e-4), merge
    # the adapter alone loads with plain peft on the resized base
    from peft import PeftModel

    from recsys_cli.modeling.checkpoint import resize_for_tokens

    base = load_base_model(resolve_model(tiny_model))
    resize_for_tokens(base, tok2)
    PeftModel.from_pretrained(base, str(tmp_path / "C" / "adapter"))


def test_merged_scale_moves_every_lora_layer_to_that_many_deltas(lora_lm, tmp_path):
    """`infer --text-adapter-scale s` (modeling/checkpoint.set_merged_scale): W = W0 + s * delta in
    every LoRA layer of a merged checkpoint, and back to the whole adapter exactly enough."""
    from recsys_cli.modeling.checkpoint import set_merged_scale

    lm, tok, spec = lora_lm
    _perturb(lm)
    save_checkpoint(lm, tok, tmp_path / "C", _cfg(spec, 1))
    lm2, _, _ = load_checkpoint(tmp_path / "C", merge=True)
    assert lm2.lora_deltas and all(name.endswith("proj") for name in lm2.lora_deltas)

    def weights():
        return {n: p.detach().clone() for n, p in lm2.base.named_parameters() if "proj" in n}

    merged = {}
    for scale in (1.0, 0.0, 0.5, 1.0):
        set_merged_scale(lm2, scale)
        merged[scale] = weights()
    unmerged, _, _ = load_checkpoint(tmp_path / "C", merge=False)
    base = {
        n.removeprefix("base_model.model.").replace(".base_layer", ""): p for n, p in unmerged.base.named_parameters()
    }
    moved = 0
    for name, w0 in merged[0.0].items():
        assert torch.allclose(w0, base[name], atol=1e-5)  # scale 0: the base weights
        half, full = merged[0.5][name] - w0, merged[1.0][name] - w0
        assert torch.allclose(2 * half, full, atol=1e-5)
        moved += bool(full.abs().max() > 1e-4)
    assert moved > 0  # some delta is not zero, so the checks above can fail


def test_full_embedding_stays_tied_and_roundtrips(tiny_model, tmp_path):
    """modules_to_save=[embed_tokens] (the tiny recipe): one trained matrix for input and output,
    saved in the adapter; same logits after load_checkpoint (merged or not) and plain peft."""
    from peft import PeftModel

    torch.manual_seed(0)
    base, tok, spec, special = prepare_base(tiny_model)
    new = sorted(special.values())
    with pytest.raises(RecsysError, match="not modules of this model"):
        attach_lora(base, new, modules_to_save=["embed_tokenz"])
    with pytest.raises(RecsysError, match="both LoRA targets and modules_to_save"):
        attach_lora(base, new, modules_to_save=["q_proj"])
    lm = RecsysLM(attach_lora(base, new, rank=4, dropout=0.0, modules_to_save=["embed_tokens"]), positions="glm")
    lm.new_token_ids = new
    emb, head = lm.base.get_input_embeddings(), lm.base.get_output_embeddings()
    assert emb.weight is head.weight and emb.weight.requires_grad  # tied, trained in full
    _perturb(lm.eval())
    ids = torch.tensor([tok(TEXT)["input_ids"] + [new[3]]])  # [1, L] includes [START]
    L = ids.shape[1]
    args = (ids, torch.arange(L)[None], torch.arange(L)[None] % 5, build_attention_mask([4], [L], L, torch.float32))
    with torch.no_grad():
        want, want_plain = lm(*args).logits, lm.base(input_ids=ids).logits  # [1, L, V]
    save_checkpoint(lm, tok, tmp_path / "C", _cfg(spec, 1))
    adapter_cfg = json.loads((tmp_path / "C" / "adapter" / "adapter_config.json").read_text())
    assert "embed_tokens" in adapter_cfg["modules_to_save"] and adapter_cfg["trainable_token_indices"] is None
    for merge in (False, True):
        lm2, _, _ = load_checkpoint(tmp_path / "C", merge=merge)
        lm2.eval()
        assert lm2.base.get_input_embeddings().weight is lm2.base.get_output_embeddings().weight
        with torch.no_grad():
            assert torch.allclose(lm2(*args).logits, want, atol=1e-5 if not merge else 1e-4), merge
    from recsys_cli.modeling.checkpoint import resize_for_tokens

    plain = load_base_model(resolve_model(tiny_model))
    resize_for_tokens(plain, tok)
    plain = PeftModel.from_pretrained(plain, str(tmp_path / "C" / "adapter")).eval()
    with torch.no_grad():
        assert torch.allclose(plain(input_ids=ids).logits, want_plain, atol=1e-5)


def test_checkpoint_mismatch_errors(lora_lm, tmp_path):
    lm, tok, spec = lora_lm
    C = tmp_path / "C"
    save_checkpoint(lm, tok, C, _cfg(spec, 0, "0000000000000000"))
    with pytest.raises(RecsysError, match="fingerprint"):
        load_checkpoint(C)
    cfg = json.loads((C / "recsys_checkpoint.json").read_text())
    cfg.update(base_fingerprint=spec.fingerprint, vocab_size=123)
    (C / "recsys_checkpoint.json").write_text(json.dumps(cfg))
    with pytest.raises(RecsysError, match="vocabulary"):
        load_checkpoint(C)
    with pytest.raises(RecsysError, match="not a recsys checkpoint"):
        load_checkpoint(tmp_path)


def test_load_base_for_inference(tiny_model):
    lm, tok, cfg = load_base_for_inference(tiny_model)
    assert cfg.vocab_size == len(tok) == lm.base.get_input_embeddings().weight.shape[0]
    assert float(lm.intra_embed.weight.detach().abs().sum()) == 0.0
    assert tok.convert_tokens_to_ids("[gM]") in lm.new_token_ids
