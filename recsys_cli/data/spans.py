"""Text with entity spans, and turning many of them into a Parquet-ready column.

A *marked* value is `(text, [(start, end, entity), ...])` with character offsets (end
exclusive) and `entity` an index into a `Registry` of (kind, entity_id) pairs. `join` keeps
offsets right while concatenating a few values. For many rows the spans stay in numpy
arrays: a `SpanTable` holds the spans of a list of values (and of joins of them), a
`SpanLayout` places them into rows at given offsets, and `entity_lists` turns the result
into the `List(ENTITY_SPAN)` column. SpanTable and SpanLayout use numpy only (no polars),
so they also run in a forked child process.

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


class SpanTable:
    """The spans of a list of values as flat arrays: value v owns the spans
    first[v] : first[v] + count[v] of (start, end, ent)."""

    def __init__(self, count: np.ndarray, start: np.ndarray, end: np.ndarray, ent: np.ndarray) -> None:
        self.count, self.start, self.end, self.ent = count, start, end, ent
        self.first = np.cumsum(count) - count

    @classmethod
    def of(cls, values: list[Marked]) -> SpanTable:
        count = np.fromiter((len(v[1]) for v in values), dtype=np.int64, count=len(values))
        flat = np.fromiter(
            chain.from_iterable(chain.from_iterable(v[1] for v in values)), dtype=np.int64, count=3 * int(count.sum())
        )
        flat = flat.reshape(-1, 3)  # [S, 3] start, end, entity
        return cls(count, flat[:, 0], flat[:, 1], flat[:, 2])

    def joined(self, lists: list[list[int]], length: np.ndarray, sep: int) -> SpanTable:
        """The spans of each list of values (indices into this table) joined with a separator
        of `sep` characters; `length`: each value's text length."""
        sizes = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(sizes.sum()))  # [E] values
        head = np.cumsum(sizes) - sizes  # [L] first element of each list
        step = np.concatenate([[0], np.cumsum(length[flat] + sep)])  # [E + 1]
        off = step[:-1] - np.repeat(step[head], sizes)  # [E] element offset inside its list's text
        c = self.count[flat]  # [E] spans per element
        e = np.repeat(np.arange(len(flat)), c)  # [S] element of each span
        src = self.first[flat][e] + np.arange(len(e)) - np.repeat(np.cumsum(c) - c, c)
        total = np.concatenate([[0], np.cumsum(c)])
        return SpanTable(
            total[head + sizes] - total[head], off[e] + self.start[src], off[e] + self.end[src], self.ent[src]
        )


class SpanLayout:
    """The spans of one text column, added by groups of rows (each row at most once per
    `add`, in the order its spans appear in the text), laid out row by row."""

    def __init__(self, n_rows: int) -> None:
        self.count = np.zeros(n_rows, dtype=np.int64)
        self.parts: list[tuple] = []

    def add(self, rows: np.ndarray, pos: np.ndarray, table: SpanTable, idx: np.ndarray) -> None:
        """Row rows[i] gets the spans of value idx[i] of `table`, shifted by pos[i]."""
        c = table.count[idx]  # [R] spans per row
        self.parts.append((rows, self.count[rows], pos, table, idx, c))
        self.count[rows] += c

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(spans per row, start, end, entity): the flat arrays in row order."""
        first_row = np.cumsum(self.count) - self.count
        total = int(self.count.sum())
        start, end, ent = (np.empty(total, dtype=np.int64) for _ in range(3))
        for rows, slot, pos, table, idx, c in self.parts:
            k = np.repeat(np.arange(len(rows)), c)  # [S] row within the group
            within = np.arange(len(k)) - np.repeat(np.cumsum(c) - c, c)
            src = table.first[idx][k] + within
            dst = first_row[rows][k] + slot[k] + within
            start[dst] = pos[k] + table.start[src]
            end[dst] = pos[k] + table.end[src]
            ent[dst] = table.ent[src]
        return self.count, start, end, ent


def entity_lists(
    count: np.ndarray, start: np.ndarray, end: np.ndarray, ent: np.ndarray, registry: Registry, name: str = "entities"
) -> pl.Series:
    """Spans per row + the flat (start, end, entity) arrays in row order -> List(ENTITY_SPAN)."""
    at = pl.Series(ent, dtype=pl.Int64)
    flat = pl.DataFrame(
        {
            "start": start.astype(np.int32),
            "end": end.astype(np.int32),
            "kind": pl.Series(registry.kinds, dtype=pl.Utf8).gather(at),
            "entity_id": pl.Series(registry.ids, dtype=pl.Utf8).gather(at),
        }
    )
    return list_column(count, flat.to_struct(name), name).cast(pl.List(ENTITY_SPAN))


def list_column(count: np.ndarray, values: pl.Series, name: str, valid: np.ndarray | None = None) -> pl.Series:
    """A List column from per-row lengths and the flat values in row order (rows where `valid`
    is False are null), built as an Arrow list array over the values (no per-row work)."""
    import pyarrow as pa

    offsets = np.zeros(len(count) + 1, dtype=np.int64)
    np.cumsum(count, out=offsets[1:])
    mask = None if valid is None else pa.array(~valid)
    arr = pa.LargeListArray.from_arrays(
        pa.array(offsets), values.to_arrow(compat_level=pl.CompatLevel.newest()), mask=mask
    )
    return pl.Series(name, arr)
