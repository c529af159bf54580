"""Explanation and review text that does not degenerate (issue 29): `recsys infer`'s `text` mode.

    python -m pytest tests/unit/test_textgen.py -q
    recsys infer --data R --checkpoint C --family explanation --text-decoding beam --text-beams 4 --length-penalty 1

Every step's next-token log-probs pass through one `Processor`:
* special tokens other than the end tokens ([END], EOS) are never generated;
* the first token must hold a letter or a digit, so an answer is never empty or punctuation only
  (before issue 29 a 40-step adapter answered ". The m. m. m.m.m.");
* the end tokens are blocked until `min_new_tokens` tokens have been generated;
* n-gram blocking: a token that would repeat an n-gram (n = `no_repeat_ngram`) the hypothesis
  already holds is blocked (0 turns it off);
* a repetition penalty: a token's log-prob loses `repetition_penalty` nats per time the answer
  already holds it (0 turns it off). n-gram blocking alone lets an adapter trained on id-heavy
  data walk through the digits ("B00102030405070B0806..." on MI 2014, whose items are ASINs);
  the penalty makes each further use of a token dearer;
* the adapter scale: text is written with `adapter_scale` times each LoRA delta
  (modeling/checkpoint.set_merged_scale; other answers use the whole adapter). A 40-step
  adapter trained mostly on id answers (sequential, direct, the histories) writes ids where
  text is asked for; a quarter of it keeps the base model's prose and the adapter's domain.
Decoding is greedy, or beam search whose hypotheses are compared by score / length ** alpha
(alpha = `length_penalty`; the summed log-prob over the generated tokens, [END] included; 0
compares raw sums, which favour short answers). Generation stops at [END] / EOS; an answer cut
by --max-new-tokens is trimmed to its last complete sentence when one ends inside it.
`plain` is the decoding before issue 29 (decode.greedy / decode.beam_search, none of the
above), kept for comparison. The defaults were chosen on validation prompts by
bench/text_decoding.py (bench/results/text-decoding.json).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from recsys_cli.inference import decode

METHODS = ("greedy", "beam", "plain")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_WORD = re.compile(r"[^\W_]")  # a letter or a digit, any script


@dataclass(frozen=True)
class TextDecoding:
    """The defaults: bench/text_decoding.py's choice on MI 2014 and Gift Cards 2018 validation
    prompts (bench/results/text-decoding.json): greedy with bigram blocking, a 2-nat repetition
    penalty and a quarter of the adapter led ROUGE-L; beam search and alpha did not help at 40
    CPU steps. `plain` uses none of them (the whole adapter, nothing blocked)."""

    method: str = "greedy"
    beams: int = 4  # used by `beam` (and `plain`, where 1 is greedy)
    no_repeat_ngram: int = 2
    min_new_tokens: int = 4
    length_penalty: float = 1.0
    repetition_penalty: float = 2.0  # nats off a token's log-prob per earlier use in the answer
    adapter_scale: float = 0.25  # each LoRA delta times this while text is written (modeling/checkpoint)

    def settings(self) -> dict[str, Any]:
        """What the predictions' provenance records (only what changes an answer)."""
        if self.method == "plain":
            return {"method": "plain", "beams": self.beams}
        return asdict(self) if self.method == "beam" else {**asdict(self), "beams": 1, "length_penalty": None}

    def problem(self) -> tuple[str, str] | None:
        """(option, what was expected) for the first invalid setting, else None."""
        if self.method not in METHODS:
            return "--text-decoding", f"expected one of {', '.join(METHODS)}, got {self.method!r}"
        if self.beams < 1:
            return "--text-beams", f"expected >= 1, got {self.beams}"
        if self.method == "beam" and self.beams < 2:
            return "--text-beams", "--text-decoding beam needs >= 2 beams (1 is greedy: --text-decoding greedy)"
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1:
            return "--no-repeat-ngram", f"expected 0 (off) or >= 2, got {self.no_repeat_ngram}"
        if self.min_new_tokens < 0:
            return "--min-new-tokens", f"expected >= 0, got {self.min_new_tokens}"
        if not self.repetition_penalty >= 0:
            return "--repetition-penalty", f"expected >= 0 nats, got {self.repetition_penalty}"
        if not self.adapter_scale >= 0:
            return "--text-adapter-scale", f"expected >= 0, got {self.adapter_scale}"
        return None


DEFAULT = TextDecoding()


