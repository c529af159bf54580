"""Text with entity spans, and turning many of them into a Parquet-ready column.

A *marked* value is `(text, [(start, end, entity), ...])` with character offsets (end
exclusive) and `entity` an index into a `Registry` of (kind, entity_id) pairs. `join` and
`fill`/`chunks` keep offsets right while concatenating (the latter two as shared chunks
`(offset, spans)`); `entity_column` builds the `List(ENTITY_SPAN)` column with numpy + polars.

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


def chunks(values: list[Marked], sep: str) -> tuple[str, list[tuple[int, list[Span]]]]:
    """Like `join`, but returns the spans as chunks `(offset, spans)` that share the values'
    span lists (no per-span work); `entity_column` resolves the offsets with numpy."""
    out: list[tuple[int, list[Span]]] = []
    pos, step = 0, len(sep)
    for text, ents in values:
        if ents:
            out.append((pos, ents))
        pos += len(text) + step
    return sep.join([v[0] for v in values]), out


def fill(parts: tuple, values: dict) -> tuple[str, list[tuple[int, list[Span]]]]:
    """Render compiled template `parts` [(literal, field)] with str or Marked values.
    Returns the text and its span chunks [(offset, spans)]."""
    out: list[str] = []
    found: list[tuple[int, list[Span]]] = []
    pos = 0
    for literal, name in parts:
        if literal:
            out.append(literal)
            pos += len(literal)
        if name is None:
            continue
        v = values[name]
        if v.__class__ is tuple:
            text, ents = v
            if ents:
                found.append((pos, ents))
        else:
            text = v
        out.append(text)
        pos += len(text)
    return "".join(out), found


def resolve(chunk_list: list[tuple[int, list[Span]]]) -> list[Span]:
    """Chunks -> plain spans (for tests and small jobs)."""
    return [(s + off, e + off, x) for off, ents in chunk_list for s, e, x in ents]


def entity_column(rows: list[list[tuple[int, list[Span]]]], registry: Registry, name: str = "entities") -> pl.Series:
    """Per row a list of chunks (offset, spans) -> pl.Series of List(ENTITY_SPAN). Each distinct
    span list is read once; offsets are added with numpy, rows grouped with polars."""
    return entity_frame(span_arrays(rows), len(rows), registry, name)


def span_arrays(rows: list[list[tuple[int, list[Span]]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chunks per row -> flat (row, start, end, entity) arrays, numpy only (no polars, so it is
    safe in a forked child process)."""
    n = len(rows)
    per_row = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    flat_chunks = list(chain.from_iterable(rows))
    objs = [c[1] for c in flat_chunks]
    keys = list(map(id, objs))
    distinct = dict(zip(keys, objs))  # id -> span list, in first-seen order
    ref_of = {k: i for i, k in enumerate(distinct)}
    lists = list(distinct.values())
    c_row = np.repeat(np.arange(n, dtype=np.int64), per_row)
    c_off = np.fromiter((c[0] for c in flat_chunks), dtype=np.int64, count=len(flat_chunks))
    c_ref = np.fromiter(map(ref_of.__getitem__, keys), dtype=np.int64, count=len(keys))
    lens = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(chain.from_iterable(chain.from_iterable(lists)), dtype=np.int64, count=3 * int(lens.sum())).reshape(-1, 3)
    first = np.cumsum(lens) - lens  # [L] start of each list in flat
    ref = c_ref
    cl = lens[ref] if len(ref) else np.zeros(0, dtype=np.int64)  # [C] spans per chunk
    total = int(cl.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cl) - cl, cl)
    src = np.repeat(first[ref] if len(ref) else ref, cl) + within  # [S]
    off = np.repeat(c_off, cl)
    return np.repeat(c_row, cl), (flat[src, 0] + off).astype(np.int32), (flat[src, 1] + off).astype(np.int32), flat[src, 2]


def entity_frame(arrays: tuple, n: int, registry: Registry, name: str = "entities") -> pl.Series:
    """`span_arrays` output for n rows -> pl.Series of List(ENTITY_SPAN)."""
    row, start, end, ent = arrays
    table = pl.DataFrame({"kind": registry.kinds, "entity_id": registry.ids}, schema={"kind": pl.Utf8, "entity_id": pl.Utf8})
    spans = pl.DataFrame({
        "row": row,
        "start": start,
        "end": end,
    }).with_columns(table[pl.Series(ent)] if len(ent) else table.clear())
    grouped = spans.group_by("row", maintain_order=True).agg(pl.struct("start", "end", "kind", "entity_id").alias(name))
    full = pl.DataFrame({"row": np.arange(n, dtype=np.int64)})
    col = full.join(grouped, on="row", how="left", maintain_order="left")[name]
    return col.fill_null(pl.lit([], dtype=pl.List(ENTITY_SPAN))).cast(pl.List(ENTITY_SPAN)).alias(name)
