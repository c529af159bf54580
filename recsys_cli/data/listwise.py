"""Listwise ranking prompts: the user's history and K labelled candidates in one prompt, the
answer the target's one-token label (docs/rerank.md "Listwise scoring"). Pure Python: no torch.

    python -c "from recsys_cli.data import listwise as lw; print(lw.LABEL_CHARS, [t.template_id for t in lw.TEMPLATES])"

Layout (token level, so that lengths, truncation and entity spans are exact):

    head  history titles joined by ";"  middle  ("\\n" label title) x K  tail   [gM] | [START] -> label

* a label is ONE token of the tokenizer (" A" .. " Z", then " a" .. " z"); `Vocab.of` checks
  that each encodes to exactly one token and that they are distinct; candidate j of the
  presented order carries label j;
* every history and candidate title is an entity (" " + title, its in-context ids, cut to
  TITLE_TOKENS), so Part A gives it intra ids 1..n (data/masking.build_example), labels and
  template words 0; Part B is `[START]` alone (inter = the [gM] index, intra 1) and its only
  target is the label of the answer;
* the length budget counts the whole example (Part A + [gM] + [START]); history titles go
  first, oldest first, when it is short; when the K candidates alone do not fit, `build`
  refuses in one line naming K, the needed and the available length;
* history titles carry their entity id ("item:<id>"), so an RSLLM checkpoint puts its soft ID
  token after them (data/rsllm.hybridize; counted in the budget); candidate titles carry one
  only when `build` is given their item ids (ID-aware candidates, recipe
  `listwise.candidate_ids`, `infer --listwise-candidate-ids`): then the same rule puts the
  candidate's projected item embedding right after its title, counted in the budget too.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from recsys_cli.data.masking import IGNORE, Example, build_example
from recsys_cli.data.prompts import MAX_HISTORY
from recsys_cli.data.rsllm import ITEM_PREFIX, hybridize, row_of
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.tokenize import TokenizedDoc, encode_batch
from recsys_cli.errors import RecsysError

LABEL_CHARS = string.ascii_uppercase + string.ascii_lowercase  # label j is " " + LABEL_CHARS[j]
MAX_K = len(LABEL_CHARS)
TITLE_TOKENS = 20  # a title is cut to its first 20 tokens (K = 20 then fits 512 with any titles)
HISTORY_ITEMS = MAX_HISTORY  # the most recent items shown, like the other prompts
HIST_SEP, CAND_SEP, EMPTY_HISTORY = ";", "\n", " nothing yet"


@dataclass(frozen=True)
class ListwiseTemplate:
    """Our wording. `seen=False` templates are never trained on (valid/test unseen prompts)."""

    template_id: str
    seen: bool
    head: str  # before the history
    middle: str  # between the history and the candidates
    tail: str  # after the candidates: the question


TEMPLATES: tuple[ListwiseTemplate, ...] = (
    ListwiseTemplate(
        "listwise-1",
        True,
        "Items a shopper bought, oldest first:",
        ".\nCandidates:",
        "\nWhich candidate will the shopper buy next? Answer with its letter.",
    ),
    ListwiseTemplate(
        "listwise-2",
        True,
        "Purchase history:",
        ".\nOptions:",
        "\nPick the option bought next and reply with one letter.",
    ),
    ListwiseTemplate(
        "listwise-3",
        False,
        "This customer already owns:",
        ".\nChoose among:",
        "\nName the letter of the item they will order next.",
    ),
)


def templates(seen: bool) -> list[ListwiseTemplate]:
    return [t for t in TEMPLATES if t.seen == seen]


def pick_template(seen: bool, key: str) -> ListwiseTemplate:
    """The template of a prompt (seen or unseen pool), fixed by `key` (seed + prompt id)."""
    pool = templates(seen)
    return pool[random.Random(f"listwise-template:{key}").randrange(len(pool))]


def order(key: str, k: int) -> list[int]:
    """A seeded permutation of range(k): position j of the prompt shows candidate order[j]."""
    perm = list(range(k))
    random.Random(f"listwise-order:{key}").shuffle(perm)
    return perm


@dataclass
class Vocab:
    """The tokenizer's pieces of every listwise prompt, tokenized once."""

    labels: list[int]  # MAX_K distinct one-token labels
    hist_sep: list[int]
    cand_sep: list[int]
    empty: list[int]  # the history of a user with none
    parts: dict[str, tuple[list[int], list[int], list[int]]]  # template_id -> head, middle, tail

    @classmethod
    def of(cls, tokenizer: Any) -> "Vocab":
        texts = [" " + c for c in LABEL_CHARS] + [HIST_SEP, CAND_SEP, EMPTY_HISTORY]
        texts += [p for t in TEMPLATES for p in (t.head, t.middle, t.tail)]
        ids = encode_batch(tokenizer, texts)[0]
        labels = ids[:MAX_K]
        bad = [LABEL_CHARS[j] for j, t in enumerate(labels) if len(t) != 1]
        if bad or len({t[0] for t in labels}) != MAX_K:
            raise RecsysError(
                f"listwise labels: each of ' A'..' z' must be one distinct token of this tokenizer; "
                f"{bad or 'two share a token'} {'are' if bad else ''} not"
            )
        rest = ids[MAX_K:]
        parts = {t.template_id: (rest[3 + 3 * n], rest[4 + 3 * n], rest[5 + 3 * n]) for n, t in enumerate(TEMPLATES)}
        return cls([t[0] for t in labels], rest[0], rest[1], rest[2], parts)


