"""Packed batches (training/packing.py) and the fast-path settings (training/speed.py) leave
what training computes unchanged: per-example losses packed vs one example per row, the mask
rule, eager vs SDPA attention, and the loss curve of a short run with packing and a deferred
loss read-back.

    python -m pytest tests/unit/test_packing.py -q
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def _tiny(toys_data, tiny_model, n=12, max_length=64):
    """The tiny model as training builds it, and `n` real training examples of the Toys slice."""
    from recsys_cli.data.special_tokens import SpecialIds, add_special_tokens
    from recsys_cli.modeling.registry import load_tokenizer, resolve_model
    from recsys_cli.training.data import ExampleStream, load_sources
    from recsys_cli.training.loop import build_model, intra_table_size
    from recsys_cli.training.recipe import load_recipe

    r = load_recipe(
        None,
        [
            ("model.name", tiny_model),
            ("train.max_length", max_length),
            ("lora.dropout", 0.0),
            ("train.corpus_ratio", 0.5),
        ],
    )
    tok = load_tokenizer(resolve_model(tiny_model))
    add_special_tokens(tok)
    src = load_sources(toys_data, tok, 4)
    torch.manual_seed(0)
    lm, tok, _, _ = build_model(r, "cpu", intra_table_size(r, src.trie)[0], tok)
    with torch.no_grad():  # LoRA B starts at zero: move it so the adapters take part
        for name, p in lm.named_parameters():
            if "lora_B" in name or "intra_embed" in name:
                p.normal_(0, 0.02)
    lm.eval()
    stream = ExampleStream(src, r, SpecialIds.from_tokenizer(tok))
    return lm, tok, [stream.example(i) for i in range(n)]


def _per_example(lm, batch, examples) -> list[float]:
    """Summed target log-loss of each example, read from the full logits of one forward."""
    with torch.no_grad():
        logits = lm(
            batch["input_ids"], batch["inter"], batch["intra"], batch["attn_mask_4d"]
        ).logits.float()  # [R, L, V]
    out = []
    for (row, start, n), e in zip(batch["placement"].tolist(), examples):
        lab = torch.tensor(e.labels)  # [n]
        lp = torch.log_softmax(logits[row, start : start + n], -1)  # [n, V]
        keep = lab != -100
        out.append(float(-lp[keep].gather(1, lab[keep][:, None]).sum()))
    return out


def test_pack_rows_first_fit_decreasing_and_deterministic():
    from recsys_cli.training.packing import pack_rows

    assert pack_rows([200, 60, 120, 50], 256) == [[0, 3], [1, 2]]
    assert pack_rows([300, 10], 256) == [[0], [1]]  # too long for a row: a row of its own
    assert pack_rows([], 256) == []
    rows = pack_rows([37, 90, 12, 64, 64, 5, 128, 77], 128)
    assert sorted(i for r in rows for i in r) == list(range(8))
    assert all(sum([37, 90, 12, 64, 64, 5, 128, 77][i] for i in r) <= 128 for r in rows)


def test_unpacked_mask_is_the_glm_mask_and_packed_is_block_diagonal(toys_data, tiny_model):
    from recsys_cli.modeling.mask import build_attention_mask
    from recsys_cli.training.packing import collate_rows, glm_mask

    _, tok, exs = _tiny(toys_data, tiny_model, n=6)
    b = collate_rows(exs, tok.pad_token_id)
    want = build_attention_mask(
        [e.part_a_len for e in exs], [len(e) for e in exs], b["input_ids"].shape[1], torch.float32
    )
    assert torch.equal(glm_mask(b["segment"], b["a_end"], torch.float32), want)
    p = collate_rows(exs, tok.pad_token_id, capacity=128)
    assert p["input_ids"].shape[0] < len(exs)  # packing saved rows
    allowed = glm_mask(p["segment"], p["a_end"], torch.float32)[:, 0] == 0  # [R, L, L]
    for (row, start, n), e in zip(p["placement"].tolist(), exs):
        block = allowed[row, start : start + n]  # this example's query rows
        assert not block[:, :start].any() and not block[:, start + n :].any()  # nothing outside its segment
        la = e.part_a_len
        assert block[:la, :][:, start : start + la].all()  # Part A bidirectional
        assert torch.equal(
            block[la:, start + la : start + n], torch.ones(n - la, n - la, dtype=torch.bool).tril()
        )  # Part B causal
    assert p["lengths"].sum() == b["lengths"].sum() == sum(len(e) for e in exs)


def test_packed_per_example_losses_equal_unpacked(toys_data, tiny_model):
    from recsys_cli.training.packing import collate_rows, to_device

    lm, tok, exs = _tiny(toys_data, tiny_model, n=12)
    one = to_device(collate_rows(exs, tok.pad_token_id), "cpu", torch.float32)
    packed = to_device(collate_rows(exs, tok.pad_token_id, capacity=64), "cpu", torch.float32)
    assert packed["input_ids"].shape[0] < one["input_ids"].shape[0]
    a, b = _per_example(lm, one, exs), _per_example(lm, packed, exs)
    assert b == pytest.approx(a, rel=1e-5, abs=1e-5)
    with torch.no_grad():  # the training loss (token mean over the batch's targets) too
        la = lm(one["input_ids"], one["inter"], one["intra"], one["attn_mask_4d"], labels=one["labels"]).loss
        lb = lm(
            packed["input_ids"], packed["inter"], packed["intra"], packed["attn_mask_4d"], labels=packed["labels"]
        ).loss
    assert float(lb) == pytest.approx(float(la), rel=1e-5)


def test_sdpa_attention_gives_the_eager_losses(toys_data, tiny_model):
    from recsys_cli.training.packing import collate_rows, to_device
    from recsys_cli.training.speed import set_attention

    lm, tok, exs = _tiny(toys_data, tiny_model, n=8)
    packed = to_device(collate_rows(exs, tok.pad_token_id, capacity=64), "cpu", torch.float32)
    eager = _per_example(lm, packed, exs)
    set_attention(lm, "sdpa")
    try:
        assert _per_example(lm, packed, exs) == pytest.approx(eager, rel=1e-5, abs=1e-5)
    finally:
        set_attention(lm, "eager")
    with pytest.raises(ValueError, match="attention must be"):
        set_attention(lm, "flash")


def _losses(path):
    return [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_packing_and_deferred_loss_reads_keep_the_loss_curve(toys_data, tiny_model, tmp_path):
    """Four steps as before, and with packing + SDPA + the loss read back every 3 steps: every
    metrics row is there and the losses agree to 1e-5 (no dropout, so the same computation)."""
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    base = [
        ("model.name", tiny_model),
        ("train.max_steps", 4),
        ("train.batch_size", 6),
        ("train.max_length", 64),
        ("train.lr", 0.01),
        ("train.warmup_steps", 1),
        ("lora.dropout", 0.0),
        ("eval.eval_every", 4),
        ("eval.eval_prompts", 4),
        ("train.save_every", 100),
        ("train.precision", "fp32"),
    ]
    plain = Trainer(load_recipe(None, base), toys_data, tmp_path / "plain").train()
    fast = Trainer(
        load_recipe(None, base + [("train.packing", True), ("train.attention", "sdpa"), ("train.log_every", 3)]),
        toys_data,
        tmp_path / "fast",
    ).train()
    a, b = _losses(tmp_path / "plain"), _losses(tmp_path / "fast")
    assert len(a) == len(b) == 4
    assert b == pytest.approx(a, rel=1e-5)
    assert fast["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-5)
    rows = [json.loads(line) for line in (tmp_path / "fast" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and "val_loss" in rows[-1] and "val_loss" not in rows[0]
