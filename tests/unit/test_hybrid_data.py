"""RSLLM hybrid examples (data/rsllm.py) on the real Toys slice: where the soft ID tokens go,
their 2D positions, the id_tokens ablation, budgets, collate (training/rsllm.collate_hybrid).

    python -m pytest tests/unit/test_hybrid_data.py -q
"""

from __future__ import annotations

import random

import polars as pl
import pytest

from recsys_cli.data import masking, tokenize
from recsys_cli.data.rsllm import (
    HybridExample,
    fit_source,
    history_rows,
    hybrid_document,
    hybrid_part_a,
    hybrid_prompt,
    hybridize,
    item_rows,
    row_of,
)
from recsys_cli.errors import RecsysError
from recsys_cli.training.recipe import MaskArgs

CFG = MaskArgs()
PH = 7  # the placeholder id (any real token id; its embedding is replaced)


@pytest.fixture(scope="module")
def toys(toys_data, tok):
    """Tokenized train prompts (with user/target) and corpus documents of the Toys slice, and
    item rows for every item but one (so an item unknown to the recommender is covered)."""
    train = pl.read_parquet(toys_data / "prompts.parquet").filter(pl.col("split") == "train").sort("prompt_id")
    prompts = pl.concat([train.filter(pl.col("family") == f).head(30) for f in ("sequential", "direct")])
    src = tokenize.tokenize_documents(prompts["source"].to_list(), prompts["source_entities"].to_list(), tok)
    tgt = [
        tokenize.tokenize_target(t, e, tok)
        for t, e in zip(prompts["target"].to_list(), prompts["target_entities"].to_list())
    ]
    corpus = pl.read_parquet(toys_data / "corpus.parquet").sort("doc_id").head(80)
    docs = tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tok)
    items = sorted(pl.read_parquet(toys_data / "items.parquet")["item_id"].to_list())
    rows = item_rows([i for i in items if i != "3"])  # item 3 ("Cards Against Humanity") has no row
    seqs = pl.read_parquet(toys_data / "sequences.parquet")
    return {
        "prompts": prompts,
        "src": src,
        "tgt": tgt,
        "docs": docs,
        "rows": rows,
        "seqs": dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list())),
    }


def _text_view(hx: HybridExample) -> tuple[list[int], list[int]]:
    """Part A ids and intra ids with the soft tokens removed."""
    soft = {p for p, _ in hx.soft}
    keep = [j for j in range(hx.part_a_len) if j not in soft]
    return [hx.input_ids[j] for j in keep], [hx.intra[j] for j in keep]


def test_tokenize_keeps_entity_ids_aligned(toys, toys_data):
    corpus = pl.read_parquet(toys_data / "corpus.parquet").sort("doc_id").head(80)
    for doc, ents in zip(toys["docs"], corpus["entities"].to_list()):
        assert doc.entity_ids == [e["entity_id"] for e in sorted(ents, key=lambda e: (e["start"], e["end"]))]
        cut = doc.slice(3, len(doc.ids) - 2)
        kept = [k for k, (s, e) in enumerate(doc.entity_spans) if s >= 3 and e <= len(doc.ids) - 2]
        assert cut.entity_ids == [doc.entity_ids[k] for k in kept]
        assert [cut.ids[s:e] for s, e in cut.entity_spans] == [
            doc.ids[doc.entity_spans[k][0] : doc.entity_spans[k][1]] for k in kept
        ]
    fams = toys["prompts"]["family"].to_list()
    seq_targets = [t for t, f in zip(toys["tgt"], fams) if f == "sequential"]
    assert seq_targets and all(len(t.entity_ids) == 1 and t.entity_ids[0].startswith("item:") for t in seq_targets)


