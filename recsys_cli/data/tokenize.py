"""Tokenizing documents so that every entity keeps its in-context token ids.

    python -c "from recsys_cli.data.tokenize import tokenize_document; help(tokenize_document)"

An entity inside running text almost always follows a space, and a BPE tokenizer gives
" Gloom" and "Gloom" different ids, so every entity span is tokenized as " " + entity (the
ids `build-entities` stores). Where a BPE merge straddles an entity edge ("Toy (FFP)," gives
"),") the text is tokenized again cut at those edges. Sentences are token spans too (the
sentence-level mask needs them); a sentence boundary never falls inside an entity.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class TokenizedDoc:
    ids: list[int]  # tokens of the text (no BOS/EOS)
    entity_spans: list[tuple[int, int]]  # token [start, end) of every entity, sorted, disjoint
    sentence_spans: list[tuple[int, int]]  # token [start, end) of every sentence, covering ids
    # entity_id ("item:<id>", ...) of each entity span, same order; empty for docs built by hand
    entity_ids: list[str] = field(default_factory=list)

    def slice(self, start: int, end: int) -> "TokenizedDoc":
        """Tokens [start, end); entities cut by the window are dropped (their ids with them),
        sentences clipped."""
        keep = [k for k, (s, e) in enumerate(self.entity_spans) if s >= start and e <= end]
        ents = [(self.entity_spans[k][0] - start, self.entity_spans[k][1] - start) for k in keep]
        ids = [self.entity_ids[k] for k in keep] if len(self.entity_ids) == len(self.entity_spans) else []
        sents = [(max(s, start) - start, min(e, end) - start) for s, e in self.sentence_spans if e > start and s < end]
        return TokenizedDoc(self.ids[start:end], ents, sents, ids)


def _field(ent: Any, key: str) -> Any:
    return ent[key] if type(ent) is dict else getattr(ent, key)


def _entity_id(ent: Any) -> str:
    try:
        return str(_field(ent, "entity_id") or "")
    except (KeyError, AttributeError):
        return ""


def _pieces(text: str, entities: Iterable[Any]) -> tuple[list[tuple[int, int]], list[int], list[str]]:
    """Cut `text` at entity boundaries: [(char_start, char_end)] covering the text, the piece
    index of each kept entity (sorted; an entity overlapping an earlier one is dropped) and
    its entity_id. An entity piece takes the space before it, so it tokenizes as " " + entity."""
    pieces: list[tuple[int, int]] = []
    ent_piece: list[int] = []
    ent_ids: list[str] = []
    cursor = 0
    bounds = sorted((int(_field(e, "start")), int(_field(e, "end")), _entity_id(e)) for e in entities)
    for cs, ce, eid in bounds:
        if cs < cursor or ce <= cs or ce > len(text):
            continue
        if cs > cursor and text[cs - 1] == " ":
            cs -= 1
        if cs > cursor:
            pieces.append((cursor, cs))
        ent_piece.append(len(pieces))
        ent_ids.append(eid)
        pieces.append((cs, ce))
        cursor = ce
    if cursor < len(text) or not pieces:
        pieces.append((cursor, len(text)))
    return pieces, ent_piece, ent_ids


def _sentence_token_spans(
    text: str, offsets: Sequence[tuple[int, int]], entity_spans: list[tuple[int, int]]
) -> list[tuple[int, int]]:
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


def _entity_token_spans(
    offsets: list[tuple[int, int]], pieces: list[tuple[int, int]], ent_piece: list[int]
) -> tuple[list[tuple[int, int]], list[int]]:
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


def _encode_cut(
    tokenizer: Any, texts: list[str], cuts: list[list[int]]
) -> list[tuple[list[int], list[tuple[int, int]], list[int]]]:
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


def tokenize_documents(
    texts: Sequence[str], entities: Sequence[Iterable[Any] | None], tokenizer: Any
) -> list[TokenizedDoc]:
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
        spans, bad = _entity_token_spans(offsets, *cut[i][:2])
        if bad:
            retry.append((i, sorted(set(bad) - {0, len(texts[i])})))
        else:
            docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans), cut[i][2])
    last: list[int] = []
    for (i, _), (ids, offsets, _b) in zip(
        retry, _encode_cut(tokenizer, [texts[i] for i, _ in retry], [c for _, c in retry])
    ):
        spans, bad = _entity_token_spans(offsets, *cut[i][:2])
        if bad:
            last.append(i)
        else:
            docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans), cut[i][2])
    # still straddling: one segment per piece, entity spans are exact segment boundaries
    full = _encode_cut(tokenizer, [texts[i] for i in last], [[a for a, _ in cut[i][0][1:]] for i in last])
    for i, (ids, offsets, bounds) in zip(last, full):
        ent_piece, ent_ids = cut[i][1], cut[i][2]
        keep = [k for k, p in enumerate(ent_piece) if bounds[p + 1] > bounds[p]]
        spans = [(bounds[ent_piece[k]], bounds[ent_piece[k] + 1]) for k in keep]
        docs[i] = TokenizedDoc(ids, spans, _sentence_token_spans(texts[i], offsets, spans), [ent_ids[k] for k in keep])
    return docs


def tokenize_document(text: str, entities: Iterable[Any] | None, tokenizer: Any) -> TokenizedDoc:
    """Tokenize `text` (no BOS/EOS) and map entity char spans [{start, end, ...}] to token spans."""
    return tokenize_documents([text], [entities], tokenizer)[0]


def tokenize_target(target: str, entities: Iterable[Any] | None, tokenizer: Any) -> TokenizedDoc:
    """A prompt answer, tokenized as " " + target (entities shift by one char), so its entities
    carry their in-context ids, the ids stored in entities.parquet. Where the leading space
    stays a token of its own (SmolLM2 and Llama-3 split digits: " 4" is "Ġ" + "4") and no
    entity starts there, that lone space is dropped: the answer's first token is the answer
    ("4"), the token the rating scorer reads at [START] (inference/rating.py)."""
    shifted = [
        {
            "start": int(_field(e, "start")) + 1,
            "end": int(_field(e, "end")) + 1,
            "kind": _field(e, "kind"),
            "entity_id": _field(e, "entity_id"),
        }
        for e in (entities or [])
    ]
    doc = tokenize_document(" " + target, shifted, tokenizer)
    if len(doc.ids) < 2 or (doc.entity_spans and doc.entity_spans[0][0] == 0) or doc.ids[0] != lone_space_id(tokenizer):
        return doc
    return doc.slice(1, len(doc.ids))


def lone_space_id(tokenizer: Any) -> int | None:
    """The id of " " when the tokenizer makes it one token, else None."""
    ids = encode_batch(tokenizer, [" "])[0][0]
    return ids[0] if len(ids) == 1 else None
