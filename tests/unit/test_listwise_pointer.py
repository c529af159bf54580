"""The listwise pointer head (recipe `listwise.head: pointer`, modeling/pointer.py): each label's
title span in the training example, the scores' centring and padding, the training loss equal to
inference's log-probability (unpacked and packed rows), the refusal with RSLLM, a short training
run that changes the weights, and `infer` on a pointer checkpoint.

    python -m pytest tests/unit/test_listwise_pointer.py -q
"""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.artifacts import provenance, schemas  # noqa: E402
from recsys_cli.data import listwise as lw  # noqa: E402
from recsys_cli.errors import RecsysError  # noqa: E402
from recsys_cli.modeling import pointer  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.unit.test_listwise import _train_file, listwise_sets  # noqa: E402

NAMES = ["Barbie Dreamhouse", "Hot Wheels Track Builder", "Play-Doh Fun Factory", "Nerf Blaster", "Uno"]


def _titles(tok, names):
    return [lw.title_tokens(tok(" " + n, add_special_tokens=False)["input_ids"]) for n in names]


def test_each_option_carries_the_span_of_the_title_after_its_label(tok, special):
    vocab = lw.Vocab.of(tok)
    hist = list(zip(["h1", "h2"], _titles(tok, ["LEGO City Police Station", "Catan"])))
    cands = _titles(tok, NAMES)
    doc = lw.build(vocab, lw.TEMPLATES[1], hist, cands, 512)
    ex = lw.example(doc, 3, len(cands), vocab, special, pointer=True)
    la = ex.part_a_len
    assert list(ex.pointer) == list(ex.allowed) == [la]
    assert ex.labels[la] == vocab.labels[3]  # the answer is still named by its label
    for label, (s, e) in zip(ex.allowed[la], ex.pointer[la]):
        j = vocab.labels.index(label)
        assert ex.input_ids[s - 1] == label and ex.input_ids[s:e] == cands[j] and e <= la
    assert lw.example(doc, 3, len(cands), vocab, special).pointer is None  # the labels head lists none


def test_scores_ignore_what_all_candidates_share_and_pad_with_minus_inf():
    g = torch.Generator().manual_seed(0)
    cands = torch.randn(2, 4, 16, generator=g)  # [R, A, H]
    query = torch.randn(2, 16, generator=g)  # [R, H]
    pad = torch.tensor([[False, False, False, False], [False, False, True, True]])
    base = pointer.scores(query, cands, pad)
    shifted = pointer.scores(query, cands + 5.0 * torch.randn(2, 1, 16, generator=g), pad)
    assert torch.allclose(base[~pad], shifted[~pad], atol=1e-4)  # the candidates' mean is subtracted
    assert torch.isinf(base[pad]).all() and bool((base[~pad].abs() <= 1 / pointer.TEMPERATURE + 1e-4).all())
    # the candidate that points where the query does wins
    aligned = torch.zeros(1, 3, 16)
    aligned[0, 1, 0], aligned[0, 0, 1], aligned[0, 2, 2] = 1.0, 1.0, 1.0
    q = torch.zeros(1, 16)
    q[0, 0] = 1.0
    assert int(pointer.scores(q, aligned, torch.zeros(1, 3, dtype=torch.bool)).argmax()) == 1
    hidden = torch.arange(2 * 6 * 2, dtype=torch.float32).reshape(2, 6, 2)
    means = pointer.span_means(hidden, torch.tensor([1]), torch.tensor([[[1, 3], [-1, -1]]]))
    assert means[0, 0].tolist() == hidden[1, 1:3].mean(0).tolist()


@pytest.fixture(scope="module")
def pointer_cases(toys_data, tiny_model, tmp_path_factory):
    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.training.listwise import listwise_example, load_listwise

    lm, tok, _ = load_base_for_inference(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        lm.intra_embed.weight.normal_(0, 0.5)  # positions matter, as after training
    special = SpecialIds.from_tokenizer(tok)
    seqs = pl.read_parquet(toys_data / schemas.SEQUENCES)
    seq_of = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    path = _train_file(toys_data, tmp_path_factory.mktemp("ptr") / "t.parquet", poison=False)
    data = load_listwise(toys_data, path, 8, tok, 512, seq_of, head="pointer")
    rng = random.Random(5)
    return lm, tok, special, [listwise_example(data, rng, special) for _ in range(3)]


def _loss(lm, b, spans=True):
    with torch.no_grad():
        allowed = (b["allowed"], b["allowed_ids"], b.get("allowed_spans") if spans else None)
        return float(
            lm(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], labels=b["labels"], allowed=allowed).loss
        )


