"""Listwise ranking (data/listwise.py, inference/listwise.py, training/listwise.py): one-token
labels, the prompt's 2D positions, one forward pass per prompt, seeded orders, the training
examples' leakage rules and a short training run.

    python -m pytest tests/unit/test_listwise.py -q
"""

from __future__ import annotations

import math
import random

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.artifacts import schemas  # noqa: E402
from recsys_cli.artifacts.io import write_parquet  # noqa: E402
from recsys_cli.data import listwise as lw  # noqa: E402
from recsys_cli.data import split as loo  # noqa: E402
from recsys_cli.data.masking import IGNORE  # noqa: E402
from recsys_cli.errors import RecsysError  # noqa: E402


def _titles(tok, names):
    return [lw.title_tokens(tok(" " + n, add_special_tokens=False)["input_ids"]) for n in names]


def test_labels_are_single_distinct_tokens(tok):
    vocab = lw.Vocab.of(tok)
    assert len(vocab.labels) == lw.MAX_K == 52 and len(set(vocab.labels)) == 52
    for c, label in zip(lw.LABEL_CHARS, vocab.labels):
        assert tok(" " + c, add_special_tokens=False)["input_ids"] == [label]
    assert not set(vocab.labels) & set(tok.all_special_ids)


def test_prompt_layout_and_2d_positions_follow_the_entity_rule(tok, special):
    vocab = lw.Vocab.of(tok)
    hist = list(zip(["h1", "h2"], _titles(tok, ["LEGO City Police Station", "Uno Card Game"])))
    cands = _titles(tok, ["Barbie Dreamhouse", "Hot Wheels Track Builder", "Play-Doh Fun Factory", "Nerf Blaster"])
    doc = lw.build(vocab, lw.TEMPLATES[0], hist, cands, 512)
    ex = lw.example(doc, 2, len(cands), vocab, special)
    la = ex.part_a_len
    assert ex.input_ids[la - 1] == special.g_m and ex.input_ids[la:] == [special.start] and len(ex) == la + 1
    assert ex.inter == list(range(la)) + [la - 1]  # [START] sits at the [gM] inter position
    assert ex.intra[la] == 1
    assert ex.labels == [IGNORE] * la + [vocab.labels[2]]  # the only target: the answer's label
    assert ex.allowed == {la: sorted(vocab.labels[:4])}
    assert len(doc.entity_spans) == 2 + 4 and doc.entity_ids == ["item:h1", "item:h2", "", "", "", ""]
    inside = set()
    for s, e in doc.entity_spans:  # every title: intra 1..n
        assert ex.intra[s:e] == list(range(1, e - s + 1))
        inside.update(range(s, e))
    assert all(ex.intra[i] == 0 for i in range(la) if i not in inside)  # labels, template words, [gM]: 0
    for j, (s, e) in enumerate(doc.entity_spans[2:]):
        assert ex.input_ids[s - 1] == vocab.labels[j] and ex.input_ids[s:e] == cands[j]
    # inference lays Part A out identically
    a, ai, soft = lw.part_a(doc, special)
    assert a == ex.input_ids[:la] and ai == ex.intra[:la] and soft is None


def test_history_is_cut_oldest_first_and_too_many_candidates_fail_in_one_line(tok):
    vocab = lw.Vocab.of(tok)
    hist = list(zip([f"h{i}" for i in range(6)], _titles(tok, [f"Wooden Puzzle Number {i}" for i in range(6)])))
    cands = _titles(tok, ["Toy Car", "Toy Boat", "Toy Plane"])
    full = lw.build(vocab, lw.TEMPLATES[1], hist, cands, 512)
    assert full.entity_ids[:6] == [f"item:h{i}" for i in range(6)]
    budget = len(full.ids) + 2 - 10  # two history titles (+ separators) too many
    cut = lw.build(vocab, lw.TEMPLATES[1], hist, cands, budget)
    assert len(cut.ids) + 2 <= budget
    kept = [e for e in cut.entity_ids if e]
    assert kept and kept == [f"item:h{i}" for i in range(6 - len(kept), 6)] and len(kept) < 6  # the newest survive
    need = lw.fixed_length(vocab, lw.TEMPLATES[1], cands) + len(vocab.empty)
    with pytest.raises(RecsysError) as err:
        lw.build(vocab, lw.TEMPLATES[1], hist, cands, need - 1)
    msg = str(err.value)
    assert "\n" not in msg and "K=3" in msg and f"need {need} tokens" in msg and f"available {need - 1}" in msg
    with pytest.raises(RecsysError, match="only 52 one-token labels"):
        lw.build(vocab, lw.TEMPLATES[1], [], cands * 18, 10_000)