def title_tokens(tokens: Sequence[int]) -> list[int]:
    """A title's in-context tokens (" " + title) as the listwise prompt shows them."""
    return list(tokens[:TITLE_TOKENS])


def fixed_length(vocab: Vocab, tpl: ListwiseTemplate, candidates: Sequence[Sequence[int]], soft: int = 0) -> int:
    """Tokens of everything but the history: template, labelled candidates, their `soft` ID
    tokens (`candidate_soft`), [gM] and [START]."""
    head, middle, tail = vocab.parts[tpl.template_id]
    return len(head) + len(middle) + len(tail) + sum(len(vocab.cand_sep) + 1 + len(c) for c in candidates) + soft + 2


def candidate_soft(items: Sequence[str] | None, rows: Mapping[str, int] | None) -> int:
    """Soft ID tokens the candidates add: one per candidate the recommender knows, when their ids
    are shown (`items`) and soft tokens are counted (`rows`, RSLLM); else 0."""
    if items is None or rows is None:
        return 0
    return sum(1 for i in items if row_of(ITEM_PREFIX + i, rows) > 0)


def too_long(k: int, need: int, budget: int) -> RecsysError:
    return RecsysError(
        f"listwise: K={k} candidates need {need} tokens without any history, above the available "
        f"{budget} (listwise.max_length); lower --rerank-k / listwise.k or raise listwise.max_length",
        exit_code=2,
    )


