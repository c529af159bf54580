"""Prompt rows as a plan of integer columns, rendered into the prompts frame column-wise.

A `PromptPlan` row says which template fills which values: split, user, the item shown as
{item} (its id is the row's item_id), the history shown as {history}, the yes/no answer,
the review row (rating / explanation / feature / review / summary) and the candidate list.
`prompts.sequence_prompts` and `prompts.review_prompts` write the plan (they alone consume
the random streams); `render` then fills every template for all of its rows at once with
polars string concatenation and places the entity spans with numpy from the field lengths.

    python -c "from recsys_cli.data.render import PromptPlan; p = PromptPlan(); print(p.history([3, 1]), p.rows)"
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import polars as pl

from recsys_cli.data.spans import Marked, Registry, SpanLayout, SpanTable, entity_lists, list_column
from recsys_cli.data.templates import NO, TEMPLATES, YES

SPLITS = ("train", "valid", "test")
SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}
ANSWERS = ("", YES, NO)  # plan answer codes: 0 none, 1 yes, 2 no
TEMPLATE_INDEX = {id(t): i for i, t in enumerate(TEMPLATES)}
REVIEW_FIELDS = ("rating", "explanation", "feature", "review", "summary")
# template field -> plan column that indexes its values
FIELD_COLUMN = {"user": 2, "item": 3, "history": 4, "answer": 5} | {f: 6 for f in REVIEW_FIELDS}
N_COLS = 8  # template, split, user, item, history, answer, review, candidates


class PromptPlan:
    """Prompt rows in output order, as int tuples (see `add`), plus the histories, candidate
    lists and review texts they point to."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, ...]] = []
        self.hists: list[list[int]] = []  # item codes, oldest first
        self.cands: list[np.ndarray] = []  # item codes, in prompt order
        self.reviews: dict[str, list[str]] = {f: [] for f in REVIEW_FIELDS}

    def history(self, codes: list[int]) -> int:
        self.hists.append(codes)
        return len(self.hists) - 1

    def candidates(self, codes: np.ndarray) -> int:
        self.cands.append(codes)
        return len(self.cands) - 1

    def add_reviews(self, **columns: list[str]) -> int:
        """Texts of review rows, one list per REVIEW_FIELDS name (all the same length); returns
        the index of the first row."""
        first = len(self.reviews["rating"])
        for f in REVIEW_FIELDS:
            self.reviews[f].extend(columns[f])
        return first

    def add(
        self,
        tpl: int,
        split: int,
        user: int,
        item: int,
        hist: int = -1,
        answer: int = 0,
        review: int = -1,
        cand: int = -1,
    ) -> None:
        """tpl: index into TEMPLATES; split: index into SPLITS; user: user index; item: item code;
        hist / review / cand: from `history` / `add_reviews` / `candidates` (-1: none); answer: ANSWERS."""
        self.rows.append((tpl, split, user, item, hist, answer, review, cand))


@dataclass
class Values:
    """The distinct values of one template field: texts, their lengths in characters and, for
    marked values (titles, histories), their entity spans."""

    text: pl.Series
    length: np.ndarray
    spans: SpanTable | None = None


def plain(texts: list[str]) -> Values:
    return Values(pl.Series(texts, dtype=pl.Utf8), np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))


def marked(values: list[Marked]) -> Values:
    v = plain([m[0] for m in values])
    return Values(v.text, v.length, SpanTable.of(values))


def history_values(hists: list[list[int]], titles: Values) -> Values:
    """Histories: their item titles joined with "; "."""
    names = titles.text.to_list()
    v = plain(["; ".join([names[j] for j in h]) for h in hists])
    return Values(v.text, v.length, titles.spans.joined(hists, titles.length, 2))


