"""Batched full scoring (`--item-scoring full`, inference/candidates.score_candidates_batch):
several prompts' candidates scored together give each prompt's one-at-a-time scores.

    python -m pytest tests/unit/test_batched_scoring.py -q
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.data import masking, tokenize  # noqa: E402
from recsys_cli.data.special_tokens import SpecialIds  # noqa: E402
from recsys_cli.data.trie import EntityTrie  # noqa: E402
from recsys_cli.inference import candidates  # noqa: E402
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
    return lm, tok, SpecialIds.from_tokenizer(tok), toks, trie


def _part_a(tok, sp, text):
    d = tokenize.tokenize_document(text, [], tok)
    n = len(d.ids)
    ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], sp.g_m, sp, "prompt", None)
    return ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]


@pytest.mark.parametrize("chunk", [7, 32])
def test_batched_full_scores_equal_one_prompt_at_a_time(tiny, chunk):
    lm, tok, sp, toks, trie = tiny
    texts = ["Pick the toy this user will buy next from the list:", "Recommend a toy:",
             "The user bought Gloom, Cards Against Humanity and a puzzle; next they will buy", "Which one?"]
    pa = [_part_a(tok, sp, t) for t in texts]  # different lengths: the batch is left-padded
    lists = [toks[:25], toks[30:34], [], toks[40:41] + toks[:3]]  # different sizes, an empty list, shared titles
    with torch.inference_mode():
        batched = candidates.score_candidates_batch(lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie,
                                                    chunk=chunk)
        alone = [candidates.score_candidates(lm, a, ai, sp.start, sp.end, c, trie, chunk=chunk) if c else []
                 for (a, ai), c in zip(pa, lists)]
        via_engine_entry = candidates.score_batch(lm, [a for a, _ in pa], [ai for _, ai in pa], sp.start, sp.end, lists, trie,
                                                  scoring="full")
    assert [len(b) for b in batched] == [len(c) for c in lists]
    for b, s in zip(batched, alone):
        assert b == pytest.approx(s, rel=1e-5, abs=1e-5)
    assert all(e == pytest.approx(b, rel=1e-5, abs=1e-5) for e, b in zip(via_engine_entry, batched))  # what infer calls
    assert all(s < 0 for row in batched for s in row)
    assert batched[0][:3] != pytest.approx(batched[3][1:], rel=1e-3)  # same titles, other prompt: other scores


def test_batched_full_scoring_without_candidates(tiny):
    lm, tok, sp, toks, trie = tiny
    a, ai = _part_a(tok, sp, "Recommend a toy:")
    assert candidates.score_candidates_batch(lm, [a, a], [ai, ai], sp.start, sp.end, [[], []], trie) == [[], []]
