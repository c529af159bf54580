"""GLM-style entity-aware blank infilling (RecSysLLM "Mask Mechanism", "Span Order",
"Positional Encoding"). Pure Python: no torch, no model. See docs/ARCHITECTURE.md.

    python -c "from recsys_cli.training.recipe import MaskArgs; print(MaskArgs())"
    recsys mask-preview --data runs/toys -n 2 --level entity

A document is tokenized once (`tokenize_document`), then `mask_document` cuts spans of whole
units (an entity is one unit, any other token is one unit) and lays out Part A (corrupted
text, one mask token per span) followed by Part B (each span as `[START] tokens`, targets
`tokens [END]`), in chronological order, with 2D (inter, intra) positions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Sequence, get_args

from recsys_cli.data.positions import part_a_inter, part_b_inter, part_b_intra
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.tokenize import TokenizedDoc
from recsys_cli.data.trie import EntityTrie
from recsys_cli.errors import RecsysError

MaskLevel = Literal["entity", "sentence", "document"]
LEVELS: tuple[str, ...] = get_args(MaskLevel)


class MaskSettings(Protocol):
    """What masking reads from its settings: the recipe's `mask` section (training/recipe_sections.MaskArgs,
    which checks their ranges) has these fields. Named here so that data/ never imports training/."""

    entity_ratio: float  # share of an entity-level document's units masked
    poisson_lambda: float  # span lengths (in units) ~ Poisson(lambda), at least 1
    sentence_ratio: float  # share of a sentence-level document's sentences masked
    doc_min: float  # a document-level span covers doc_min..doc_max of the document
    doc_max: float
    level_weights: dict[MaskLevel, float]


IGNORE = -100  # label on Part A tokens


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
    level: str  # entity | sentence | document | prompt | rerank
    # rerank prompts (training/rerank.py): position -> the tokens the softmax is restricted to
    allowed: dict[int, list[int]] | None = None
    # listwise pointer head (modeling/pointer.py): position -> the Part A span of each allowed option
    pointer: dict[int, list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)

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


def entity_spans_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskSettings) -> list[tuple[int, int]]:
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


def sentence_spans_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskSettings) -> list[tuple[int, int]]:
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


def document_span_to_mask(doc: TokenizedDoc, rng: random.Random, cfg: MaskSettings) -> list[tuple[int, int]]:
    """One span at the end covering doc_min..doc_max of the tokens. It starts at the sentence or
    entity start nearest the drawn length when one gives a length in that range (ties: the longer
    span), else on a unit boundary. A prompt's answer, also behind `[gM]`, opens a sentence or an
    item; spans opening mid-clause taught `[gM] [START]` to go on with " of the", " in a" (issue 29)."""
    n = len(doc.ids)
    if n == 0:
        return []
    frac = rng.uniform(cfg.doc_min, cfg.doc_max)
    start = n - max(1, math.ceil(frac * n))
    lo, hi = math.ceil(cfg.doc_min * n), math.floor(cfg.doc_max * n)  # allowed span lengths
    opens = [s for s, _ in [*doc.sentence_spans, *doc.entity_spans] if lo <= n - s <= hi]
    if opens:
        return [(min(opens, key=lambda s: (abs(s - start), s)), n)]
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
    ids: Sequence[int],
    entity_spans: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    mask_id: int,
    special: SpecialIds,
    level: str,
    trie: EntityTrie | None,
) -> Example:
    """Lay out Part A + Part B for `spans` (sorted, disjoint, never splitting an entity).
    Part A intra ids come from the marked entities; Part B's from `data.intra.part_b_intra`
    over the entity trie (None: an empty pool), exactly as decoding assigns them."""
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
    inter = part_a_inter(la)
    intra = a_intra
    for (s, e), m in zip(spans, mask_at):
        seg = ids[s:e]
        input_ids.append(special.start)
        input_ids.extend(seg)
        labels.extend(seg)
        labels.append(special.end)
        inter.extend(part_b_inter(m, e - s))
        intra.extend(part_b_intra(seg, trie))  # [START] = 1, then the one rule of data/positions.py
    return Example(input_ids, labels, inter, intra, la, list(spans), list(entity_spans), level)


def sample_level(rng: random.Random, cfg: MaskSettings) -> str:
    """A masking level drawn with cfg.level_weights (entity / sentence / document)."""
    levels = [lv for lv in LEVELS if cfg.level_weights.get(lv, 0) > 0]
    return rng.choices(levels, weights=[cfg.level_weights[lv] for lv in levels])[0]


_PICKERS = {"entity": entity_spans_to_mask, "sentence": sentence_spans_to_mask, "document": document_span_to_mask}


def mask_document(
    doc: TokenizedDoc, level: str, rng: random.Random, cfg: MaskSettings, special: SpecialIds, trie: EntityTrie | None
) -> Example:
    """Corrupt `doc` at `level` (entity | sentence | document); deterministic given `rng`'s state."""
    if level not in _PICKERS:
        raise RecsysError(f"unknown masking level {level!r}; expected one of {', '.join(LEVELS)}")
    spans = _PICKERS[level](doc, rng, cfg)
    return build_example(doc.ids, doc.entity_spans, spans, special.mask_for(level), special, level, trie)


def prompt_example(source: TokenizedDoc, target: TokenizedDoc, special: SpecialIds, trie: EntityTrie | None) -> Example:
    """A prompted task as the document-level case: Part A = prompt + [gM], Part B = the answer."""
    n = len(source.ids)
    ids = [*source.ids, *target.ids]
    ents = [*source.entity_spans, *((s + n, e + n) for s, e in target.entity_spans)]
    spans = [(n, len(ids))] if target.ids else []
    return build_example(ids, ents, spans, special.g_m, special, "prompt", trie)
