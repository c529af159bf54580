"""Text with entity spans, and turning many of them into a Parquet-ready column.

A *marked* value is `(text, [(start, end, entity), ...])` with character offsets (end
exclusive) and `entity` an index into a `Registry` of (kind, entity_id) pairs. `join` and
`fill` keep offsets right while concatenating; `entity_column` builds the
`List(ENTITY_SPAN)` column with numpy + polars, not per-row dicts.

    >>> reg = Registry(); g, u = reg.get("item", "item:2"), reg.get("item", "item:9")
    >>> join([("Gloom", [(0, 5, g)]), ("Uno", [(0, 3, u)])], "; ")
    ('Gloom; Uno', [(0, 5, 0), (7, 10, 1)])
"""

from __future__ import annotations

from itertools import chain

import numpy as np
import polars as pl

from recsys_cli.artifacts.schemas import ENTITY_SPAN

Span = tuple[int, int, int]
Marked = tuple[str, list[Span]]


class Registry:
    """(kind, entity_id) <-> small integer, so spans stay three ints until the end."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.kinds: list[str] = []
        self.ids: list[str] = []

    def get(self, kind: str, entity_id: str) -> int:
        key = (kind, entity_id)
        idx = self.index.get(key)
        if idx is None:
            idx = self.index[key] = len(self.kinds)
            self.kinds.append(kind)
            self.ids.append(entity_id)
        return idx

    def mark(self, text: str, kind: str, entity_id: str) -> Marked:
        return text, [(0, len(text), self.get(kind, entity_id))]


def join(values: list[Marked], sep: str) -> Marked:
    spans: list[Span] = []
    pos, step = 0, len(sep)
    append = spans.append
    for text, ents in values:
        for st, en, x in ents:
            append((st + pos, en + pos, x))
        pos += len(text) + step
    return sep.join([v[0] for v in values]), spans


def fill(parts: tuple, values: dict) -> Marked:
    """Render compiled template `parts` [(literal, field)] with str or Marked values."""
    out: list[str] = []
    spans: list[Span] = []
    pos = 0
    for literal, name in parts:
        if literal:
            out.append(literal)
            pos += len(literal)
        if name is None:
            continue
        v = values[name]
        if isinstance(v, tuple):
            text, ents = v
            for s, e, x in ents:
                spans.append((s + pos, e + pos, x))
        else:
            text = v
        out.append(text)
        pos += len(text)
    return "".join(out), spans


def entity_column(all_spans: list[list[Span]], registry: Registry, name: str = "entities") -> pl.Series:
    """list (one per row) of span lists -> pl.Series of List(ENTITY_SPAN), built columnar."""
    n = len(all_spans)
    lengths = np.fromiter(map(len, all_spans), dtype=np.int64, count=n)
    total = int(lengths.sum())
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(all_spans)), dtype=np.int64, count=3 * total).reshape(total, 3)
    table = pl.DataFrame({"kind": registry.kinds, "entity_id": registry.ids}, schema={"kind": pl.Utf8, "entity_id": pl.Utf8})
    spans = pl.DataFrame({
        "row": np.repeat(np.arange(n, dtype=np.int64), lengths),
        "start": flat[:, 0].astype(np.int32),
        "end": flat[:, 1].astype(np.int32),
    }).with_columns(table[pl.Series(flat[:, 2])] if total else table.clear())
    grouped = spans.group_by("row", maintain_order=True).agg(pl.struct("start", "end", "kind", "entity_id").alias(name))
    full = pl.DataFrame({"row": np.arange(n, dtype=np.int64)})
    col = full.join(grouped, on="row", how="left", maintain_order="left")[name]
    return col.fill_null(pl.lit([], dtype=pl.List(ENTITY_SPAN))).cast(pl.List(ENTITY_SPAN)).alias(name)