def build(
    vocab: Vocab,
    tpl: ListwiseTemplate,
    history: Sequence[tuple[str, Sequence[int]]],
    candidates: Sequence[Sequence[int]],
    budget: int,
    rows: Mapping[str, int] | None = None,
    candidate_items: Sequence[str] | None = None,
) -> TokenizedDoc:
    """The prompt's tokens (no [gM]) for `history` [(item id, title tokens)], oldest first, and
    `candidates` (title tokens, in presented order: candidate j gets label j). The oldest
    history titles are dropped until the example fits `budget`; `rows` (RSLLM) counts one soft
    token per history item the recommender knows. `candidate_items` (the candidates' item ids,
    same order): ID-aware candidates, their titles become item entities and (with `rows`) their
    soft tokens count in the budget too."""
    k = len(candidates)
    if k > MAX_K:
        raise RecsysError(f"listwise: K={k} candidates, but there are only {MAX_K} one-token labels", exit_code=2)
    if candidate_items is not None and len(candidate_items) != k:
        raise RecsysError(f"listwise: {k} candidate titles but {len(candidate_items)} candidate item ids")
    fixed = fixed_length(vocab, tpl, candidates, candidate_soft(candidate_items, rows))
    need = fixed + len(vocab.empty)
    if need > budget:
        raise too_long(k, need, budget)
    room = budget - fixed
    kept: list[tuple[str, Sequence[int]]] = []
    for item, toks in reversed(history):  # newest first, until the room is used
        soft = 1 if rows is not None and row_of(ITEM_PREFIX + item, rows) > 0 else 0
        cost = len(toks) + soft + (len(vocab.hist_sep) if kept else 0)
        if cost > room:
            break
        room -= cost
        kept.append((item, toks))
    kept.reverse()
    head, middle, tail = vocab.parts[tpl.template_id]
    ids, spans, ents = list(head), [], []
    if not kept:
        ids.extend(vocab.empty)
    for n, (item, toks) in enumerate(kept):
        if n:
            ids.extend(vocab.hist_sep)
        spans.append((len(ids), len(ids) + len(toks)))
        ents.append(ITEM_PREFIX + item)
        ids.extend(toks)
    ids.extend(middle)
    for j, toks in enumerate(candidates):
        ids.extend(vocab.cand_sep)
        ids.append(vocab.labels[j])
        spans.append((len(ids), len(ids) + len(toks)))
        ents.append("" if candidate_items is None else ITEM_PREFIX + candidate_items[j])  # "": no ID soft token
        ids.extend(toks)
    ids.extend(tail)
    return TokenizedDoc(ids, spans, [(0, len(ids))], ents)


def part_a(
    doc: TokenizedDoc,
    special: SpecialIds,
    rows: Mapping[str, int] | None = None,
    placeholder: int = 0,
    id_tokens: bool = True,
) -> tuple[list[int], list[int], list[tuple[int, int]] | None]:
    """Inference: Part A (prompt + [gM]) ids and intra ids, and the soft tokens of an RSLLM
    checkpoint (None without `rows`), laid out exactly like `example`."""
    n = len(doc.ids)
    ex = build_example(doc.ids, doc.entity_spans, [(n, n)], special.g_m, special, "prompt", None)
    if rows is not None:
        ex = hybridize(ex, doc.entity_ids, rows, placeholder, id_tokens)
    la = ex.part_a_len
    return ex.input_ids[:la], ex.intra[:la], (ex.soft if rows is not None else None)


def example(
    doc: TokenizedDoc, answer: int, k: int, vocab: Vocab, special: SpecialIds, pointer: bool = False
) -> Example:
    """Training: Part A = prompt + [gM], Part B = [START] whose one target is label `answer`;
    `allowed` restricts that position's softmax to the K labels (the listwise cross-entropy).
    `pointer` (listwise.head pointer): the K options are scored by modeling/pointer from their
    titles' spans (the last K entity spans; Part A keeps the prompt's offsets), listed in
    `Example.pointer` in the order of `allowed`."""
    n = len(doc.ids)
    label = vocab.labels[answer]
    ex = build_example([*doc.ids, label], doc.entity_spans, [(n, n + 1)], special.g_m, special, "prompt", None)
    la = ex.part_a_len
    end = la + 1  # Part B keeps [START] only: its label is the answer, [END] is not a target
    labels = [IGNORE] * la + [label]
    options = sorted(zip(vocab.labels[:k], candidate_spans(doc, k)))  # (label id, its title's span)
    return Example(
        ex.input_ids[:end],
        labels,
        ex.inter[:end],
        ex.intra[:end],
        la,
        [(n, n + 1)],
        list(doc.entity_spans),
        "listwise",
        {la: [t for t, _ in options]},
        {la: [span for _, span in options]} if pointer else None,
    )


def candidate_spans(doc: TokenizedDoc, k: int) -> list[tuple[int, int]]:
    """The titles of the K candidates (presented order) in `build`'s prompt: its last K entity spans."""
    return [tuple(s) for s in doc.entity_spans[len(doc.entity_spans) - k :]]
