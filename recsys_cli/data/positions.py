"""The paper's 2D positions, both dimensions in one place; training (data/masking.py) and
decoding (inference/decode.py, inference/candidates.py) call these, and modeling/wrapper.py
consumes them (inter -> the base model's position_ids, intra -> the added intra embedding).

    python -c "from recsys_cli.data.trie import EntityTrie; from recsys_cli.data.positions import part_b_intra; \
print(part_b_intra([7, 8, 9], EntityTrie([([7, 8], 'x')])))"

Inter position: a Part A token sits at its index in Part A; every token of a Part B span
(its `[START]` included) sits at the index of the span's mask token in Part A (`part_a_inter`,
`part_b_inter`). Decoding puts the answer at the `[gM]` index, the last one of Part A.

Intra position (the paper's Fig. 2, applied to every family's answers, free text included):
`[START]` gets 1; the span's first token continues from it (2); afterwards a token that
continues the entity in progress (a child of the current node of the entity trie) gets
previous + 1, and any other token restarts at 1 (starting a new walk from the root when it
is the first token of an entity). So one entity of n tokens right after `[START]` gets
1..n+1 (the paper's example) and each later entity restarts at 1.

Training lays out Part B with `part_b_intra` (data/masking.py); decoding assigns the same
ids token by token with `IntraTracker` while beams grow and reorder (inference/decode.py).
Part A intra ids come from the marked entity spans (1..n inside an entity, 0 elsewhere),
in training and inference alike.
"""

from __future__ import annotations

from typing import Sequence

from recsys_cli.data.trie import NONE, ROOT, EntityTrie

_EMPTY: EntityTrie | None = None


def empty_trie() -> EntityTrie:
    """The trie of an empty entity pool: every token after the first restarts at 1."""
    global _EMPTY
    if _EMPTY is None:
        _EMPTY = EntityTrie()
    return _EMPTY


class IntraTracker:
    """Per-row state (trie node, last intra id, still at the first token). `push` assigns the
    intra ids of the next token of every row; `reorder` follows beam reordering."""

    def __init__(self, trie: EntityTrie | None, rows: int):
        self.trie = trie if trie is not None else empty_trie()
        self.node = [ROOT] * rows
        self.intra = [1] * rows  # [START] = 1
        self.first = [True] * rows  # no token after [START] yet

    def __len__(self) -> int:
        return len(self.node)

    def push(self, tokens: Sequence[int]) -> list[int]:
        """Assign intra ids to one new token per row; returns them in row order."""
        step = self.trie.step
        node, intra, first = self.node, self.intra, self.first
        for r, tok in enumerate(tokens):
            cur = node[r]
            child = step(cur, tok)
            if first[r]:
                first[r] = False
                intra[r] += 1
                node[r] = child if child != NONE else ROOT
            elif cur != ROOT and child != NONE:
                intra[r] += 1
                node[r] = child
            else:
                intra[r] = 1
                fresh = step(ROOT, tok)
                node[r] = fresh if fresh != NONE else ROOT
        return list(intra)

    def reorder(self, index: Sequence[int]) -> None:
        """Row r takes the state of row index[r] (beam reordering / expansion)."""
        self.node = [self.node[i] for i in index]
        self.intra = [self.intra[i] for i in index]
        self.first = [self.first[i] for i in index]


def part_b_intra(tokens: Sequence[int], trie: EntityTrie | None) -> list[int]:
    """Intra ids of `[START] tokens...` (the first entry is [START]'s 1)."""
    tracker = IntraTracker(trie, 1)
    out = [1]
    for tok in tokens:
        out.extend(tracker.push([int(tok)]))
    return out


def part_a_inter(part_a_len: int) -> list[int]:
    """Inter positions of Part A: each token at its own index."""
    return list(range(part_a_len))


def part_b_inter(mask_index: int, span_len: int) -> list[int]:
    """Inter positions of one Part B span: `[START]` and its `span_len` tokens all sit at the
    index of the span's mask token in Part A."""
    return [mask_index] * (span_len + 1)


def answer_inter(part_a_len: int) -> int:
    """Inter position of a generated answer: the `[gM]` that ends a prompt's Part A."""
    return part_a_len - 1
