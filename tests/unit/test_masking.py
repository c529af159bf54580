"""Invariants of the GLM masking library over many random documents (real SmolLM2 tokenizer).

python -m pytest tests/unit/test_masking.py
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_cli.data import masking, tokenize
from recsys_cli.data.positions import part_b_intra
from recsys_cli.data.special_tokens import SpecialIds, add_special_tokens
from recsys_cli.data.trie import trie_from_rows
from recsys_cli.errors import RecsysError
from recsys_cli.training.recipe import MaskArgs

ENTITY_TEXTS = [
    ("item:1", "item", "Gloomhaven: Jaws of the Lion"),
    ("item:2", "item", "LEGO Star Wars Millennium Falcon 75192"),
    ("item:3", "item", "Melissa & Doug Wooden Building Blocks Set"),
    ("item:4", "item", "Hot Wheels 20-Car Gift Pack"),
    ("category:board games", "category", "Board Games"),
    ("category:puzzles", "category", "Puzzles"),
    ("brand:hasbro", "brand", "Hasbro"),
    ("feature:age=8-12", "feature", "8-12 years"),
    ("item:5", "item", "Playskool Busy Poppin' Pals Toy (FFP)"),
]
WORDS = [
    ",",
    "the",
    "user",
    "bought",
    "then",
    "a",
    "gift",
    "liked",
    "very",
    "much",
    "and",
    "after",
    "that",
    "it",
    "was",
    "fun",
]
CFG = MaskArgs()


@pytest.fixture(scope="module")
def trie(tok):
    ids = tok([" " + t for _, _, t in ENTITY_TEXTS], add_special_tokens=False)["input_ids"]
    return trie_from_rows((e, k, i, [e[5:]] if k == "item" else None) for (e, k, _), i in zip(ENTITY_TEXTS, ids))


# a document: sentences of words and entities; entities always follow a space
piece = st.one_of(
    st.sampled_from(WORDS).map(lambda w: ("w", w)), st.integers(0, len(ENTITY_TEXTS) - 1).map(lambda i: ("e", i))
)
sentence = st.lists(piece, min_size=1, max_size=12)
document = st.lists(sentence, min_size=1, max_size=6)


def render(doc_pieces) -> tuple[str, list[dict]]:
    text, ents = "Note:", []
    for sent in doc_pieces:
        for i, (kind, val) in enumerate(sent):
            text += "" if (val == "," and i > 0) else " "  # "," sticks to the previous piece: "(FFP)," merges in BPE
            if kind == "w":
                text += val
            else:
                eid, ekind, etext = ENTITY_TEXTS[val]
                ents.append({"start": len(text), "end": len(text) + len(etext), "kind": ekind, "entity_id": eid})
                text += etext
        text += "."
    return text, ents


def check_example(ex: masking.Example, doc: tokenize.TokenizedDoc, special: SpecialIds, mask_id: int, trie) -> None:
    n, a = len(doc.ids), ex.part_a_len
    L = len(ex.input_ids)
    assert len(ex.labels) == len(ex.inter) == len(ex.intra) == L
    # spans: sorted, disjoint, non-empty, never cutting through an entity
    for (s, e), nxt in zip(ex.spans, ex.spans[1:] + [(n + 1, n + 1)]):
        assert 0 <= s < e <= n and e <= nxt[0]
        for es, ee in doc.entity_spans:
            assert not (es < s < ee) and not (es < e < ee), (s, e, es, ee)
    # Part A: the document with one mask token per span
    assert ex.input_ids[:a].count(mask_id) == len(ex.spans)
    assert a == n - sum(e - s for s, e in ex.spans) + len(ex.spans)
    assert ex.labels[:a] == [masking.IGNORE] * a and ex.inter[:a] == list(range(a))
    # Part B: [START] seg, targets seg [END], inter = the span's mask index; rebuild the doc
    b = ex.input_ids[a:]
    segs, i = [], 0
    while i < len(b):
        assert b[i] == special.start
        j = i + 1
        while j < len(b) and b[j] != special.start:
            j += 1
        segs.append((a + i, a + j))
        i = j
    assert len(segs) == len(ex.spans)
    masks = [k for k in range(a) if ex.input_ids[k] == mask_id]
    rebuilt, t = [], 0
    for (p, q), m, (s, e) in zip(segs, masks, ex.spans):
        seg = ex.input_ids[p + 1 : q]
        assert seg == doc.ids[s:e]
        assert ex.labels[p:q] == seg + [special.end]
        assert ex.inter[p:q] == [m] * (q - p)
        rebuilt += ex.input_ids[t:m] + seg
        t = m + 1
    rebuilt += ex.input_ids[t:a]
    assert rebuilt == doc.ids
    # intra, Part A: 0 plain / masks, 1..n inside an entity left in Part A
    pos = [0] * n
    for s, e in doc.entity_spans:
        pos[s:e] = range(1, e - s + 1)
    kept = [k for k in range(n) if not any(s <= k < e for s, e in ex.spans)]
    a_plain = [ex.intra[k] for k in range(a) if ex.input_ids[k] == mask_id]
    assert all(v == 0 for v in a_plain)
    assert [v for k, v in enumerate(ex.intra[:a]) if ex.input_ids[k] != mask_id] == [pos[k] for k in kept]
    # intra, Part B: the one rule of data/positions.py over the entity trie; on these documents no
    # plain word follows a trie path, so it equals the marked-entity reading of the rule:
    # [START] = 1, the first unit continues, later units restart at 1
    for (p, q), (s, e) in zip(segs, ex.spans):
        want, first = [1], True
        for k in range(s, e):
            if pos[k] <= 1 and k > s:
                first = False
            want.append((pos[k] or 1) + (1 if first else 0))
        assert ex.intra[p:q] == want
        assert part_b_intra(ex.input_ids[p + 1 : q], trie) == want


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc_pieces=document, seed=st.integers(0, 2**31), level=st.sampled_from(masking.LEVELS))
def test_mask_invariants(tok, special, trie, doc_pieces, seed, level):
    text, ents = render(doc_pieces)
    doc = tokenize.tokenize_document(text, ents, tok)
    # entity spans are exact and carry the in-context ids (" " + text)
    assert len(doc.entity_spans) == len(ents)
    want = tok([" " + text[e["start"] : e["end"]] for e in ents], add_special_tokens=False)["input_ids"] if ents else []
    assert [doc.ids[s:e] for s, e in doc.entity_spans] == want
    assert doc.sentence_spans[0][0] == 0 and doc.sentence_spans[-1][1] == len(doc.ids)
    assert len(doc.sentence_spans) == len(doc_pieces)
    ex = masking.mask_document(doc, level, random.Random(seed), CFG, special, trie)
    check_example(ex, doc, special, special.mask_for(level), trie)
    n = len(doc.ids)
    masked = sum(e - s for s, e in ex.spans)
    if level == "entity":
        assert masked >= 1 and ex.input_ids.count(special.s_m) == ex.input_ids.count(special.g_m) == 0
    elif level == "sentence":
        assert set(ex.spans) <= set(doc.sentence_spans)
        assert masked >= round(0.15 * n)
    else:
        assert len(ex.spans) == 1 and ex.spans[0][1] == n and masked >= math.ceil(CFG.doc_min * n)
        starts = [s for s, _ in [*doc.sentence_spans, *doc.entity_spans]]
        opens = {s for s in starts if math.ceil(CFG.doc_min * n) <= n - s <= n}
        assert not opens or ex.spans[0][0] in opens  # a sentence or entity start whenever one is in range
    # same seed, same example
    assert masking.mask_document(doc, level, random.Random(seed), CFG, special, trie) == ex


def test_document_span_opens_a_sentence(tok):
    """The document-level span (the one behind `[gM]`, like a prompt's answer) starts at a sentence
    start for every draw, never mid-clause (issue 29: answers began with " of the", " in a")."""
    text = (
        "Long-term interests of user_7, oldest first: Build-A-Bear Gift Card, by Build-A-Bear, in Gift Cards. "
        "Amazon.com Gift Card in a Greeting Card, by Amazon, in Gift Cards. "
        "Amazon.com Gift Card in a Snowflake Tin, by Amazon, in Gift Cards."
    )
    doc = tokenize.tokenize_document(text, [], tok)
    opens = {s for s, _ in doc.sentence_spans}
    assert len(opens) == 3
    starts = {masking.document_span_to_mask(doc, random.Random(seed), CFG)[0][0] for seed in range(200)}
    assert starts <= opens and len(starts) >= 2  # sentence starts only, and more than one of them
    narrow = MaskArgs(doc_min=0.05, doc_max=0.1)  # no sentence gives 5-10% of the tokens: a unit boundary
    n = len(doc.ids)
    for seed in range(20):
        ((s, e),) = masking.document_span_to_mask(doc, random.Random(seed), narrow)
        assert e == n and math.ceil(0.05 * n) <= n - s <= math.ceil(0.1 * n) and s not in opens


def test_bpe_merge_across_entity_edge(tok):
    """ "(FFP)," is one BPE token in running text; the entity still gets its own ids."""
    text = "I bought Playskool Busy Poppin' Pals Toy (FFP), then more."
    ent = {"start": 9, "end": 46, "kind": "item", "entity_id": "item:5"}
    whole = tok(text, add_special_tokens=False)["input_ids"]
    doc = tokenize.tokenize_document(text, [ent], tok)
    ((s, e),) = doc.entity_spans
    assert doc.ids[s:e] == tok(" " + text[9:46], add_special_tokens=False)["input_ids"]
    assert doc.ids != whole and tok.decode(doc.ids) == text  # re-cut at the edge, same text
    assert doc.sentence_spans == [(0, len(doc.ids))]


def test_entity_ratio_and_poisson_lengths(tok, special):
    text = "Note: " + " ".join(WORDS * 20) + "."
    doc = tokenize.tokenize_document(text, [], tok)
    lengths, ratios = [], []
    for seed in range(200):
        ex = masking.mask_document(doc, "entity", random.Random(seed), CFG, special, None)
        lengths += [e - s for s, e in ex.spans]
        ratios.append(sum(e - s for s, e in ex.spans) / len(doc.ids))
    assert 0.15 <= sum(ratios) / len(ratios) <= 0.2
    assert 2.5 <= sum(lengths) / len(lengths) <= 3.8  # ~Poisson(3) clipped at 1
    assert max(lengths) >= 6


def test_document_level_fraction(tok, special):
    """Many short sentences: the span still covers 50-100% of the tokens, spread over that range.
    One sentence: the only start in range is the document's own, so the whole text is the span."""
    text = " ".join(f"Note {i}: the user bought it." for i in range(30))
    doc = tokenize.tokenize_document(text, [], tok)
    assert len(doc.sentence_spans) == 30
    fracs = [
        (lambda ex: (ex.spans[0][1] - ex.spans[0][0]) / len(doc.ids))(
            masking.mask_document(doc, "document", random.Random(s), CFG, special, None)
        )
        for s in range(100)
    ]
    assert 0.5 <= min(fracs) and max(fracs) <= 1.0 and 0.65 <= sum(fracs) / 100 <= 0.85
    one = tokenize.tokenize_document("Note: " + " ".join(WORDS * 10) + ".", [], tok)
    spans = {masking.document_span_to_mask(one, random.Random(s), CFG)[0] for s in range(20)}
    assert spans == {(0, len(one.ids))}


def test_paper_example_positions(tok, special, trie):
    """Fig. 1: [S] x1 x2 x3 of one entity -> intra 1, 2, 3, 4; Part A entity tokens 1..n."""
    text = "I bought Gloomhaven: Jaws of the Lion and Puzzles"
    ents = [
        {"start": 9, "end": 37, "kind": "item", "entity_id": "item:1"},
        {"start": 42, "end": 49, "kind": "category", "entity_id": "c"},
    ]
    doc = tokenize.tokenize_document(text, ents, tok)
    ex = masking.build_example(doc.ids, doc.entity_spans, [doc.entity_spans[0]], special.m, special, "entity", trie)
    n_ent = doc.entity_spans[0][1] - doc.entity_spans[0][0]
    assert ex.intra[ex.part_a_len :] == list(range(1, n_ent + 2))
    k = doc.entity_spans[1][1] - doc.entity_spans[1][0]
    assert ex.intra[: ex.part_a_len] == [0, 0, 0, 0, *range(1, k + 1)]  # I bought [M] and Puzzles
    assert ex.inter[ex.part_a_len :] == [2] * (n_ent + 1)


def test_prompt_example(tok, special, trie):
    src_text = "Which toy will the user buy after Hasbro and Gloomhaven: Jaws of the Lion? Answer:"
    src_ents = [
        {"start": 34, "end": 40, "kind": "brand", "entity_id": "brand:hasbro"},
        {"start": 45, "end": 73, "kind": "item", "entity_id": "item:1"},
    ]
    tgt_text = "Hot Wheels 20-Car Gift Pack"
    tgt_ents = [{"start": 0, "end": len(tgt_text), "kind": "item", "entity_id": "item:4"}]
    src = tokenize.tokenize_document(src_text, src_ents, tok)
    tgt = tokenize.tokenize_target(tgt_text, tgt_ents, tok)
    assert tgt.ids == tok(" " + tgt_text, add_special_tokens=False)["input_ids"]
    assert tgt.entity_spans == [(0, len(tgt.ids))]
    ex = masking.prompt_example(src, tgt, special, trie)
    n = len(src.ids)
    assert ex.level == "prompt" and ex.part_a_len == n + 1 and ex.input_ids[n] == special.g_m
    assert ex.spans == [(n, n + len(tgt.ids))]
    assert ex.intra[ex.part_a_len :] == list(range(1, len(tgt.ids) + 2))
    assert ex.labels[-1] == special.end
    whole = tokenize.TokenizedDoc(src.ids + tgt.ids, ex.entity_spans, [(0, n + len(tgt.ids))])
    check_example(ex, whole, special, special.g_m, trie)
    assert part_b_intra(tgt.ids, trie) == ex.intra[ex.part_a_len :]


def test_special_ids(tiny_tokenizer):
    import copy

    t = copy.deepcopy(tiny_tokenizer)
    with pytest.raises(RecsysError, match="special tokens"):
        SpecialIds.from_tokenizer(t)
    ids = add_special_tokens(t)
    assert add_special_tokens(t) == ids and len(set(ids.as_dict().values())) == 5
    assert t.convert_ids_to_tokens(ids.start) == "[START]"
    assert t("x [M] y", add_special_tokens=False)["input_ids"].count(ids.m) == 1


def test_config_and_level_validation(tok, special):
    with pytest.raises(RecsysError):
        MaskArgs(doc_min=0.9, doc_max=0.5)
    with pytest.raises(RecsysError):
        MaskArgs(level_weights={"paragraph": 1.0})
    doc = tokenize.tokenize_document("hello there.", [], tok)
    with pytest.raises(RecsysError, match="unknown masking level"):
        masking.mask_document(doc, "word", random.Random(0), CFG, special, None)
    rng = random.Random(0)
    counts = {lv: 0 for lv in masking.LEVELS}
    for _ in range(1000):
        counts[masking.sample_level(rng, CFG)] += 1
    assert 520 < counts["entity"] < 680 and 140 < counts["sentence"] < 260


def test_free_text_answer_positions_follow_the_trie(tok, special, trie):
    """Fidelity: a free-text answer (no marked entities) gets the trie-driven ids, exactly the
    ids decoding assigns: a plain run that follows an entity's tokens counts up."""
    src = tokenize.tokenize_document("What does the user say?", [], tok)
    tgt = tokenize.tokenize_target("Hot Wheels 20-Car Gift Pack were fun, the user said.", [], tok)
    ex = masking.prompt_example(src, tgt, special, trie)
    got = ex.intra[ex.part_a_len :]
    assert got == part_b_intra(tgt.ids, trie)
    n_title = len(tok(" Hot Wheels 20-Car Gift Pack", add_special_tokens=False)["input_ids"])
    assert got[: n_title + 1] == list(range(1, n_title + 2))  # [START] then the title's path
    assert got[n_title + 1] == 1  # " were" leaves the trie: restart