def test_hybrid_soft_tokens_follow_history_titles_only_and_count_in_the_budget(tok, special):
    vocab = lw.Vocab.of(tok)
    hist = list(zip(["h1", "h2", "h3"], _titles(tok, ["Kite", "Yo-yo Deluxe", "Marbles Bag"])))
    cands = _titles(tok, ["Robot Kit", "Doll House"])
    rows = {"h1": 1, "h2": 2, "h3": 3}
    plain = lw.build(vocab, lw.TEMPLATES[0], hist, cands, 512)
    budget = len(plain.ids) + 2 + 2  # room for two soft tokens, not three
    doc = lw.build(vocab, lw.TEMPLATES[0], hist, cands, budget, rows)
    assert [e for e in doc.entity_ids if e] == ["item:h2", "item:h3"]
    a, ai, soft = lw.part_a(doc, special, rows, placeholder=0)
    assert len(a) + 1 <= budget and [r for _, r in soft] == [2, 3]
    ends = [e for (s, e), eid in zip(doc.entity_spans, doc.entity_ids) if eid]
    assert [p for p, _ in soft] == [ends[0], ends[1] + 1]  # right after each history title (shifted by the first)


@pytest.fixture(scope="module")
def scoring(toys_data, tiny_model):
    """A real Engine on the tiny model (intra table randomised so positions matter) and a few
    test prompts with 20 catalogue candidates each."""
    from recsys_cli.inference.engine import Engine
    from recsys_cli.inference.listwise import ListwiseScorer
    from recsys_cli.inference.options import InferOptions
    from recsys_cli.modeling.checkpoint import load_base_for_inference

    lm, tok, _ = load_base_for_inference(tiny_model)
    torch.manual_seed(0)
    with torch.no_grad():
        lm.intra_embed.weight.normal_(0, 0.5)
    items = pl.read_parquet(toys_data / schemas.ITEMS)
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS)
    prompts = prompts.filter((pl.col("split") == "test") & (pl.col("family") == "sequential"))
    rows = prompts.head(4).to_dicts()
    ids = items["item_id"].to_list()
    cands = [random.Random(n).sample(ids, 20) for n in range(len(rows))]
    seqs = pl.read_parquet(toys_data / schemas.SEQUENCES)
    sequences = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))

    def scorer(orders=1, seed=0):
        eng = Engine(
            lm,
            tok,
            InferOptions(listwise_orders=orders, seed=seed, item_scoring="listwise"),
            None,
            None,
            dict(zip(ids, items["title"].to_list())),
        )
        return ListwiseScorer(eng, sequences, "test")

    return lm, scorer, rows, cands


def _count_calls(lm):
    calls = []
    hook = lm.register_forward_hook(lambda _m, args, kw, _o: calls.append(kw["input_ids"].shape[0]), with_kwargs=True)
    return calls, hook


def test_one_forward_pass_per_prompt_and_a_distribution_over_the_k(scoring):
    lm, scorer, rows, cands = scoring
    calls, hook = _count_calls(lm)
    try:
        with torch.inference_mode():
            got = scorer().score(rows, cands)
            assert calls == [len(rows)]  # ONE batched forward: one row per prompt
            calls.clear()
            scorer(orders=2).score(rows, cands)
            assert calls == [2 * len(rows)]  # each order is one more prompt row in the same forward
    finally:
        hook.remove()
    for s, c in zip(got, cands):
        assert len(s) == len(c) == 20
        assert sum(math.exp(x) for x in s) == pytest.approx(1.0, abs=1e-5)  # log-softmax over exactly the K labels
    assert len({round(x, 6) for x in got[0]}) > 10  # the model does tell the candidates apart


