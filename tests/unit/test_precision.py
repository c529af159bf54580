"""fp32 / bf16 resolution and the bf16 inference model (tiny random model, real tokenizer).

python -m pytest tests/unit/test_precision.py -q
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.modeling import precision  # noqa: E402
from tests.conftest import TINY_MODEL  # noqa: E402


def test_precision_resolution():
    assert precision.use_bf16("bf16", "cpu") is True
    assert precision.use_bf16("fp32", "cpu") is False
    assert precision.use_bf16("auto", "cpu") == precision.native_bf16("cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.use_bf16("fp16", "cpu")


def test_bf16_inference_keeps_fp32_logits_close_to_fp32():
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.modeling.mask import build_attention_mask

    ref, _, _ = load_base_for_inference(str(TINY_MODEL))
    low, _, _ = load_base_for_inference(str(TINY_MODEL))
    precision.to_bf16_inference(low)
    head, emb = low.base.get_output_embeddings(), low.base.get_input_embeddings()
    assert head.weight.dtype == torch.float32 and emb.weight.dtype == torch.bfloat16  # the tie is cut
    assert head.weight.data_ptr() != emb.weight.data_ptr()
    assert low.intra_embed.weight.dtype == torch.bfloat16
    ids = torch.randint(0, 1000, (2, 12))  # [B, L]
    inter = torch.arange(12).expand(2, 12)  # [B, L]
    intra = torch.ones(2, 12, dtype=torch.long)  # [B, L]
    with torch.inference_mode():
        a = ref(ids, inter, intra, build_attention_mask([6, 6], [12, 12], 12, torch.float32)).logits  # [B, L, V]
        b = low(ids, inter, intra, build_attention_mask([6, 6], [12, 12], 12, torch.bfloat16)).logits  # [B, L, V]
        last = low(ids, inter, intra, build_attention_mask([6, 6], [12, 12], 12, torch.bfloat16), last_only=True).logits
    assert b.dtype == torch.float32  # the vocabulary projection ran in fp32
    assert last.shape == (2, 1, a.shape[-1]) and torch.allclose(last[:, 0], b[:, -1], atol=1e-3)
    lp_a, lp_b = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
    assert not torch.equal(lp_a, lp_b)  # the body really ran in bf16
    diff = (lp_a - lp_b).abs()  # [B, L, V]
    assert diff.mean() < 0.05 and diff.max() < 0.5  # but gives nearly the same log-probs
    top_a, top_b = a.argmax(-1), b.argmax(-1)
    assert (top_a == top_b).float().mean() > 0.9
