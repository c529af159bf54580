"""Array-backed token trie over entity token sequences, built for decoding.

Nodes are ints (0 = root). `step(node, tok)` is one dict lookup, `children_tensor(node)` is
a precomputed LongTensor of the allowed next tokens, so constrained decoding builds its
logit mask with one scatter per step and never loops over the vocabulary.

    python -c "from recsys_cli.inference.trie import TokenTrie; t = TokenTrie([([5, 6], 'a')]); print(t.step(0, 5))"
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Iterable, Sequence

ROOT = 0
NONE = -1


class TokenTrie:
    """Trie over token id sequences; each terminal node keeps the payloads (e.g. item ids)
    of the sequences ending there, in insertion order and without duplicates."""

    def __init__(self, entries: Iterable[tuple[Sequence[int], Hashable]] = ()):
        self._next: list[dict[int, int]] = [{}]
        self.payloads: list[list[Hashable]] = [[]]
        self.depth: list[int] = [0]
        self._child_cache: dict[int, object] = {}
        self._tails: list[int] | None = None  # see `unique_tail`
        for tokens, payload in entries:
            self.insert(tokens, payload)

    def insert(self, tokens: Sequence[int], payload: Hashable) -> int:
        node = ROOT
        for tok in tokens:
            nxt = self._next[node].get(int(tok))
            if nxt is None:
                nxt = len(self._next)
                self._next[node][int(tok)] = nxt
                self._next.append({})
                self.payloads.append([])
                self.depth.append(self.depth[node] + 1)
            node = nxt
        if node != ROOT and payload not in self.payloads[node]:
            self.payloads[node].append(payload)
        self._child_cache.clear()
        self._tails = None
        return node

    def __len__(self) -> int:
        return len(self._next)

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    def step(self, node: int, tok: int) -> int:
        """The child of `node` reached by `tok`, or NONE (-1)."""
        return self._next[node].get(tok, NONE)

    def walk(self, tokens: Sequence[int]) -> int:
        node = ROOT
        for tok in tokens:
            node = self.step(node, int(tok))
            if node == NONE:
                return NONE
        return node

    def is_terminal(self, node: int) -> bool:
        return bool(self.payloads[node])

    def children(self, node: int) -> list[int]:
        return list(self._next[node])

    def unique_tail(self, node: int) -> tuple[list[int], int] | None:
        """(forced tokens, terminal node) when exactly one terminal node lies at or below
        `node` and it is a leaf: under constrained decoding those tokens are forced, so the
        item is already decided. None when the choice is still open."""
        if self._tails is None:
            self._tails = self._build_tails()
        end = self._tails[node]
        if end == NONE:
            return None
        toks: list[int] = []
        while node != end:
            (tok, node), = self._next[node].items()
            toks.append(tok)
        return toks, end

    def _build_tails(self) -> list[int]:
        """Per node the sole terminal leaf below it, or NONE; one pass from the deepest nodes
        up (a child always has a larger id than its parent)."""
        tails = [NONE] * len(self._next)
        for node in range(len(self._next) - 1, -1, -1):
            kids = self._next[node]
            if not kids:
                tails[node] = node if self.payloads[node] else NONE
            elif len(kids) == 1 and not self.payloads[node]:
                tails[node] = tails[next(iter(kids.values()))]
        return tails

    def children_tensor(self, node: int):
        """LongTensor of the tokens that continue `node` (cached per node)."""
        cached = self._child_cache.get(node)
        if cached is None:
            import torch

            cached = torch.tensor(sorted(self._next[node]), dtype=torch.long)
            self._child_cache[node] = cached
        return cached


def load_entity_trie(data_dir: Path, kinds: Sequence[str] | None = None, vocab_size: int | None = None) -> TokenTrie:
    """Trie over the in-context token ids of entities.parquet (restricted to `kinds`).
    Item entities carry their item ids as payload; other kinds carry their entity id."""
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.errors import InputError

    df = read_artifact(data_dir, schemas.ENTITIES, columns=["entity_id", "kind", "token_ids", "item_ids"])
    if kinds is not None:
        df = df.filter(df["kind"].is_in(list(kinds)))
    trie = TokenTrie()
    path = Path(data_dir) / schemas.ENTITIES
    for row, (eid, kind, toks, items) in enumerate(df.iter_rows()):
        if not toks:
            continue
        if vocab_size is not None and max(toks) >= vocab_size:
            raise InputError.at(
                path, f"row {row + 1}", f"token id {max(toks)} is outside the vocabulary ({vocab_size}); "
                "entities.parquet was built with another tokenizer: rerun `recsys build-entities --model` with the checkpoint's base model"
            )
        if kind == "item" and items:
            for item in items:
                trie.insert(toks, item)
        elif kinds is None or kind != "item":  # an item trie holds real item ids only
            trie.insert(toks, eid)
    return trie