def test_prompt_soft_tokens_follow_the_position_rule(toys, special):
    rows = toys["rows"]
    n_soft = 0
    for src, tgt in zip(toys["src"], toys["tgt"]):
        plain = masking.prompt_example(src, tgt, special, None)
        hx = hybrid_prompt(src, tgt, special, None, rows, PH, 512)
        la = hx.part_a_len
        items = [(s, e) for (s, e), eid in zip(src.entity_spans, src.entity_ids) if row_of(eid, rows) > 0]
        assert len(hx.soft) == len(items) == len(hx.titles) and la == plain.part_a_len + len(items)
        for (p, r), (ts, te, tr), (s, e) in zip(hx.soft, hx.titles, items):
            n = e - s
            assert r == tr > 0 and p == te and hx.input_ids[p] == PH and hx.labels[p] == -100
            assert hx.input_ids[ts:te] == src.ids[s:e]  # the title, then its soft token
            assert hx.intra[ts:te] == list(range(1, n + 1)) and hx.intra[p] == n + 1  # intra continues the title
        assert hx.inter[:la] == list(range(la))  # a soft token takes an inter position like a token
        assert hx.input_ids[la - 1] == special.g_m and set(hx.inter[la:]) == {la - 1}  # Part B sits at [gM]
        assert _text_view(hx) == (plain.input_ids[: plain.part_a_len], plain.intra[: plain.part_a_len])
        assert (
            hx.input_ids[la:] == plain.input_ids[plain.part_a_len :]
            and hx.labels[la:] == plain.labels[plain.part_a_len :]
        )
        assert (
            hx.intra[la:] == plain.intra[plain.part_a_len :] and PH not in hx.input_ids[la:]
        )  # no soft token in Part B
        n_soft += len(hx.soft)
    assert n_soft > 60  # the slice's prompts name several items each


def test_unknown_items_and_other_kinds_get_no_soft_token(toys, special):
    rows = toys["rows"]
    assert row_of("item:3", rows) == 0 and row_of("category:games", rows) == 0 and row_of("item:1", rows) > 0
    src = next(s for s in toys["src"] if "item:3" in s.entity_ids)
    hx = hybrid_prompt(src, toys["tgt"][0], special, None, rows, PH, 512)
    assert len(hx.soft) == sum(1 for e in src.entity_ids if e.startswith("item:") and e != "item:3")


def test_id_tokens_off_is_exactly_the_text_example(toys, special, toys_entities, tok):
    from recsys_cli.data.entities import pool_trie

    trie = pool_trie(toys_entities, tok)
    for src, tgt in zip(toys["src"], toys["tgt"]):
        plain = masking.prompt_example(src, tgt, special, trie)
        off = hybridize(plain, [*src.entity_ids, *tgt.entity_ids], toys["rows"], PH, id_tokens=False)
        on = hybridize(plain, [*src.entity_ids, *tgt.entity_ids], toys["rows"], PH, id_tokens=True)
        assert (off.input_ids, off.labels, off.inter, off.intra, off.part_a_len) == (
            plain.input_ids,
            plain.labels,
            plain.inter,
            plain.intra,
            plain.part_a_len,
        )
        assert off.soft == [] and len(off.titles) == len(on.titles) and off.budget_len == on.budget_len == len(on)
        assert (
            on.intra[on.part_a_len :] == plain.intra[plain.part_a_len :]
        )  # Part B's dynamic (trie) intra ids untouched


def test_documents_masked_items_get_no_soft_token_and_part_b_points_at_its_mask(toys, special):
    rows = toys["rows"]
    checked = 0
    for seed in range(6):
        for doc in toys["docs"]:
            for level in masking.LEVELS:
                rng_a, rng_b = random.Random(f"{seed}:{level}"), random.Random(f"{seed}:{level}")
                hx = hybrid_document(doc, level, rng_a, CFG, special, None, rows, PH)
                plain = masking.mask_document(doc, level, rng_b, CFG, special, None)
                assert hx.spans == plain.spans  # same rng draws: the ablations see the same masks
                masked = {
                    k for k, (s, e) in enumerate(doc.entity_spans) if any(ms < e and s < me for ms, me in plain.spans)
                }
                want = sum(1 for k, eid in enumerate(doc.entity_ids) if row_of(eid, rows) > 0 and k not in masked)
                assert len(hx.soft) == want
                la = hx.part_a_len
                starts = [j for j in range(la, len(hx)) if hx.input_ids[j] == special.start]
                masks = [hx.inter[j] for j in starts]
                assert [hx.input_ids[m] for m in masks] == [special.mask_for(level)] * len(plain.spans)
                assert len(hx) == len(plain) + len(hx.soft) and hx.labels.count(-100) == plain.labels.count(-100) + len(
                    hx.soft
                )
                checked += len(hx.soft)
    assert checked > 500


