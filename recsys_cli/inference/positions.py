"""The paper's dynamic position mechanism (Fig. 2): intra-position ids assigned while
generating, one trie lookup per token, for a whole batch of rows (beams included).

Rule (docs/ARCHITECTURE.md, "Intra-position rule"): `[START]` gets 1; the span's first unit
continues from it (2, 3, ...); afterwards a token that continues the entity in progress
(a child of the current trie node) gets previous + 1, any other token restarts at 1 (and
starts a new entity when it is a first token of one).

    python -c "from recsys_cli.inference.trie import TokenTrie; from recsys_cli.inference.positions import IntraTracker; \
t = IntraTracker(TokenTrie([([7, 8], 'x')]), 1); print(t.push([7]), t.push([8]), t.push([9]))"
"""

from __future__ import annotations

from typing import Sequence

from recsys_cli.inference.trie import NONE, ROOT, TokenTrie


class IntraTracker:
    """Per-row state (trie node, last intra id, still in the first unit). `push` assigns the
    intra ids of the next tokens; `reorder` follows beam reordering."""

    def __init__(self, trie: TokenTrie, rows: int):
        self.trie = trie
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

    def expand(self, repeats: int) -> None:
        self.reorder([r for r in range(len(self.node)) for _ in range(repeats)])


def dynamic_intra(tokens: Sequence[int], trie: TokenTrie) -> list[int]:
    """Intra ids of `[START] tokens...` as generation assigns them (first entry is [START]'s 1)."""
    tracker = IntraTracker(trie, 1)
    out = [1]
    for tok in tokens:
        out.extend(tracker.push([int(tok)]))
    return out