def test_training_loss_is_the_inference_pointer_log_prob(pointer_cases):
    from recsys_cli.inference import decode
    from recsys_cli.inference.listwise import pointer_scores
    from recsys_cli.training import packing
    from recsys_cli.training.data import collate

    lm, tok, special, examples = pointer_cases
    by_temperature = {}
    for temperature in (pointer.TEMPERATURE, 0.3):  # the recipe's listwise.temperature, on both sides
        lm.pointer_temperature = temperature
        want = []
        for ex in examples:
            la = ex.part_a_len
            with torch.no_grad():
                st = decode.prefill(lm, [ex.input_ids[:la]], [ex.intra[:la]], special.start, None, False, None, True)
            lp = torch.log_softmax(pointer_scores(st.hidden, [la], [ex.pointer[la]], temperature)[0], -1)
            want.append(-float(lp[ex.allowed[la].index(ex.labels[la])]))
            b = collate([ex], tok.pad_token_id, torch.float32)
            assert _loss(lm, b) == pytest.approx(want[-1], rel=1e-4, abs=1e-4)
            assert _loss(lm, b, spans=False) != pytest.approx(want[-1], rel=1e-3)  # the label head: another loss
        by_temperature[temperature] = want
    assert by_temperature[0.3] != pytest.approx(by_temperature[pointer.TEMPERATURE], rel=1e-3)
    # packed: two examples share a row, their spans move with them; the loss is the mean of the three
    packed = packing.to_device(packing.collate_rows(examples, tok.pad_token_id, 2048), "cpu", torch.float32)
    assert packed["input_ids"].shape[0] < len(examples)
    assert _loss(lm, packed) == pytest.approx(sum(want) / len(want), rel=1e-4, abs=1e-4)
    lm.pointer_temperature = pointer.TEMPERATURE


def _sets(tiny_model, path):
    return [*listwise_sets(tiny_model, path, 1.0), ("listwise.head", "pointer")]


def test_pointer_training_changes_the_lora_weights_and_refuses_rsllm(toys_entities, tiny_model, tmp_path):
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    path = _train_file(toys_entities, tmp_path / "train.parquet", poison=False)
    tr = Trainer(load_recipe(None, _sets(tiny_model, path)), toys_entities, tmp_path / "C")
    assert all(tr.stream.example(i).pointer for i in range(10))
    before = {n: p.detach().clone() for n, p in tr.lm.named_parameters() if p.requires_grad and "lora" in n}
    out = tr.train()
    assert out["steps"] == 3 and math.isfinite(out["loss"])
    assert any(not p.detach().equal(before[n]) for n, p in tr.lm.named_parameters() if n in before)
    with pytest.raises(RecsysError, match="listwise.head pointer"):
        load_recipe(None, _sets(tiny_model, path) + [("hybrid.embeddings", str(tmp_path / "sasrec.safetensors"))])


def test_infer_on_a_pointer_checkpoint_ranks_with_the_pointer(toys_entities, tiny_model, knn, tmp_path):
    path = _train_file(toys_entities, tmp_path / "train.parquet", poison=False)
    ckpt = tmp_path / "C"
    sets = [a for k, v in _sets(tiny_model, path)[1:] for a in ("--set", f"{k}={v}")]
    sets += ["--set", "listwise.temperature=0.2"]
    code, _, err = run_cli(
        "pretrain", "--data", str(toys_entities), "--model", tiny_model, "--out", str(ckpt), "--quiet", *sets
    )
    assert code == 0, err
    out = tmp_path / "ptr.parquet"
    args = ["--data", str(toys_entities), "--checkpoint", str(ckpt), "--item-scoring", "listwise", "--users", "2"]
    code, _, err = run_cli(
        "infer", *args, "--candidates-from", str(knn), "--rerank-k", "8", "--out", str(out), "--quiet"
    )
    assert code == 0, err
    recorded = provenance.read(out)["settings"]["listwise"]
    assert recorded["head"] == "pointer" and recorded["temperature"] == 0.2  # read from the checkpoint's recipe
    ranked = pl.read_parquet(out).filter(pl.col("prompt_id").is_in(pl.read_parquet(knn)["prompt_id"].to_list()))
    items = set(pl.read_parquet(toys_entities / schemas.ITEMS)["item_id"].to_list())
    full = [r for r in ranked.iter_rows(named=True) if r["ranked"] is not None and len(r["ranked"]) >= 8]
    assert len(full) >= 4
    for row in full:
        assert row["valid"] and len(row["ranked"]) == len(set(row["ranked"])) and set(row["ranked"]) <= items
        head = row["scores"][:8]
        assert head == sorted(head, reverse=True) and sum(math.exp(s) for s in head) == pytest.approx(1.0, abs=1e-5)
