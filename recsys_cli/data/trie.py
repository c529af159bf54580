"""The entity trie: token sequences of the entity pool (titles, categories, brands, feature
values), the one trie used by the intra-position rule and by constrained decoding.

    python -c "from recsys_cli.data.trie import EntityTrie; \
        t = EntityTrie([([5, 6], 'a')]); print(t.step(0, 5), t.lookup([5, 6]))"

The entries live in a `pygtrie.Trie` (tuple of token ids -> payloads: item ids, or entity ids
for other kinds), the source of truth for lookups and iteration. Decoding steps from a node
once per generated token, so node tables are derived from it: `step(node, tok)` is one dict
lookup (O(1) whatever the pool size), `children_tensor(node)` a cached LongTensor of allowed
tokens, and `unique_tail(node)` the forced rest of a title once its prefix is unique.
`bench/entities.py` measures stepping against pygtrie's own prefix lookups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Hashable, Iterable, Sequence

ROOT = 0
NONE = -1


class EntityTrie:
    """Trie over token id sequences; each terminal node keeps the payloads of the sequences
    ending there, in insertion order and without duplicates. Nodes are ints, ROOT = 0."""

    def __init__(self, entries: Iterable[tuple[Sequence[int], Hashable]] = ()):
        import pygtrie

        self.store = pygtrie.Trie()  # tuple(token ids) -> [payload, ...]
        self._next: list[dict[int, int]] = [{}]  # node -> {token: child node}
        self.payloads: list[list[Hashable]] = [[]]
        self.depth: list[int] = [0]
        self._child_cache: dict[int, object] = {}
        self._tails: list[int] | None = None  # see `unique_tail`
        for tokens, payload in entries:
            self.insert(tokens, payload)

    def insert(self, tokens: Sequence[int], payload: Hashable) -> int:
        key = tuple(int(t) for t in tokens)
        if not key:
            return ROOT
        stored = self.store.setdefault(key, [])
        if payload not in stored:
            stored.append(payload)
        node = ROOT
        for tok in key:
            nxt = self._next[node].get(tok)
            if nxt is None:
                nxt = len(self._next)
                self._next[node][tok] = nxt
                self._next.append({})
                self.payloads.append([])
                self.depth.append(self.depth[node] + 1)
            node = nxt
        if payload not in self.payloads[node]:
            self.payloads[node].append(payload)
        self._child_cache.clear()
        self._tails = None
        return node

    def __len__(self) -> int:
        """Number of distinct token sequences (entries) in the trie."""
        return len(self.store)

    @property
    def num_nodes(self) -> int:
        return len(self._next)

    @property
    def max_depth(self) -> int:
        return max(self.depth)

    def step(self, node: int, tok: int) -> int:
        """The child of `node` reached by `tok`, or NONE (-1)."""
        return self._next[node].get(tok, NONE)

    def walk(self, tokens: Sequence[int], node: int = ROOT) -> int:
        for tok in tokens:
            node = self.step(node, int(tok))
            if node == NONE:
                return NONE
        return node

    def lookup(self, tokens: Sequence[int]) -> list[Hashable]:
        """Payloads of the entry whose tokens are exactly `tokens` (pygtrie)."""
        return list(self.store.get(tuple(int(t) for t in tokens), []))

    def is_terminal(self, node: int) -> bool:
        return bool(self.payloads[node])

    def children(self, node: int) -> list[int]:
        return list(self._next[node])

    def unique_tail(self, node: int) -> tuple[list[int], int] | None:
        """(forced tokens, terminal node) when exactly one terminal node lies at or below
        `node` and it is a leaf: under constrained decoding those tokens are forced, so the
        entry is already decided. None when the choice is still open."""
        if self._tails is None:
            self._tails = self._build_tails()
        end = self._tails[node]
        if end == NONE:
            return None
        toks: list[int] = []
        while node != end:
            ((tok, node),) = self._next[node].items()
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


def trie_from_rows(
    rows: Iterable[tuple[str, str, Sequence[int], Sequence[str] | None]], items_only: bool = False
) -> EntityTrie:
    """Rows of (entity_id, kind, token_ids, item_ids) -> trie. Item entities carry their item
    ids as payload, other kinds their entity id; `items_only` keeps item entities only."""
    trie = EntityTrie()
    for eid, kind, toks, items in rows:
        if not toks:
            continue
        if kind == "item" and items:
            for item in items:
                trie.insert(toks, item)
        elif not items_only:
            trie.insert(toks, eid)
    return trie


def load_entity_trie(data_dir: Path, kinds: Sequence[str] | None = None, vocab_size: int | None = None) -> EntityTrie:
    """Trie over the in-context token ids of entities.parquet (restricted to `kinds`)."""
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.errors import InputError, RecsysError

    if kinds is not None:
        bad = [k for k in kinds if k not in schemas.ENTITY_KINDS]
        if bad:
            raise RecsysError(f"unknown entity kinds {bad}; expected {', '.join(schemas.ENTITY_KINDS)}")
    df = read_artifact(Path(data_dir), schemas.ENTITIES, columns=["entity_id", "kind", "token_ids", "item_ids"])
    if kinds is not None:
        df = df.filter(df["kind"].is_in(list(kinds)))
    if vocab_size is not None and df.height:
        top = df["token_ids"].list.max()
        bad_rows = (top >= vocab_size).fill_null(False)
        if bad_rows.any():
            row = int(bad_rows.arg_true()[0])
            raise InputError.at(
                Path(data_dir) / schemas.ENTITIES,
                f"row {row + 1}",
                f"token id {top[row]} is outside the vocabulary ({vocab_size}); "
                "entities.parquet was built with another tokenizer: "
                "rerun `recsys build-entities --model` with the checkpoint's base model",
            )
    return trie_from_rows(df.iter_rows(), items_only=kinds is not None and list(kinds) == ["item"])
