"""GLM-style entity-aware blank infilling (RecSysLLM "Mask Mechanism", "Span Order",
"Positional Encoding"). Pure Python: no torch, no model. See docs/ARCHITECTURE.md.

    python -c "import random; from recsys_cli.data.masking import MaskConfig; print(MaskConfig())"
    recsys mask-preview --data runs/toys -n 2 --level entity

A document is tokenized once (`tokenize_document`), then `mask_document` cuts spans of whole
units (an entity is one unit, any other token is one unit) and lays out Part A (corrupted
text, one mask token per span) followed by Part B (each span as `[START] tokens`, targets
`tokens [END]`), in chronological order, with 2D (inter, intra) positions.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from recsys_cli.errors import RecsysError

SPECIAL_TOKENS = ("[M]", "[sM]", "[gM]", "[START]", "[END]")
LEVELS = ("entity", "sentence", "document")
IGNORE = -100  # label on Part A tokens
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class TokenizedDoc:
    ids: list[int]  # tokens of the text (no BOS/EOS)
    entity_spans: list[tuple[int, int]]  # token [start, end) of every entity, sorted, disjoint
    sentence_spans: list[tuple[int, int]]  # token [start, end) of every sentence, covering ids


@dataclass
class MaskConfig:
    entity_ratio: float = 0.15
    poisson_lambda: float = 3.0
    sentence_ratio: float = 0.15
    doc_min: float = 0.5
    doc_max: float = 1.0
    level_weights: dict[str, float] = field(default_factory=lambda: {"entity": 0.6, "sentence": 0.2, "document": 0.2})

    def __post_init__(self) -> None:
        if not 0.0 < self.entity_ratio <= 1.0 or not 0.0 < self.sentence_ratio <= 1.0:
            raise RecsysError("mask ratios must be in (0, 1]")
        if not 0.0 < self.doc_min <= self.doc_max <= 1.0:
            raise RecsysError("document span fraction needs 0 < doc_min <= doc_max <= 1")
        if self.poisson_lambda <= 0:
            raise RecsysError("poisson_lambda must be > 0")
        bad = [k for k in self.level_weights if k not in LEVELS]
        if bad or sum(self.level_weights.values()) <= 0:
            raise RecsysError(f"level_weights: expected positive weights for {LEVELS}, got {self.level_weights}")


@dataclass
class Example:
    """One training/preview sequence, Part A then Part B (all lists have the same length)."""

    input_ids: list[int]
    labels: list[int]  # -100 on Part A; on Part B the next token ([END] last in each span)
    inter: list[int]  # inter-position ids (-> model position_ids)
    intra: list[int]  # intra-position ids (-> intra embedding table)
    part_a_len: int  # [0, part_a_len) bidirectional; the rest causal and sees all of Part A
    spans: list[tuple[int, int]]  # masked spans, token offsets in the ORIGINAL sequence
    entity_spans: list[tuple[int, int]]  # entity token offsets in the ORIGINAL sequence
    level: str  # entity | sentence | document | prompt

    def __len__(self) -> int:
        return len(self.input_ids)

    def attention_layout(self) -> tuple[int, int]:
        """(part_a_len, total_len): rows/cols < part_a_len attend bidirectionally among
        themselves; row i >= part_a_len attends to [0, part_a_len) and to [part_a_len, i]."""
        return self.part_a_len, len(self.input_ids)

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "labels": self.labels,
            "inter": self.inter,
            "intra": self.intra,
            "part_a_len": self.part_a_len,
            "spans": [{"start": s, "end": e} for s, e in self.spans],
            "entity_spans": [{"start": s, "end": e} for s, e in self.entity_spans],
            "level": self.level,
        }


@dataclass(frozen=True)
class SpecialIds:
    m: int
    s_m: int
    g_m: int
    start: int
    end: int

    @classmethod
    def from_tokenizer(cls, tok: Any) -> "SpecialIds":
        """Ids of the 5 special tokens; they must have been added (see `add_special_tokens`)."""
        ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
        back = tok.convert_ids_to_tokens(ids)
        missing = [t for t, i, b in zip(SPECIAL_TOKENS, ids, back) if i is None or b != t]
        if missing:
            raise RecsysError(f"tokenizer lacks the special tokens {missing}; call masking.add_special_tokens(tokenizer)")
        return cls(*ids)

    def mask_for(self, level: str) -> int:
        return {"entity": self.m, "sentence": self.s_m, "document": self.g_m, "prompt": self.g_m}[level]

    def as_dict(self) -> dict[str, int]:
        return dict(zip(SPECIAL_TOKENS, (self.m, self.s_m, self.g_m, self.start, self.end)))


def add_special_tokens(tokenizer: Any) -> SpecialIds:
    """Add the 5 special tokens (idempotent) the one way every stage does it; return their ids."""
    have = set(tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))))
    if not set(SPECIAL_TOKENS) <= have:
        tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return SpecialIds.from_tokenizer(tokenizer)


# --- tokenization -------------------------------------------------------------------------


def _field(ent: Any, key: str) -> Any:
    return ent[key] if type(ent) is dict else getattr(ent, key)


def _pieces(text: str, entities: Iterable[Any]) -> tuple[list[tuple[int, int]], list[int]]:
    """Cut `text` at entity boundaries: [(char_start, char_end)] covering the text, and the
    piece index of each kept entity (sorted; an entity overlapping an earlier one is dropped).
    An entity piece takes the space before it, so it tokenizes as " " + entity."""
    pieces: list[tuple[int, int]] = []
    ent_piece: list[int] = []
    cursor = 0
    bounds = sorted((int(_field(e, "start")), int(_field(e, "end"))) for e in entities)
    for cs, ce in bounds:
        if cs < cursor or ce <= cs or ce > len(text):
            continue
        if cs > cursor and text[cs - 1] == " ":
            cs -= 1
        if cs > cursor:
            pieces.append((cursor, cs))
        ent_piece.append(len(pieces))
        pieces.append((cs, ce))
        cursor = ce
    if cursor < len(text) or not pieces:
        pieces.append((cursor, len(text)))
    return pieces, ent_piece


def _sentence_token_spans(text: str, offsets: Sequence[tuple[int, int]], entity_spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sentences as token spans covering [0, n); a boundary inside an entity moves past it."""
    n = len(offsets)
    if n == 0:
        return []
    cuts: list[int] = []
    starts: list[int] = []
    for m in _SENTENCE_END.finditer(text):
        if not starts:
            starts = [a for a, _ in offsets]
        t = bisect.bisect_left(starts, m.end())
        # the next sentence begins with the token holding its first character (with its space)
        while t > 0 and offsets[t - 1][1] > m.start() and offsets[t - 1][0] >= m.start():
            t -= 1
        k = bisect.bisect_right(entity_spans, (t, n + 1)) - 1  # last entity starting at or before t
        if k >= 0 and entity_spans[k][0] < t < entity_spans[k][1]:
            t = entity_spans[k][1]
        if 0 < t < n and (not cuts or t > cuts[-1]):
            cuts.append(t)
    if not cuts:
        return [(0, n)]
    bounds = [0, *cuts, n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def encode_batch(tokenizer: Any, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """ids (no BOS/EOS) and char offsets of each text, through the Rust tokenizer when there is
    one; `tokenizer` is a Hugging Face fast tokenizer or a `tokenizers.Tokenizer`."""
    if not texts:
        return [], []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch"):
        backend = tokenizer
    if backend is not None:
        encs = backend.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encs], [e.offsets for e in encs]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return enc["input_ids"], [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]


def _entity_token_spans(offsets: list[tuple[int, int]], pieces: list[tuple[int, int]], ent_piece: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Token spans of the entity pieces, and the char positions of entity edges that a token
    straddles (a BPE merge across the edge, like "),"); the spans are valid only when the
    second list is empty."""
    spans, bad = [], []
    n = len(offsets)
    for p in ent_piece:
        cs, ce = pieces[p]
        ts = bisect.bisect_left(offsets, (cs, -1))  # first token starting at or after cs
        te = bisect.bisect_left(offsets, (ce, -1), ts)
        if ts >= n or offsets[ts][0] != cs or (ts > 0 and offsets[ts - 1][1] > cs):
            bad.append(cs)
        if te == 0 or offsets[te - 1][1] != ce or (te < n and offsets[te][0] < ce):
            bad.append(ce)
        spans.append((ts, te))
    return spans, bad


def _encode_cut(tokenizer: Any, texts: list[str], cuts: list[list[int]]) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
    """Tokenize each text as separate segments split at its char positions `cuts`:
    (ids, offsets, token index where each segment starts + the total) per text."""
    segs = [(0, *c, len(t)) for t, c in zip(texts, cuts)]
    flat = [t[b[j] : b[j + 1]] for t, b in zip(texts, segs) for j in range(len(b) - 1)]
    all_ids, all_offsets = encode_batch(tokenizer, flat)
    out, k = [], 0
    for b in segs:
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        bounds = []
        for j in range(len(b) - 1):
            bounds.append(len(ids))
            ids.extend(all_ids[k])
            offsets.extend((b[j] + x, b[j] + y) for x, y in all_offsets[k])
            k += 1
        out.append((ids, offsets, [*bounds, len(ids)]))
    return out


def tokenize_documents(texts: Sequence[str], entities: Sequence[Iterable[Any] | None], tokenizer: Any) -> list[TokenizedDoc]:
    """Tokenize texts (no BOS/EOS) so that every entity's tokens are exactly its in-context
    ids (tokenizer(" " + entity) after a space, as stored in entities.parquet). A text is
    tokenized whole; where a BPE merge straddles an entity edge ("Toy (FFP)," gives "),") it
    is tokenized again cut at those edges (")" ","), and if that still fails, cut at every
    entity edge. One fast-tokenizer call per round for all texts."""
    texts = list(texts)
    cut = [_pieces(t, e or []) for t, e in zip(texts, entities)]
    docs: list[TokenizedDoc] = [None] * len(texts)  # type: ignore[list-item]
    retry: list[tuple[int, list[int]]] = []
    whole_ids, whole_offsets = encode_batch(tokenizer, texts)
    for i, (ids, offsets) in enumerate(zip(whole_ids, whole_offsets)):
        spans, bad = _entity_token_spans(offsets, *cut[i])
        if bad:
            retry.append((i, sorted(set(bad) - {0, len(texts[i])})))
        else:
            docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans))
    last: list[int] = []
    for (i, _), (ids, offsets, _b) in zip(retry, _encode_cut(tokenizer, [texts[i] for i, _ in retry], [c for _, c in retry])):
        spans, bad = _entity_token_spans(offsets, *cut[i])
        if bad:
            last.append(i)
        else:
            docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans))
    # still straddling: one segment per piece, entity spans are exact segment boundaries
    full = _encode_cut(tokenizer, [texts[i] for i in last], [[a for a, _ in cut[i][0][1:]] for i in last])
    for i, (ids, offsets, bounds) in zip(last, full):
        ent_piece = cut[i][1]
        spans = [(bounds[p], bounds[p + 1]) for p in ent_piece if bounds[p + 1] > bounds[p]]
        docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans))
    return docs


def tokenize_document(text: str, entities: Iterable[Any] | None, tokenizer: Any) -> TokenizedDoc:
    """Tokenize `text` (no BOS/EOS) and map entity char spans [{start, end, ...}] to token spans."""
    return tokenize_documents([text], [entities], tokenizer)[0]


def tokenize_target(target: str, entities: Iterable[Any] | None, tokenizer: Any) -> TokenizedDoc:
    """A prompt answer, tokenized as " " + target (entities shift by one char), so its entities
    carry their in-context ids, the ids stored in entities.parquet."""
    shifted = [
        {"start": int(_field(e, "start")) + 1, "end": int(_field(e, "end")) + 1, "kind": _field(e, "kind"), "entity_id": _field(e, "entity_id")}
        for e in (entities or [])
    ]
    return tokenize_document(" " + target, shifted, tokenizer)


# --- span selection -----------------------------------------------------------------------


def units_of(doc: TokenizedDoc) -> list[tuple[int, int]]:
    """Token [start, end) of each unit in order: an entity is one unit, any other token one unit."""
    units: list[tuple[int, int]] = []
    t = 0
    for s, e in doc.entity_spans:
        units.extend((i, i + 1) for i in range(t, s))
        units.append((s, e))
        t = e
    units.extend((i, i + 1) for i in range(t, len(doc.ids)))
    return units


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method (lam is small); at least 1 unit."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return max(1, k)
        k += 1


def entity_spans_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskConfig) -> list[tuple[int, int]]:
    """Spans of whole units, length ~ Poisson(lambda) units, until >= entity_ratio of tokens."""
    units = units_of(doc)
    nu = len(units)
    if nu == 0:
        return []
    target = max(1, round(cfg.entity_ratio * len(doc.ids)))
    used = bytearray(nu + 2)  # used[u + 1]: unit u masked (with a sentinel on each side)
    chosen: list[tuple[int, int]] = []  # unit ranges
    masked = 0
    misses = 0
    while masked < target and misses < 32:
        length = min(_poisson(rng, cfg.poisson_lambda), nu)
        start = rng.randrange(nu - length + 1)
        # no overlap, and not touching another span (two adjacent spans would be one)
        if any(used[start : start + length + 2]):
            misses += 1
            continue
        for u in range(start, start + length):
            used[u + 1] = 1
        chosen.append((start, start + length))
        masked += units[start + length - 1][1] - units[start][0]
    chosen.sort()
    return [(units[a][0], units[b - 1][1]) for a, b in chosen]


def sentence_spans_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskConfig) -> list[tuple[int, int]]:
    """Whole sentences (each its own span), in random order until >= sentence_ratio of tokens."""
    sents = list(doc.sentence_spans)
    if not sents:
        return []
    target = max(1, round(cfg.sentence_ratio * len(doc.ids)))
    order = list(range(len(sents)))
    rng.shuffle(order)
    picked, masked = [], 0
    for i in order:
        if masked >= target:
            break
        picked.append(i)
        masked += sents[i][1] - sents[i][0]
    return [sents[i] for i in sorted(picked)]


def document_span_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskConfig) -> list[tuple[int, int]]:
    """One span at the end covering doc_min..doc_max of the tokens, starting on a unit boundary."""
    n = len(doc.ids)
    if n == 0:
        return []
    frac = rng.uniform(cfg.doc_min, cfg.doc_max)
    start = n - max(1, math.ceil(frac * n))
    for s, e in doc.entity_spans:  # never start inside an entity: move to its start
        if s < start < e:
            start = s
            break
    return [(max(0, start), n)]


# --- layout -------------------------------------------------------------------------------


def _entity_positions(n: int, entity_spans: Sequence[tuple[int, int]]) -> list[int]:
    """pos[i] = 1..len within the entity holding token i, else 0."""
    pos = [0] * n
    for s, e in entity_spans:
        pos[s:e] = range(1, e - s + 1)
    return pos


def build_example(
    ids: Sequence[int], entity_spans: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], mask_id: int, special: SpecialIds, level: str
) -> Example:
    """Lay out Part A + Part B for `spans` (sorted, disjoint, never splitting an entity)."""
    n = len(ids)
    epos = _entity_positions(n, entity_spans)
    a_ids: list[int] = []
    a_intra: list[int] = []
    mask_at: list[int] = []
    t = 0
    for s, e in spans:
        a_ids.extend(ids[t:s])
        a_intra.extend(epos[t:s])
        mask_at.append(len(a_ids))
        a_ids.append(mask_id)
        a_intra.append(0)
        t = e
    a_ids.extend(ids[t:n])
    a_intra.extend(epos[t:n])
    la = len(a_ids)
    input_ids = a_ids
    labels = [IGNORE] * la
    inter = list(range(la))
    intra = a_intra
    for (s, e), m in zip(spans, mask_at):
        seg = ids[s:e]
        input_ids.append(special.start)
        input_ids.extend(seg)
        labels.extend(seg)
        labels.append(special.end)
        inter.extend([m] * (e - s + 1))
        # [START] = 1; the first unit continues from [START]; later units restart at 1
        first_end = s + 1
        while first_end < e and epos[first_end] > 1:  # the rest of an entity starting at s
            first_end += 1
        intra.append(1)
        intra.extend((p or 1) + 1 for p in epos[s:first_end])
        intra.extend(p or 1 for p in epos[first_end:e])
    return Example(input_ids, labels, inter, intra, la, list(spans), list(entity_spans), level)


def sample_level(rng: random.Random, cfg: MaskConfig) -> str:
    """A masking level drawn with cfg.level_weights (entity / sentence / document)."""
    levels = [lv for lv in LEVELS if cfg.level_weights.get(lv, 0) > 0]
    return rng.choices(levels, weights=[cfg.level_weights[lv] for lv in levels])[0]


_PICKERS = {"entity": entity_spans_to_mask, "sentence": sentence_spans_to_mask, "document": document_span_to_mask}


def mask_document(doc: TokenizedDoc, level: str, rng: random.Random, cfg: MaskConfig, special: SpecialIds) -> Example:
    """Corrupt `doc` at `level` (entity | sentence | document); deterministic given `rng`'s state."""
    if level not in _PICKERS:
        raise RecsysError(f"unknown masking level {level!r}; expected one of {', '.join(LEVELS)}")
    spans = _PICKERS[level](doc, rng, cfg)
    return build_example(doc.ids, doc.entity_spans, spans, special.mask_for(level), special, level)


def prompt_example(source: TokenizedDoc, target: TokenizedDoc, special: SpecialIds) -> Example:
    """A prompted task as the document-level case: Part A = prompt + [gM], Part B = the answer."""
    n = len(source.ids)
    ids = [*source.ids, *target.ids]
    ents = [*source.entity_spans, *((s + n, e + n) for s, e in target.entity_spans)]
    spans = [(n, len(ids))] if target.ids else []
    return build_example(ids, ents, spans, special.g_m, special, "prompt")