def resolve(
    method: str | None,
    beams: int | None,
    no_repeat_ngram: int | None,
    min_new_tokens: int | None,
    length_penalty: float | None,
    repetition_penalty: float | None = None,
    adapter_scale: float | None = None,
) -> TextDecoding:
    """The `recsys infer` options -> settings; None takes the default. `--text-beams N` (N > 1)
    alone means beam search, `--text-beams 1` alone greedy (the option's meaning before issue 29)."""
    if method is None:
        method = DEFAULT.method if beams is None else ("beam" if beams > 1 else "greedy")
    if beams is None:
        beams = DEFAULT.beams if method == "beam" else 1
    return TextDecoding(
        method,
        beams,
        DEFAULT.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram,
        DEFAULT.min_new_tokens if min_new_tokens is None else min_new_tokens,
        DEFAULT.length_penalty if length_penalty is None else length_penalty,
        DEFAULT.repetition_penalty if repetition_penalty is None else repetition_penalty,
        DEFAULT.adapter_scale if adapter_scale is None else adapter_scale,
    )


# --- text ---------------------------------------------------------------------------------
def has_word(text: str) -> bool:
    return _WORD.search(text) is not None


def trim_to_sentence(text: str) -> str:
    """Text cut by the length limit, up to its last complete sentence when one ends inside it
    (and holds a word); the text itself otherwise."""
    text = text.strip()
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if not ends or ends[-1] == len(text):
        return text
    head = text[: ends[-1]].strip()
    return head if has_word(head) else text


def finish(text: str, ended: bool) -> str:
    return text.strip() if ended else trim_to_sentence(text)


# --- the logits processor -----------------------------------------------------------------
def word_tokens(tokenizer) -> Any:
    """[V] bool: the tokens whose text holds a letter or a digit (special tokens never)."""
    import torch

    vocab = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)])
    mask = torch.tensor([has_word(t) for t in texts], dtype=torch.bool)
    mask[list(tokenizer.all_special_ids)] = False
    return mask


def repeat_counts(seqs: Sequence[Sequence[int]]) -> tuple[list[int], list[int], list[int]]:
    """(rows, tokens, counts): how often each hypothesis already holds each of its tokens."""
    from collections import Counter

    rows, toks, counts = [], [], []
    for r, seq in enumerate(seqs):
        for tok, n in Counter(seq).items():
            rows.append(r)
            toks.append(tok)
            counts.append(n)
    return rows, toks, counts


