"""Explanation / review decoding (inference/textgen.py) on the tiny random model with the real
tokenizer: n-gram blocking, the minimum length, the first token, sentence trimming and beam
search's length normalisation.

    python -m pytest tests/unit/test_textgen.py -q
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.data import masking, tokenize  # noqa: E402
from recsys_cli.inference import decode, textgen  # noqa: E402
from recsys_cli.inference.textgen import Processor, TextDecoding  # noqa: E402

PROMPTS = [
    "Write one sentence user_7 might say about Fender Strings.",
    "Why would user_3 like or dislike the Snark tuner? One sentence.",
    "Give a title for this review by user_9: great picks, thin and bendy.",
]


class Biased:
    """The tiny model with `bias` added to one token's logit, or to several ([END]: answers end
    early; a word: greedy repeats it; the digits: greedy walks through them)."""

    def __init__(self, lm, token: int | list[int], bias: float):
        self.lm, self.token, self.bias = lm, token, bias

    def parameters(self):
        return self.lm.parameters()

    def __call__(self, **kw):
        out = self.lm(**kw)
        out.logits[..., self.token] += self.bias
        return out


@pytest.fixture(scope="module")
def setup(tok, special):
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from tests.conftest import TINY_MODEL

    lm, _, _ = load_base_for_inference(str(TINY_MODEL))
    parts = []
    for text in PROMPTS:
        d = tokenize.tokenize_document(text, [], tok)
        n = len(d.ids)
        ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], special.g_m, special, "prompt", None)
        parts.append((ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]))
    return lm, parts, textgen.word_tokens(tok)


def _proc(tok, special, words, **cfg):
    """The processor with `cfg`; the repetition penalty off unless given, so each test sees one rule."""
    ends = [special.end, tok.eos_token_id]
    return Processor(TextDecoding(**{"repetition_penalty": 0.0, **cfg}), ends, tok.all_special_ids, words)


def _run(model, parts, special, proc, max_new, beams=0, alpha=1.0):
    with torch.inference_mode():
        st = decode.prefill(model, [p[0] for p in parts], [p[1] for p in parts], special.start, None, dynamic=False)
        if beams:
            return textgen.beam(model, st, proc, beams, alpha, max_new)
        return textgen.greedy(model, st, proc, max_new)


def _ngrams(seq, n):
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def test_ngram_bans_and_processor_masks(tok, special):
    assert textgen.ngram_bans([5, 6, 7, 5, 6], 3) == [7]  # "5 6" was followed by 7
    assert textgen.ngram_bans([5, 6, 5, 6, 5], 2) == [6, 6]
    assert textgen.ngram_bans([5, 6, 7], 0) == [] and textgen.ngram_bans([5], 3) == []
    words = textgen.word_tokens(tok)
    dot, the = tok.convert_tokens_to_ids("."), tok(" the", add_special_tokens=False)["input_ids"][0]
    assert not words[dot] and words[the] and not words[special.end]
    proc = _proc(tok, special, words, no_repeat_ngram=2, min_new_tokens=2)
    logp = proc(torch.zeros(2, len(tok)), [[the], [the, 9, the]], 1)
    assert logp[0, special.end] == float("-inf") and logp[0, special.g_m] == float("-inf")
    assert logp[1, 9] == float("-inf") and logp[0, 9] == 0 and logp[0, dot] == 0  # only row 1 holds "the 9"
    first = proc(torch.zeros(1, len(tok)), [[]], 0)
    assert torch.isinf(first[0, dot]) and not torch.isinf(first[0, the])  # the first token holds a word


def test_no_repeat_ngram_blocks_the_repeats_greedy_makes(setup, tok, special):
    lm, parts, words = setup
    the = tok(" the", add_special_tokens=False)["input_ids"][0]
    model = Biased(lm, the, 8.0)  # greedy says " the the the ..."
    plain = _run(model, parts, special, _proc(tok, special, words, no_repeat_ngram=0, min_new_tokens=24), 24)
    assert all(len(set(_ngrams(s, 3))) < len(_ngrams(s, 3)) for s, _ in plain)
    for n in (2, 3):
        got = _run(model, parts, special, _proc(tok, special, words, no_repeat_ngram=n, min_new_tokens=24), 24)
        for seq, _ in got:
            assert len(seq) == 24 and len(set(_ngrams(seq, n))) == len(_ngrams(seq, n))


def test_repetition_penalty_subtracts_per_earlier_use(tok, special):
    words = textgen.word_tokens(tok)
    assert textgen.repeat_counts([[7, 8, 7], []]) == ([0, 0], [7, 8], [2, 1])
    proc = _proc(tok, special, words, no_repeat_ngram=0, min_new_tokens=0, repetition_penalty=1.5)
    logp = proc(torch.zeros(2, len(tok)), [[7, 8, 7], [9]], 3)
    assert logp[0, 7] == -3.0 and logp[0, 8] == -1.5 and logp[0, 9] == 0  # twice, once, never in row 0
    assert logp[1, 9] == -1.5 and logp[1, 7] == 0
    off = _proc(tok, special, words, no_repeat_ngram=0, min_new_tokens=0)(torch.zeros(1, len(tok)), [[7, 7]], 2)
    assert off[0, 7] == 0  # 0 nats: off


def test_repetition_penalty_breaks_a_digit_walk(setup, tok, special):
    """A model that prefers a few digits (an adapter trained on ASIN-heavy text: "B0010203...")
    walks through them under bigram blocking alone; the penalty makes every reuse dearer."""
    lm, parts, words = setup
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(3)]
    model = Biased(lm, digits, 12.0)  # far above every other token of the tiny model
    cfg = {"no_repeat_ngram": 2, "min_new_tokens": 16}
    walk = _run(model, parts, special, _proc(tok, special, words, **cfg), 16)
    for seq, _ in walk:  # bigram blocking alone: mostly digits, each used 5 times or more
        assert sum(t in digits for t in seq) >= 12 and max(seq.count(d) for d in digits) >= 5
    fixed = _run(model, parts, special, _proc(tok, special, words, **cfg, repetition_penalty=4.0), 16)
    for seq, _ in fixed:  # 4 nats per use: by the fourth use a digit has lost its lead
        assert max(seq.count(d) for d in digits) <= 3 and sum(t in digits for t in seq) <= 9


def test_min_new_tokens_holds_back_end(setup, tok, special):
    lm, parts, words = setup
    model = Biased(lm, special.end, 40.0)  # [END] is the argmax at every step
    for m in (0, 1, 5):
        got = _run(model, parts, special, _proc(tok, special, words, no_repeat_ngram=3, min_new_tokens=m), 12)
        assert [len(s) for s, _ in got] == [max(m, 1)] * len(parts)  # never empty: the first token is a word
        assert all(ended for _, ended in got)
        assert all(textgen.has_word(tok.decode(s)) for s, _ in got)


def _raw_score(model, part, special, seq, ended):
    """Teacher-forced summed log-prob of `seq` (+ [END] when it ended), the beam's own score."""
    with torch.inference_mode():
        st = decode.prefill(model, [part[0]], [part[1]], special.start, None, dynamic=False)
        total = 0.0
        for tok in seq + ([special.end] if ended else []):
            total += torch.log_softmax(st.logits.float(), -1)[0, tok].item()
            decode.step(model, st, torch.tensor([tok]))
    return total, len(seq) + int(ended)