def test_budget_counts_soft_tokens_and_is_the_same_without_them(toys, special):
    for src, tgt in zip(toys["src"], toys["tgt"]):
        on = hybrid_prompt(src, tgt, special, None, toys["rows"], PH, 32)
        off = hybrid_prompt(src, tgt, special, None, toys["rows"], PH, 32, id_tokens=False)
        assert len(on) <= 32 and on.budget_len == off.budget_len
        assert _text_view(on) == _text_view(off)  # same text in both modes
    assert fit_source(toys["src"][0], 10, {}).ids == toys["src"][0].ids[-10:]  # no rows: the plain left cut


def test_inference_part_a_is_the_training_part_a(toys, special):
    for src, tgt in zip(toys["src"], toys["tgt"]):
        hx = hybrid_prompt(src, tgt, special, None, toys["rows"], PH, 512)
        ids, intra, soft = hybrid_part_a(src, special, toys["rows"], PH, 512)
        la = hx.part_a_len
        assert (ids, intra, soft) == (hx.input_ids[:la], hx.intra[:la], hx.soft)


def test_history_rows_and_bad_ids(toys, special):
    p = toys["prompts"].row(0, named=True)
    seq = toys["seqs"][p["user_id"]]
    h = history_rows(seq, "train", p["item_id"], toys["rows"])
    assert h == [toys["rows"][i] for i in seq[: seq.index(p["item_id"])] if i in toys["rows"]]
    ex = masking.prompt_example(toys["src"][0], toys["tgt"][0], special, None)
    with pytest.raises(RecsysError):
        hybridize(ex, [], toys["rows"], PH)


def test_collate_hybrid_tensors(toys, special):
    import torch

    from recsys_cli.training.rsllm import collate_hybrid

    exs = []
    for k, (src, tgt) in enumerate(zip(toys["src"][:4], toys["tgt"][:4])):
        exs.append(
            hybrid_prompt(src, tgt, special, None, toys["rows"], PH, 512, history=[1, 2, 3][: k + 1] if k < 3 else [])
        )
    b = collate_hybrid(exs, 0, torch.float32, history_len=2)
    assert b["input_ids"].shape[1] % 8 == 0
    assert b["soft_b"].tolist() == [i for i, e in enumerate(exs) for _ in e.soft]
    assert (b["input_ids"][b["soft_b"], b["soft_pos"]] == PH).all()
    assert b["soft_row"].tolist() == [r for e in exs for _, r in e.soft]
    assert b["title_row"].tolist() == sorted({r for e in exs for *_, r in e.titles})  # one row per distinct item
    first = exs[0].titles[0]
    k = b["title_row"].tolist().index(first[2])
    toks = b["title_tok"] == k
    assert b["title_ids"][toks].tolist() == exs[0].input_ids[first[0] : first[1]]
    # the packed title rows: after the examples, this title alone, inter 0..n-1, its Part A intra ids, no labels
    rows, pos = b["title_b"][toks], b["title_pos"][toks]
    assert (rows >= len(exs)).all() and b["input_ids"][rows, pos].tolist() == exs[0].input_ids[first[0] : first[1]]
    assert b["inter"][rows, pos].tolist() == list(range(first[1] - first[0]))
    assert (
        b["intra"][rows, pos].tolist() == exs[0].intra[first[0] : first[1]] and (b["labels"][len(exs) :] == -100).all()
    )
    blocked = b["attn_mask_4d"][rows[0], 0, pos[0]] < 0  # what the title's first token may not see
    assert not blocked[pos].any() and int((~blocked).sum()) == len(pos)  # its own tokens, nothing else
    assert b["user_b"].tolist() == [0, 1, 2] and b["user_pos"].tolist() == [e.part_a_len for e in exs[:3]]
    assert (b["input_ids"][b["user_b"], b["user_pos"]] == special.start).all()
    assert b["user_hist"].tolist() == [[0, 1], [1, 2], [2, 3]]  # left-padded, last history_len rows
