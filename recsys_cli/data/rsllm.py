"""RSLLM unified Text-ID examples (docs/rsllm.md): one soft ID token after each item title in
Part A. Pure Python: no torch, no model.

    python -c "from recsys_cli.data.rsllm import HybridExample; help(HybridExample)"

Rule (the one place it is written):
* after every ITEM entity ("item:<id>", with a row in the recommender's item table) that stays
  in Part A, one soft token is inserted; its input_ids entry is `placeholder` (any real id: the
  model replaces that embedding, see modeling/wrapper.RecsysLM.embed) and `soft` lists it as
  (position, item row);
* positions: the soft token takes an inter position like a token (its own index in Part A,
  every later Part A token shifts by one); its intra position continues the title (an n-token
  title has intra 1..n, its soft token n + 1). Part B tokens keep their intra ids and take the
  shifted index of their mask token as inter position. Labels of soft tokens are -100;
* an item whose title is masked (it is in Part B) gets no soft token (the ID would leak the
  answer); Part B never has soft tokens;
* `id_tokens=False` (the "without ID tokens" ablation) builds the same example without the
  soft tokens; `titles` (the item-loss spans) and length budgets are the same in both modes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from recsys_cli.artifacts import schemas
from recsys_cli.data import masking
from recsys_cli.data import split as loo
from recsys_cli.data.masking import IGNORE, Example
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.tokenize import TokenizedDoc
from recsys_cli.data.trie import EntityTrie
from recsys_cli.errors import RecsysError

ITEM_PREFIX = "item:"


@dataclass
class HybridExample(Example):
    soft: list[tuple[int, int]] = field(default_factory=list)  # (Part A position, item row) per soft token
    titles: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, row): item titles in Part A
    history: list[int] = field(default_factory=list)  # recommender rows of the user's history (prompts; else empty)

    @property
    def budget_len(self) -> int:
        """Length with every planned soft token, whether inserted or not (id_tokens ablation)."""
        return len(self.input_ids) + len(self.titles) - len(self.soft)


def item_rows(item_ids: Sequence[str]) -> dict[str, int]:
    """item id -> table row (row j + 1 = item_ids[j]; row 0, the padding, is never used)."""
    return {i: n + 1 for n, i in enumerate(item_ids)}


def row_of(entity_id: str, rows: Mapping[str, int]) -> int:
    """Table row of an item entity ("item:<id>"), 0 for other kinds and unknown items."""
    if not entity_id.startswith(ITEM_PREFIX):
        return 0
    return int(rows.get(entity_id[len(ITEM_PREFIX) :], 0))


def history_rows(sequence: Sequence[str], split: str, target: str | None, rows: Mapping[str, int]) -> list[int]:
    """Rows of the items a prompt's user had before its target (data/split.history), unknown
    items skipped: the recommender's input for the user-alignment loss."""
    return [r for r in (int(rows.get(i, 0)) for i in loo.history(sequence, split, target)) if r > 0]


def carries_history(family: str | None) -> bool:
    """Whether a prompt of `family` shows the user's history (sequential, direct): only these
    take part in the user-alignment loss. Rating, explanation and review prompts hold none."""
    return family in schemas.RANKING_FAMILIES


def shown_position(sequence: Sequence[str], shown_entity_ids: Sequence[str]) -> int | None:
    """Position t of a prompt in `sequence`, found from the history items its text shows (its
    item entities that are in the sequence, in text order): the end of their leftmost match as
    a subsequence. A prompt shows items[t - 10:t] (data/prompts.py), so the match never ends
    after the true t. None when the text shows no item of the sequence or they do not match."""
    seen = set(sequence)
    items = (e[len(ITEM_PREFIX) :] for e in shown_entity_ids if e.startswith(ITEM_PREFIX))
    shown = [i for i in items if i in seen]
    if not shown:
        return None
    j = 0
    for t, item in enumerate(sequence):
        if item == shown[j]:
            j += 1
            if j == len(shown):
                return t + 1
    return None


def prompt_history(
    sequence: Sequence[str],
    family: str | None,
    split: str,
    target: str | None,
    shown_entity_ids: Sequence[str],
    rows: Mapping[str, int],
) -> list[int]:
    """The user-loss history rows of a prompt (docs/rsllm.md): none unless its family carries a
    history. A train prompt whose item is not in the sequence (a negative yes/no prompt) takes
    its position from the history its text shows (`shown_position`) and sees only the items
    before that position (data/split.history's rule for that train position); no position, or
    one outside the training part: no history (never the whole training part)."""
    if not carries_history(family):
        return []
    if split == "train" and target not in sequence:
        t = shown_position(sequence, shown_entity_ids)
        if t is None or t not in loo.train_positions(len(sequence)):
            return []
        target = sequence[t]
    return history_rows(sequence, split, target, rows)


def _checked_ids(ex: Example, entity_ids: Sequence[str]) -> Sequence[str]:
    if len(entity_ids) != len(ex.entity_spans):
        raise RecsysError(
            f"hybrid example: {len(ex.entity_spans)} entity spans but {len(entity_ids)} entity ids "
            "(tokenize with data/tokenize.tokenize_documents and slice with TokenizedDoc.slice)"
        )
    return entity_ids