def ngram_bans(seq: Sequence[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram `seq` already holds."""
    if n < 2 or len(seq) < n:
        return []
    prefix = tuple(seq[len(seq) - n + 1 :])
    return [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i : i + n - 1]) == prefix]


class Processor:
    """Next-token log-probs of R hypotheses -> the same with every blocked token at -inf."""

    def __init__(self, cfg: TextDecoding, end_ids: Sequence[int], banned: Sequence[int], words):
        self.cfg, self.ends = cfg, sorted(set(int(e) for e in end_ids))
        self.banned = sorted(set(int(b) for b in banned) - set(self.ends))
        self.not_word = ~words  # [V] bool

    def __call__(self, logp, seqs: Sequence[Sequence[int]], t: int):
        import torch

        neg = float("-inf")
        if self.banned:
            logp[:, self.banned] = neg
        if t == 0:
            logp[:, self.not_word.to(logp.device)] = neg
        if t < self.cfg.min_new_tokens:
            logp[:, self.ends] = neg
        if self.cfg.repetition_penalty > 0:
            self._penalise(logp, seqs)
        rows, cols = [], []
        for r, seq in enumerate(seqs):
            bans = ngram_bans(seq, self.cfg.no_repeat_ngram)
            rows += [r] * len(bans)
            cols += bans
        if rows:
            logp[torch.tensor(rows, device=logp.device), torch.tensor(cols, device=logp.device)] = neg
        return logp

    def _penalise(self, logp, seqs: Sequence[Sequence[int]]) -> None:
        import torch

        rows, toks, counts = repeat_counts(seqs)
        if rows:
            at = (torch.tensor(rows, device=logp.device), torch.tensor(toks, device=logp.device))
            logp[at] -= self.cfg.repetition_penalty * torch.tensor(counts, dtype=logp.dtype, device=logp.device)


# --- decoding -----------------------------------------------------------------------------
def greedy(model, state: decode.State, proc: Processor, max_new: int) -> list[tuple[list[int], bool]]:
    """Per row: (tokens without the end token, whether an end token stopped it)."""
    import torch

    rows = state.logits.shape[0]
    seqs: list[list[int]] = [[] for _ in range(rows)]
    ended = [False] * rows
    ends = set(proc.ends)
    for t in range(max_new):
        toks = proc(torch.log_softmax(state.logits.float(), -1), seqs, t).argmax(-1)  # [R]
        for r, tok in enumerate(toks.tolist()):
            if ended[r]:
                continue
            if tok in ends:
                ended[r] = True
            else:
                seqs[r].append(tok)
        if all(ended) or t == max_new - 1:
            break
        decode.step(model, state, toks)
    return list(zip(seqs, ended))


def _norm(score: float, length: int, alpha: float) -> float:
    return score / max(length, 1) ** alpha


def beam(
    model, state: decode.State, proc: Processor, beams: int, alpha: float, max_new: int
) -> list[tuple[list[int], bool]]:
    """Beam search; per row the hypothesis with the best score / length ** alpha: (tokens
    without the end token, whether it ended). A row stops once it holds `beams` finished
    hypotheses and none of its running ones can still beat the best: a running score s only
    falls, so its best is s / max_new ** alpha (alpha > 0) or s (alpha 0). Finished rows leave
    the batch."""
    import torch

    rows, vocab = state.logits.shape
    neg = float("-inf")
    state.select([r for r in range(rows) for _ in range(beams)])
    active = list(range(rows))
    scores = [0.0 if k == 0 else neg for _ in active for k in range(beams)]
    seqs: list[list[int]] = [[] for _ in range(rows * beams)]
    done: list[list[tuple[float, list[int], bool]]] = [[] for _ in range(rows)]
    ends = set(proc.ends)
    for t in range(max_new):
        last = t == max_new - 1
        logp = proc(torch.log_softmax(state.logits.float(), -1), seqs, t).cpu()  # [A*K, V]
        cand = (torch.tensor(scores)[:, None] + logp).view(len(active), beams * vocab)  # [A, K*V]
        top_s, top_i = cand.topk(2 * beams, dim=1)  # [A, 2K]
        keep, src, toks, new_scores, new_seqs = [], [], [], [], []
        for p, b in enumerate(active):
            live = []
            for sc, i in zip(top_s[p].tolist(), top_i[p].tolist()):
                if sc == neg or len(live) == beams:
                    break
                parent, tok = p * beams + i // vocab, i % vocab
                if tok in ends:
                    done[b].append((_norm(sc, len(seqs[parent]) + 1, alpha), seqs[parent], True))
                elif last:  # cut by the length limit
                    done[b].append((_norm(sc, len(seqs[parent]) + 1, alpha), seqs[parent] + [tok], False))
                    live.append(None)
                else:
                    live.append((parent, tok, sc))
            if last or not live:
                continue
            best_live = max(_norm(sc, max_new if alpha > 0 else 1, alpha) for _, _, sc in live)
            if len(done[b]) >= beams and max(h[0] for h in done[b]) >= best_live:
                continue
            live += [(live[0][0], proc.ends[0], neg)] * (beams - len(live))  # dead filler beams
            keep.append(b)
            src += [h[0] for h in live]
            toks += [h[1] for h in live]
            new_scores += [h[2] for h in live]
            new_seqs += [seqs[h[0]] + [h[1]] for h in live]
        if not keep or last:
            break
        active, scores, seqs = keep, new_scores, new_seqs
        state.select(src)
        decode.step(model, state, torch.tensor(toks, dtype=torch.long, device=state.key_ok.device))
    best = [max(d, key=lambda h: h[0]) if d else (0.0, [], False) for d in done]
    return [(tokens, ended) for _, tokens, ended in best]


def generate_texts(engine, rows: list[dict]) -> list[str]:
    """The answers of text prompts (engine: inference.engine.Engine; its opts.text_decoding)."""
    cfg: TextDecoding = engine.opts.text_decoding
    max_new = engine.opts.max_new_tokens
    if cfg.method == "plain":
        return engine._generate(rows, cfg.beams, max_new)
    if getattr(engine, "word_mask", None) is None:
        engine.word_mask = word_tokens(engine.tok)
    proc = Processor(cfg, engine.end_ids, engine.banned, engine.word_mask)
    state = engine._state(rows, engine.entity_trie)
    if cfg.method == "beam":
        outs = beam(engine.model, state, proc, cfg.beams, cfg.length_penalty, max_new)
    else:
        outs = greedy(engine.model, state, proc, max_new)
    return [finish(engine.tok.decode(toks, skip_special_tokens=True), ended) for toks, ended in outs]