def _fill(tpl, rows: np.ndarray, idx: dict[str, np.ndarray], values: dict[str, Values], spans: SpanLayout) -> pl.Series:
    """The source texts of `rows` (all with template `tpl`); their spans go to `spans`."""
    cols: dict[str, pl.Series] = {}
    exprs: list[pl.Expr] = []
    pos = np.zeros(len(rows), dtype=np.int64)  # [R] characters written so far
    for literal, name in tpl.parts:
        if literal:
            exprs.append(pl.lit(literal))
            pos += len(literal)
        if name is None:
            continue
        v, at = values[name], idx[name][rows]
        if name not in cols:
            cols[name] = v.text.gather(at)
        exprs.append(pl.col(name))
        if v.spans is not None:
            spans.add(rows, pos.copy(), v.spans, at)
        pos += v.length[at]
    return pl.DataFrame(cols).select(pl.concat_str(exprs).alias("s"))["s"]


def render(
    plan: PromptPlan, users: list[str], labels: list[str], titles: list[Marked], item_ids: pl.Series, registry: Registry
) -> pl.DataFrame:
    """The prompts frame (see schemas.PROMPTS_SCHEMA) of `plan`, rows in plan order."""
    n = len(plan.rows)
    cols = np.fromiter(chain.from_iterable(plan.rows), dtype=np.int64, count=N_COLS * n).reshape(n, N_COLS).T  # [8, N]
    items = marked(titles)
    values = {
        "user": plain(labels),
        "item": items,
        "history": history_values(plan.hists, items),
        "answer": plain(list(ANSWERS)),
    }
    values |= {f: plain(plan.reviews[f]) for f in REVIEW_FIELDS}
    idx = {f: cols[c] for f, c in FIELD_COLUMN.items()}
    src_spans, tgt_spans = SpanLayout(n), SpanLayout(n)
    order = np.argsort(cols[0], kind="stable")
    bounds = np.flatnonzero(np.diff(cols[0][order])) + 1
    sources, targets = [], []
    for rows in np.split(order, bounds) if n else []:
        tpl = TEMPLATES[int(cols[0][rows[0]])]
        sources.append(_fill(tpl, rows, idx, values, src_spans))
        v, at = values[tpl.target_field], idx[tpl.target_field][rows]
        targets.append(v.text.gather(at))
        if v.spans is not None:
            tgt_spans.add(rows, np.zeros(len(rows), dtype=np.int64), v.spans, at)
    back = np.empty(n, dtype=np.int64)
    back[order] = np.arange(n)  # [N] row -> place in template order
    text = {
        k: pl.concat(s).gather(back) if s else pl.Series([], dtype=pl.Utf8)
        for k, s in (("source", sources), ("target", targets))
    }

    def per_template(attr: str, dtype) -> pl.Series:
        return pl.Series([getattr(t, attr) for t in TEMPLATES], dtype=dtype).gather(cols[0])

    df = pl.DataFrame(
        {
            "family": per_template("family", pl.Utf8),
            "template_id": per_template("template_id", pl.Utf8),
            "seen": per_template("seen", pl.Boolean),
            "split": pl.Series(SPLITS, dtype=pl.Utf8).gather(cols[1]),
            "user_id": pl.Series(users, dtype=pl.Utf8).gather(cols[2]),
            "item_id": item_ids.gather(cols[3]),
            "source": text["source"],
            "target": text["target"],
            "candidates": _candidates(plan, cols[7], item_ids),
            "source_entities": entity_lists(*src_spans.arrays(), registry, "source_entities"),
            "target_entities": entity_lists(*tgt_spans.arrays(), registry, "target_entities"),
        }
    )
    prefix = df["split"] + ":" + df["family"] + ":"
    return df.with_columns(prompt_id=prefix + pl.int_range(0, n, eager=True).cast(pl.Utf8).str.zfill(8))


def _candidates(plan: PromptPlan, cand: np.ndarray, item_ids: pl.Series) -> pl.Series:
    """List(Utf8) column: the item ids of each row's candidate list, null where it has none."""
    has = cand >= 0
    lengths = np.fromiter(map(len, plan.cands), dtype=np.int64, count=len(plan.cands))
    count = np.zeros(len(cand), dtype=np.int64)  # [N]
    count[has] = lengths[cand[has]]
    codes = np.concatenate([plan.cands[c] for c in cand[has].tolist()]) if has.any() else np.zeros(0, dtype=np.int64)
    return list_column(count, item_ids.gather(codes), "candidates", valid=has)