def test_orders_are_seeded_and_two_orders_only_average(scoring):
    lm, scorer, rows, cands = scoring
    key = "0:" + rows[0]["prompt_id"]
    assert lw.order(key + ":0", 20) == lw.order(key + ":0", 20) != lw.order(key + ":1", 20)
    assert lw.order(key + ":0", 20) != lw.order("1:" + rows[0]["prompt_id"] + ":0", 20)  # the seed changes it
    with torch.inference_mode():
        one = scorer().score(rows, cands)
        per = scorer(orders=2).score_orders(rows, cands)
        two = scorer(orders=2).score(rows, cands)
        again = scorer().score(rows, cands)
        other_seed = scorer(seed=1).score(rows, cands)
    assert one == again  # deterministic
    for b in range(len(rows)):
        assert per[b][0] == pytest.approx(one[b], abs=1e-4)  # order 0 of N is the single-order run
        assert two[b] == pytest.approx([(x + y) / 2 for x, y in zip(*per[b])], abs=1e-9)
        assert per[b][1] != pytest.approx(per[b][0], abs=1e-4)  # a second order does differ
    assert other_seed != one


# --- training ---------------------------------------------------------------------------


def _train_file(data, path, k=8, seed=0, poison=True, split=None):
    """Ranked lists for train (and, as noise, valid/test) ranking prompts; with `poison` each list
    starts with the user's valid and test target items, which training must never show."""
    from recsys_cli.artifacts import provenance

    prompts = pl.read_parquet(data / schemas.PROMPTS).filter(pl.col("family").is_in(["sequential", "direct"]))
    seqs = pl.read_parquet(data / schemas.SEQUENCES)
    seq_of = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    items = pl.read_parquet(data / schemas.ITEMS)["item_id"].to_list()
    rng = random.Random(seed)
    rows = []
    for pid, user, target in prompts.select("prompt_id", "user_id", "item_id").iter_rows():
        seq = seq_of[user]
        held = [seq[loo.target_position(len(seq), "valid")], seq[loo.target_position(len(seq), "test")]]
        others = [i for i in rng.sample(items, k + 4) if i != target and i not in held][: k - 3]
        ranked = list(dict.fromkeys((held if poison else []) + others[:2] + [target] + others[2:]))
        rows.append(
            {
                "prompt_id": pid,
                "family": "sequential",
                "template_id": "x",
                "seen": True,
                "output": ranked[0],
                "ranked": ranked,
                "scores": [float(-j) for j in range(len(ranked))],
                "valid": True,
            }
        )
    meta = None if split is None else provenance.encode(provenance.make(data, {"kind": "test"}, {"split": split}))
    frame = pl.DataFrame(rows, schema=schemas.PREDICTIONS_SCHEMA)
    write_parquet(frame, path, schemas.PREDICTIONS_SCHEMA, metadata=meta)
    return path


def test_training_cases_never_hold_valid_or_test_targets(toys_data, tok, special, tmp_path):
    from recsys_cli.training.listwise import listwise_example, load_listwise

    seqs = pl.read_parquet(toys_data / schemas.SEQUENCES)
    seq_of = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    path = _train_file(toys_data, tmp_path / "train.parquet", split="train")
    data = load_listwise(toys_data, path, 8, tok, 512, seq_of)
    prompts = pl.read_parquet(toys_data / schemas.PROMPTS)
    train_ids = set(prompts.filter(pl.col("split") == "train")["prompt_id"].to_list())
    assert len(data.cases) > 100
    for c in data.cases:
        seq = seq_of[c.user_id]
        train_part = loo.train_items(seq)
        held = {seq[loo.target_position(len(seq), s)] for s in ("valid", "test")} - set(train_part)
        assert c.prompt_id in train_ids and c.item_id in train_part
        assert seq.index(c.item_id) in loo.train_positions(len(seq))
        assert c.history == loo.history(seq, "train", c.item_id)[-lw.HISTORY_ITEMS :]
        assert set(c.history) <= set(train_part)
        assert not held & set(c.candidates) and not held & set(c.history)  # the poisoned head was dropped
        assert c.item_id in c.candidates and len(c.candidates) == len(set(c.candidates)) <= 8
    rng = random.Random(0)
    for _ in range(30):
        ex = listwise_example(data, rng, special)
        assert ex.level == "listwise" and [x for x in ex.labels if x != IGNORE] and len(ex.allowed) == 1
    # a file made for another split is refused before any example is built
    with pytest.raises(RecsysError, match="split 'valid'"):
        load_listwise(toys_data, _train_file(toys_data, tmp_path / "valid.parquet", split="valid"), 8, tok, 512, seq_of)