def hybridize(
    ex: Example,
    entity_ids: Sequence[str],
    rows: Mapping[str, int],
    placeholder: int,
    id_tokens: bool = True,
    history: Sequence[int] | None = None,
) -> HybridExample:
    """Insert the soft ID tokens into Part A of `ex` (built by data/masking); `entity_ids` are
    aligned with ex.entity_spans (ORIGINAL coordinates, like ex.spans)."""
    entity_ids = _checked_ids(ex, entity_ids)
    spans = sorted(ex.spans)

    def part_a_index(i: int) -> int:  # original token i (outside every masked span) -> Part A index
        return i - sum(e - s - 1 for s, e in spans if e <= i)

    ends: dict[int, int] = {}  # Part A index of a title's last token -> item row
    plain_titles: list[tuple[int, int, int]] = []
    for (s, e), eid in zip(ex.entity_spans, entity_ids):
        row = row_of(eid, rows)
        if row <= 0 or e <= s or any(ms < e and s < me for ms, me in spans):
            continue  # not an item, unknown to the recommender, or masked (in Part B)
        a, b = part_a_index(s), part_a_index(e - 1) + 1
        ends[b - 1] = row
        plain_titles.append((a, b, row))
    la = ex.part_a_len
    if not id_tokens:
        return HybridExample(
            list(ex.input_ids),
            list(ex.labels),
            list(ex.inter),
            list(ex.intra),
            la,
            list(ex.spans),
            list(ex.entity_spans),
            ex.level,
            ex.allowed,
            soft=[],
            titles=plain_titles,
            history=list(history or []),
        )
    new_index = [0] * la  # old Part A index -> new
    ids, intra, soft = [], [], []
    for j in range(la):
        new_index[j] = len(ids)
        ids.append(ex.input_ids[j])
        intra.append(ex.intra[j])
        if j in ends:
            soft.append((len(ids), ends[j]))
            ids.append(placeholder)
            intra.append(ex.intra[j] + 1)  # continues the title: n + 1
    n_a = len(ids)
    ids.extend(ex.input_ids[la:])
    intra.extend(ex.intra[la:])
    labels = [IGNORE] * n_a + list(ex.labels[la:])
    inter = list(range(n_a)) + [new_index[m] for m in ex.inter[la:]]
    titles = [(new_index[a], new_index[b - 1] + 1, r) for a, b, r in plain_titles]
    allowed = None if ex.allowed is None else {p - la + n_a: v for p, v in ex.allowed.items()}
    return HybridExample(
        ids,
        labels,
        inter,
        intra,
        n_a,
        list(ex.spans),
        list(ex.entity_spans),
        ex.level,
        allowed,
        soft=soft,
        titles=titles,
        history=list(history or []),
    )


def n_items(doc: TokenizedDoc, rows: Mapping[str, int]) -> int:
    """Soft tokens `doc` would get in Part A if nothing were masked."""
    return sum(1 for eid in doc.entity_ids if row_of(eid, rows) > 0)


def fit_source(source: TokenizedDoc, keep: int, rows: Mapping[str, int]) -> TokenizedDoc:
    """The end of `source` that fits `keep` positions together with its soft tokens (with
    empty `rows`: the last `keep` tokens, training/data.ExampleStream.prompt's rule)."""
    n = len(source.ids)
    start = max(0, n - keep)
    while True:
        part = source.slice(start, n)
        need = len(part.ids) + n_items(part, rows)
        if need <= keep or start >= n:
            return part
        start += need - keep


def hybrid_prompt(
    source: TokenizedDoc,
    target: TokenizedDoc,
    special: SpecialIds,
    trie: EntityTrie | None,
    rows: Mapping[str, int],
    placeholder: int,
    max_length: int,
    id_tokens: bool = True,
    history: Sequence[int] | None = None,
) -> HybridExample:
    """A prompt (Part A = prompt + soft tokens + [gM], Part B = the answer) cut to max_length
    like ExampleStream.prompt, counting the soft tokens in the budget."""
    if len(target.ids) + 1 > max_length // 2:
        target = target.slice(0, max_length // 2 - 1)
    source = fit_source(source, max_length - (len(target.ids) + 2), rows)
    ex = masking.prompt_example(source, target, special, trie)
    return hybridize(ex, [*source.entity_ids, *target.entity_ids], rows, placeholder, id_tokens, history)


def hybrid_document(
    doc: TokenizedDoc,
    level: str,
    rng: random.Random,
    cfg: masking.MaskSettings,
    special: SpecialIds,
    trie: EntityTrie | None,
    rows: Mapping[str, int],
    placeholder: int,
    id_tokens: bool = True,
) -> HybridExample:
    """A corpus document masked at `level` (data/masking.mask_document, same rng draws), with
    soft tokens after the item titles left in Part A."""
    ex = masking.mask_document(doc, level, rng, cfg, special, trie)
    return hybridize(ex, doc.entity_ids, rows, placeholder, id_tokens)


def hybrid_part_a(
    source: TokenizedDoc,
    special: SpecialIds,
    rows: Mapping[str, int],
    placeholder: int,
    max_prompt_len: int,
    id_tokens: bool = True,
) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Inference: Part A (prompt + soft tokens + [gM]) ids, intra ids and soft list, exactly as
    hybrid_prompt lays out Part A in training (cut to max_prompt_len - 2 + [gM])."""
    source = fit_source(source, max_prompt_len - 2, rows)
    n = len(source.ids)
    ex = masking.build_example(source.ids, source.entity_spans, [(n, n)], special.g_m, special, "prompt", None)
    hx = hybridize(ex, source.entity_ids, rows, placeholder, id_tokens)
    la = hx.part_a_len
    return hx.input_ids[:la], hx.intra[:la], hx.soft