def test_beam_length_normalisation_prefers_longer_answers(setup, tok, special):
    lm, parts, words = setup
    model = Biased(lm, special.end, 6.0)  # [END] is likelier than any one content token
    proc = _proc(tok, special, words, no_repeat_ngram=3, min_new_tokens=0)
    raw = _run(model, parts, special, proc, 10, beams=4, alpha=0.0)
    norm = _run(model, parts, special, proc, 10, beams=4, alpha=2.0)
    longer = 0
    for part, (s0, e0), (s2, e2) in zip(parts, raw, norm):
        (a, la), (b, lb) = _raw_score(model, part, special, s0, e0), _raw_score(model, part, special, s2, e2)
        assert a >= b - 1e-3 * abs(b)  # alpha 0: the best raw sum
        assert b / lb**2 >= a / la**2 - 1e-3 * abs(a)  # alpha 2: the best score / length**2
        assert lb >= la
        longer += lb > la
    assert longer >= 1  # the normalisation changed at least one answer


def test_trim_to_last_sentence():
    assert textgen.trim_to_sentence("Great strings. They last long and the tone is") == "Great strings."
    assert textgen.trim_to_sentence("Works well! Sounds great? I think") == "Works well! Sounds great?"
    assert textgen.trim_to_sentence("Rated 4.5 by most of the") == "Rated 4.5 by most of the"  # no sentence end
    assert textgen.trim_to_sentence("... and then") == "... and then"  # the cut part would hold no word
    assert textgen.finish(" Fine. But the", ended=True) == "Fine. But the"  # [END] stopped it: kept whole


def test_options_resolve_and_refuse():
    assert textgen.resolve(None, 3, None, None, None).method == "beam"
    assert textgen.resolve(None, 1, None, None, None).method == "greedy"
    assert textgen.resolve("plain", None, None, None, None).settings() == {"method": "plain", "beams": 1}
    assert textgen.resolve("greedy", None, 0, 2, None).settings()["length_penalty"] is None
    assert textgen.resolve("greedy", None, 0, 2, None, 0.5).settings()["repetition_penalty"] == 0.5
    assert TextDecoding(repetition_penalty=-1).problem()[0] == "--repetition-penalty"
    assert TextDecoding(adapter_scale=-0.5).problem()[0] == "--text-adapter-scale"
    assert textgen.resolve("greedy", None, 0, 2, None, None, 0.5).settings()["adapter_scale"] == 0.5
    assert TextDecoding("beam", 1).problem()[0] == "--text-beams"
    assert TextDecoding(no_repeat_ngram=1).problem()[0] == "--no-repeat-ngram"
    assert TextDecoding("sample").problem()[0] == "--text-decoding"
    assert textgen.DEFAULT.problem() is None