def test_training_loss_is_the_inference_label_log_prob(toys_data, tiny_model, special, tmp_path):
    """The listwise cross-entropy of an example equals -log P(answer label) that inference's
    single forward gives for the same prompt."""
    from recsys_cli.inference import decode
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.training.data import collate
    from recsys_cli.training.listwise import listwise_example, load_listwise

    lm, tok, _ = load_base_for_inference(tiny_model)
    seqs = pl.read_parquet(toys_data / schemas.SEQUENCES)
    seq_of = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    data = load_listwise(toys_data, _train_file(toys_data, tmp_path / "t.parquet", poison=False), 8, tok, 512, seq_of)
    rng = random.Random(3)
    for _ in range(3):
        ex = listwise_example(data, rng, special)
        b = collate([ex], tok.pad_token_id, torch.float32)
        with torch.no_grad():
            out = lm(
                b["input_ids"],
                b["inter"],
                b["intra"],
                b["attn_mask_4d"],
                labels=b["labels"],
                allowed=(b["allowed"], b["allowed_ids"]),
            )
            la = ex.part_a_len
            st = decode.prefill(lm, [ex.input_ids[:la]], [ex.intra[:la]], special.start, None, dynamic=False)
        labels = ex.allowed[la]
        lp = torch.log_softmax(st.logits[0, labels], -1)
        assert float(out.loss) == pytest.approx(-float(lp[labels.index(ex.labels[la])]), rel=1e-4, abs=1e-4)


def listwise_sets(tiny_model: str, path, weight: float) -> list[tuple[str, object]]:
    """A 3-step tiny-model recipe whose last three keys are the listwise section (`path`: _train_file's)."""
    return [
        ("model.name", tiny_model),
        ("train.max_steps", 3),
        ("train.batch_size", 4),
        ("train.max_length", 96),
        ("train.precision", "fp32"),
        ("eval.eval_every", 100),
        ("train.save_every", 100),
        ("listwise.candidates", str(path)),
        ("listwise.k", 8),
        ("listwise.weight", weight),
    ]


def test_pretrain_with_listwise_examples_changes_the_lora_weights(toys_entities, tiny_model, tmp_path):
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    path = _train_file(toys_entities, tmp_path / "train.parquet", poison=False)
    sets = listwise_sets(tiny_model, path, 0.5)
    tr = Trainer(load_recipe(None, sets), toys_entities, tmp_path / "C")
    levels = [tr.stream.example(i).level for i in range(40)]
    assert 8 <= levels.count("listwise") <= 32  # about half of the examples
    before = {n: p.detach().clone() for n, p in tr.lm.named_parameters() if p.requires_grad and "lora" in n}
    assert before
    out = tr.train()
    assert out["steps"] == 3 and out["loss"] == out["loss"]
    assert any(not p.detach().equal(before[n]) for n, p in tr.lm.named_parameters() if n in before)
    off = Trainer(load_recipe(None, sets[:-1] + [("listwise.weight", 0.0)]), toys_entities, tmp_path / "C0")
    plain = Trainer(load_recipe(None, sets[:-3]), toys_entities, tmp_path / "C1")
    # weight 0 draws nothing extra: the stream is the plain one
    assert [off.stream.example(i).input_ids for i in range(10)] == [
        plain.stream.example(i).input_ids for i in range(10)
    ]
