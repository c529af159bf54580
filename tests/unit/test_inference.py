"""Inference core on the tiny random model (real tokenizer) and real Toys titles.

python -m pytest tests/unit/test_inference.py -q
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.data import masking, tokenize  # noqa: E402
from recsys_cli.data.positions import IntraTracker, part_b_intra  # noqa: E402
from recsys_cli.data.ratings import parse_rating  # noqa: E402
from recsys_cli.data.special_tokens import SpecialIds  # noqa: E402
from recsys_cli.data.trie import EntityTrie  # noqa: E402
from recsys_cli.inference import candidates, decode  # noqa: E402
from tests.conftest import TINY_MODEL, TOYS  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    from recsys_cli.modeling.checkpoint import load_base_for_inference

    lm, tok, _ = load_base_for_inference(str(TINY_MODEL))
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero intra table, so wrong intra ids change the logits
        lm.intra_embed.weight.normal_(0, 1.0)
    titles = {}
    for line in (TOYS / "meta.jsonl").read_text().splitlines()[:300]:
        d = json.loads(line)
        if d.get("title"):
            titles[d["asin"]] = d["title"]
    toks = {i: tok(" " + t, add_special_tokens=False)["input_ids"] for i, t in titles.items()}
    trie = EntityTrie((t, i) for i, t in toks.items())
    sp = SpecialIds.from_tokenizer(tok)
    return lm, tok, sp, titles, toks, trie


def part_a(tok, sp, text):
    d = tokenize.tokenize_document(text, [], tok)
    n = len(d.ids)
    ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], sp.g_m, sp, "prompt", None)
    return ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]


def full_logprob(lm, sp, a, ai, answer, intra_b):
    """Teacher-forced log P([START] answer [END]) with one full forward (no cache)."""
    from recsys_cli.modeling.mask import build_attention_mask

    n = len(a)
    ids = torch.tensor([a + [sp.start] + answer])
    inter = torch.tensor([list(range(n)) + [n - 1] * (len(answer) + 1)])
    m = build_attention_mask([n], [ids.shape[1]], ids.shape[1], torch.float32)
    with torch.inference_mode():
        lp = torch.log_softmax(lm(ids, inter, torch.tensor([ai + intra_b]), m).logits[0, n:], -1)
    return sum(lp[j, t].item() for j, t in enumerate(answer + [sp.end]))


def test_dynamic_intra_equals_masking_part_b(setup):
    lm, tok, sp, titles, toks, trie = setup

    names = list(titles.values())[:6]
    target = f"{names[0]}, then {names[1]} and {names[2]}"
    ents, pos = [], 0
    for nm in names[:3]:
        s = target.index(nm, pos)
        ents.append({"start": s, "end": s + len(nm), "kind": "item", "entity_id": nm})
        pos = s + len(nm)
    src = tokenize.tokenize_document("A user bought these toys:", [], tok)
    tgt = tokenize.tokenize_target(target, ents, tok)
    ex = masking.prompt_example(src, tgt, sp, trie)
    part_b = ex.intra[ex.part_a_len :]  # [START] + answer tokens
    # generation-time ids: feed the same tokens through the KV-cache decoder one at a time
    a, ai = ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]
    with torch.inference_mode():
        st = decode.prefill(lm, [a], [ai], sp.start, trie)
        got = [1]
        for t in tgt.ids:
            decode.step(lm, st, torch.tensor([t]))
            got.append(st.tracker.intra[0])
    assert got == part_b
    assert got == part_b_intra(tgt.ids, trie)
    assert max(part_b) > 2  # the titles really were continued


def test_kv_cache_with_left_padding_matches_full_forward(setup):
    lm, tok, sp, titles, toks, trie = setup
    prompts = ["The user bought Gloom and then", "Next toy for user 7 after a long list of board games is"]
    pa = [part_a(tok, sp, p) for p in prompts]
    answer = toks[next(iter(toks))]
    with torch.inference_mode():
        st = decode.prefill(lm, [p[0] for p in pa], [p[1] for p in pa], sp.start, trie)
        logs = [torch.log_softmax(st.logits, -1)]
        for t in answer:
            decode.step(lm, st, torch.tensor([t, t]))
            logs.append(torch.log_softmax(st.logits, -1))
    for r, (a, ai) in enumerate(pa):
        inc = sum(logs[j][r, t].item() for j, t in enumerate(answer + [sp.end]))
        assert inc == pytest.approx(full_logprob(lm, sp, a, ai, answer, part_b_intra(answer, trie)), abs=1e-3)


def test_constrained_beam_search_real_distinct_items_and_reordered_positions(setup):
    lm, tok, sp, titles, toks, trie = setup
    pa = [part_a(tok, sp, p) for p in ["The user bought Gloom, Cards Against Humanity and", "Recommend a toy:"]]
    hist = list(titles)[:5]
    excluded = [set(), set(hist)]
    with torch.inference_mode():
        st = decode.prefill(lm, [p[0] for p in pa], [p[1] for p in pa], sp.start, trie)
        hyps = decode.beam_search(lm, st, 12, 10, sp.end, trie.max_depth + 1, decode.Constraint(trie, sp.end), excluded)
    for (a, ai), hs, excl in zip(pa, hyps, excluded):
        assert len(hs) == 10
        items = [i for _, _, node in hs for i in trie.payloads[node]]
        assert all(i in titles for i in items) and len(items) == len(set(items))
        assert not excl & set(items)
        assert [h[0] for h in hs] == sorted((h[0] for h in hs), reverse=True)
        for score, seq, node in hs[:3]:  # per-beam positions survived reordering: scores match a full pass
            assert seq == toks[trie.payloads[node][0]]
            assert score == pytest.approx(full_logprob(lm, sp, a, ai, seq, part_b_intra(seq, trie)), abs=1e-3)


def test_shared_prefix_candidate_scores_equal_separate_passes(setup):
    lm, tok, sp, titles, toks, trie = setup
    a, ai = part_a(tok, sp, "Pick the toy this user will buy next from the list:")
    cands = [toks[i] for i in list(toks)[:7]]
    with torch.inference_mode():
        shared = candidates.score_candidates(lm, a, ai, sp.start, sp.end, cands, trie, chunk=4)
    ref = [full_logprob(lm, sp, a, ai, c, part_b_intra(c, trie)) for c in cands]
    assert shared == pytest.approx(ref, abs=1e-3)
    with torch.inference_mode():
        ((y, n),) = candidates.yes_no(
            lm, [a], [ai], sp.start, [tok(" yes")["input_ids"][0]], [tok(" no")["input_ids"][0]]
        )
    assert y < 0 and n < 0 and y != n


def test_constrained_scores_are_a_distribution_and_match_exhaustive_beam_search(setup):
    lm, tok, sp, titles, toks, trie = setup
    a, ai = part_a(tok, sp, "Pick the toy this user will buy next from the list:")
    ids = list(toks)[:40]
    cands = [toks[i] for i in ids]
    with torch.inference_mode():
        got = candidates.score_candidates_constrained(lm, a, ai, sp.start, sp.end, cands, trie)
        cand_trie = EntityTrie((c, i) for i, c in zip(ids, cands))
        st = decode.prefill(lm, [a], [ai], sp.start, trie)
        con = decode.Constraint(cand_trie, sp.end, renormalize=True)
        hyps = decode.beam_search(lm, st, len(ids), len(ids), sp.end, cand_trie.max_depth + 1, con)[0]
    distinct = {tuple(c): s for c, s in zip(cands, got)}  # equal titles share one probability
    assert sum(torch.tensor(list(distinct.values())).exp().tolist()) == pytest.approx(1.0, abs=1e-4)
    assert len(hyps) == len(distinct)  # exhaustive: every title found, each once
    by_item = {i: s for i, s in zip(ids, got)}
    for score, seq, node in hyps:  # two implementations of the same distribution agree
        assert seq == toks[cand_trie.payloads[node][0]]
        assert score == pytest.approx(by_item[cand_trie.payloads[node][0]], abs=1e-4)


def test_batched_constrained_walker_equals_one_prompt_at_a_time(setup):
    lm, tok, sp, titles, toks, trie = setup
    ids = list(toks)
    prompts = ["Pick the toy this user will buy next from the list:", "Recommend a toy:", "The user bought Gloom and"]
    pa = [part_a(tok, sp, p) for p in prompts]
    lists = [
        [toks[i] for i in ids[:25]],
        [toks[i] for i in ids[10:14]],
        [toks[ids[3]]],
    ]  # different sizes; one single title
    with torch.inference_mode():
        batched = candidates.score_candidates_constrained_batch(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie
        )
        alone = [
            candidates.score_candidates_constrained(lm, a, ai, sp.start, sp.end, c, trie)
            for (a, ai), c in zip(pa, lists)
        ]
    assert [len(b) for b in batched] == [len(c) for c in lists]
    for b, s in zip(batched, alone):  # left padding changes nothing but rounding
        assert b == pytest.approx(s, abs=1e-4)
    assert batched[2] == [0.0]  # one distinct title: probability 1, no forward needed
    assert candidates.score_candidates_constrained_batch(lm, [pa[0][0]], [pa[0][1]], sp.start, sp.end, [[]], trie) == [
        []
    ]


def test_renormalized_beam_search_stops_once_a_title_is_decided(setup):
    lm, tok, sp, titles, toks, trie = setup
    a, ai = part_a(tok, sp, "Recommend a toy:")
    calls = {"n": 0}
    real_step = decode.step

    def counting_step(*args, **kw):
        calls["n"] += 1
        return real_step(*args, **kw)

    decode.step = counting_step
    try:
        with torch.inference_mode():
            st = decode.prefill(lm, [a], [ai], sp.start, trie)
            hyps = decode.beam_search(
                lm, st, 10, 10, sp.end, trie.max_depth + 1, decode.Constraint(trie, sp.end, renormalize=True)
            )[0]
    finally:
        decode.step = real_step
    assert len(hyps) == 10
    assert all(seq == toks[trie.payloads[node][0]] for _, seq, node in hyps)  # full titles returned
    assert calls["n"] < max(len(seq) for _, seq, _ in hyps)  # fewer forward steps than title tokens
    assert all(s <= 0 for s, _, _ in hyps) and sum(torch.tensor([s for s, _, _ in hyps]).exp().tolist()) <= 1 + 1e-5


def test_tracker_reorder_and_first_unit():
    trie = EntityTrie([([5, 6, 7], "a"), ([5, 9], "b")])
    tr = IntraTracker(trie, 2)
    assert tr.push([5, 3]) == [2, 2]  # first unit continues from [START] (=1)
    tr.reorder([0, 0])
    assert tr.push([6, 9]) == [3, 3]
    assert tr.push([7, 5]) == [4, 1]  # row 1: 9 ended "b"; 5 starts a new entity
    assert part_b_intra([3, 4, 5, 6], trie) == [1, 2, 1, 1, 2]


@pytest.mark.parametrize(
    "text,want",
    [
        ("4", 4.0),
        ("about 4.5 stars", 4.5),
        ("7", 5.0),
        ("0", 1.0),
        ("great", None),
        ("", None),
        (".5", 1.0),
        ("3.", 3.0),
        ("1e1", 5.0),
        ("-2 stars", 1.0),
        ("4 or 5", 4.0),
    ],
)
def test_parse_rating(text, want):
    assert parse_rating(text) == want
