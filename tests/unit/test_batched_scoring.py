"""Batched full scoring (`--item-scoring full`, inference/candidates.score_candidates_batch):
several prompts' candidates scored together give each prompt's one-at-a-time scores. The
calibrated scorers built on it (`full-norm`, `pmi`, inference/calibrated.py) against `full`
computed separately.

    python -m pytest tests/unit/test_batched_scoring.py -q
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.data import masking, tokenize  # noqa: E402
from recsys_cli.data.special_tokens import SpecialIds  # noqa: E402
from recsys_cli.data.trie import EntityTrie  # noqa: E402
from recsys_cli.inference import calibrated, candidates  # noqa: E402
from tests.conftest import TINY_MODEL, TOYS  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    """The tiny model for inference (a non-zero intra table, so intra ids matter) and real Toys titles."""
    from recsys_cli.modeling.checkpoint import load_base_for_inference

    lm, tok, _ = load_base_for_inference(str(TINY_MODEL))
    torch.manual_seed(0)
    with torch.no_grad():
        lm.intra_embed.weight.normal_(0, 1.0)
    titles = [json.loads(line).get("title") for line in (TOYS / "meta.jsonl").read_text().splitlines()[:120]]
    toks = [tok(" " + t, add_special_tokens=False)["input_ids"] for t in titles if t]
    trie = EntityTrie((t, i) for i, t in enumerate(toks))
    return lm, tok, SpecialIds.from_tokenizer(tok), toks, trie, [t for t in titles if t]


def _part_a(tok, sp, text):
    d = tokenize.tokenize_document(text, [], tok)
    n = len(d.ids)
    ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], sp.g_m, sp, "prompt", None)
    return ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]


@pytest.mark.parametrize("chunk", [7, 32])
def test_batched_full_scores_equal_one_prompt_at_a_time(tiny, chunk):
    lm, tok, sp, toks, trie, _ = tiny
    texts = [
        "Pick the toy this user will buy next from the list:",
        "Recommend a toy:",
        "The user bought Gloom, Cards Against Humanity and a puzzle; next they will buy",
        "Which one?",
    ]
    pa = [_part_a(tok, sp, t) for t in texts]  # different lengths: the batch is left-padded
    lists = [toks[:25], toks[30:34], [], toks[40:41] + toks[:3]]  # different sizes, an empty list, shared titles
    with torch.inference_mode():
        batched = candidates.score_candidates_batch(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie, chunk=chunk
        )
        alone = [
            candidates.score_candidates(lm, a, ai, sp.start, sp.end, c, trie, chunk=chunk) if c else []
            for (a, ai), c in zip(pa, lists)
        ]
        via_engine_entry = candidates.score_batch(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie, scoring="full"
        )
    assert [len(b) for b in batched] == [len(c) for c in lists]
    for b, s in zip(batched, alone):
        assert b == pytest.approx(s, rel=1e-5, abs=1e-5)
    assert all(e == pytest.approx(b, rel=1e-5, abs=1e-5) for e, b in zip(via_engine_entry, batched))  # what infer calls
    assert all(s < 0 for row in batched for s in row)
    assert batched[0][:3] != pytest.approx(batched[3][1:], rel=1e-3)  # same titles, other prompt: other scores


def test_batched_full_scoring_without_candidates(tiny):
    lm, tok, sp, toks, trie, _ = tiny
    a, ai = _part_a(tok, sp, "Recommend a toy:")
    assert candidates.score_candidates_batch(lm, [a, a], [ai, ai], sp.start, sp.end, [[], []], trie) == [[], []]


TEXTS = ["Pick the toy this user will buy next from the list:", "The user bought Gloom and a puzzle; next they buy"]


def test_full_norm_is_full_over_the_scored_token_count(tiny):
    lm, tok, sp, toks, trie, titles = tiny
    pa = [_part_a(tok, sp, t) for t in TEXTS]
    picks = [list(range(12)), [40, 3, 77, 5]]  # title indices per prompt (title 3 in both)
    lists = [[toks[i] for i in p] for p in picks]
    with torch.inference_mode():
        full = candidates.score_candidates_batch(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie
        )
        norm = calibrated.score_calibrated(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie, "full-norm"
        )
    for p, f_row, n_row in zip(picks, full, norm):
        # counted here with the tokenizer: the title's tokens, plus [END], which `full` scores too
        counts = [len(tok(" " + titles[i], add_special_tokens=False)["input_ids"]) + 1 for i in p]
        assert len(set(counts)) > 1  # titles of different lengths: the division matters
        assert n_row == pytest.approx([f / c for f, c in zip(f_row, counts)], rel=1e-6, abs=1e-6)
    assert sorted(range(12), key=lambda i: -norm[0][i]) != sorted(range(12), key=lambda i: -full[0][i])


def test_pmi_is_full_minus_the_neutral_prompt_full_score(tiny):
    lm, tok, sp, toks, trie, _ = tiny
    pa = [_part_a(tok, sp, t) for t in TEXTS]
    na, nai = _part_a(tok, sp, calibrated.NEUTRAL_SOURCE)
    picks = [list(range(10)), [40, 3, 77, 5, 3]]  # item 3 in both prompts, and twice in one list
    lists = [[toks[i] for i in p] for p in picks]
    ids = [[f"i{i}" for i in p] for p in picks]
    with torch.inference_mode():
        neutral = calibrated.NeutralScores(lm, na, nai, sp.start, sp.end, trie)
        pmi = calibrated.score_calibrated(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie, "pmi", neutral, ids
        )
        full = candidates.score_candidates_batch(
            lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie
        )
        prior = [candidates.score_candidates(lm, na, nai, sp.start, sp.end, c, trie) for c in lists]  # a separate call
    for p_row, f_row, n_row in zip(pmi, full, prior):
        assert p_row == pytest.approx([f - n for f, n in zip(f_row, n_row)], rel=1e-5, abs=1e-5)
    assert set(neutral.cache) == {i for row in ids for i in row}  # one entry per distinct item
    assert neutral.cache["i3"] == pytest.approx(prior[1][1], rel=1e-5, abs=1e-5)
    neutral.model = None  # cached items never reach the model again
    assert neutral.scores([["i40", "i3"]], [[toks[40], toks[3]]]) == [[neutral.cache["i40"], neutral.cache["i3"]]]
    with pytest.raises(ValueError):
        calibrated.score_calibrated(lm, [pa[0][0]], [pa[0][1]], sp.start, sp.end, lists[:1], trie, "pmi")


def test_engine_scores_pmi_with_the_neutral_prompt_of_its_part_a_builder(tiny):
    from recsys_cli.inference.engine import Engine
    from recsys_cli.inference.options import InferOptions

    lm, tok, sp, toks, trie, titles = tiny
    names = {f"i{k}": t for k, t in enumerate(titles)}
    eng = Engine(lm, tok, InferOptions(item_scoring="pmi"), trie, None, names)
    rows = [{"source": t, "source_entities": []} for t in TEXTS]
    items = [["i0", "i1", "i2"], ["i2", "i9"]]
    with torch.inference_mode():
        a, ai, soft = eng.part_a(rows)
        got = calibrated.score_items(eng, a, ai, soft, items, [[eng.title_tokens(i) for i in its] for its in items])
        na, nai = _part_a(tok, sp, calibrated.NEUTRAL_SOURCE)
        titles_of = [[toks[int(i[1:])] for i in its] for its in items]
        neutral = calibrated.NeutralScores(lm, na, nai, sp.start, sp.end, trie)
        want = calibrated.score_calibrated(lm, a, ai, sp.start, sp.end, titles_of, trie, "pmi", neutral, items)
    assert calibrated.neutral_of(eng).part_a == na and set(eng.neutral_scores.cache) == {"i0", "i1", "i2", "i9"}
    assert [g == pytest.approx(w, rel=1e-5, abs=1e-5) for g, w in zip(got, want)] == [True, True]
