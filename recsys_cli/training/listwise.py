"""Listwise training examples (recipe section `listwise:`, docs/rerank.md "Listwise scoring"):
for a TRAINING position, the retriever's own top-K for that position, shuffled, in the
listwise prompt of data/listwise.py; the loss is the cross-entropy over the K label tokens at
`[START]` (the distribution `infer --item-scoring listwise` ranks with).

    recsys baseline sasrec --data R --split train --top-k 50 --out R/predictions/train/sasrec.parquet
    recsys pretrain --data R --config recipes/pretrain/quality-cpu.yaml \
        --set listwise.candidates=R/predictions/train/sasrec.parquet --set listwise.weight=0.3

Leakage rules (data/split.py): only split == "train" prompts are used, each target must sit at
a training position of its user's sequence and its history is `split.history(.., "train", ..)`;
a candidates file with provenance must answer split train (`baseline sasrec --split train`
trains on items[:-3] only); the user's valid and test target items are dropped from the
candidates unless they are also in the training part. When the retriever missed the target,
it replaces the K-th candidate; the example's shuffle puts it at a random place.

ID-aware candidates (`listwise.candidate_ids: true`, RSLLM stage 2): each candidate title also
carries its soft ID token (data/listwise.build), so the projector and LoRA learn to read
SASRec's view of the candidates; at load the K candidates are checked to fit with one soft
token each (an upper bound: the recommender may not know every item).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cli.data import listwise as lw
from recsys_cli.data import split as loo
from recsys_cli.data.masking import Example
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.errors import InputError, RecsysError


@dataclass
class ListwiseCase:
    prompt_id: str
    user_id: str
    item_id: str  # the target: the item at a training position
    history: list[str]  # the items before it (train rule), the last HISTORY_ITEMS
    candidates: list[str]  # the retriever's top-K for the position, target included, retriever order


@dataclass
class ListwiseData:
    cases: list[ListwiseCase]
    titles: dict[str, list[int]]  # item id -> title tokens as the listwise prompt shows them
    vocab: lw.Vocab
    budget: int  # listwise.max_length
    candidate_ids: bool = False  # listwise.candidate_ids: RSLLM soft tokens after candidate titles too
    pointer: bool = False  # listwise.head pointer: options scored by modeling/pointer, not label logits


def held_out(seq: list[str]) -> set[str]:
    """The user's valid and test target items that are not also in the training part."""
    n = len(seq)
    if n < loo.MIN_ITEMS:
        return set(seq)
    return {seq[loo.target_position(n, s)] for s in ("valid", "test")} - set(loo.train_items(seq))


def _train_prompts(data_dir: Path, path: Path):
    import polars as pl

    from recsys_cli.artifacts import provenance, schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.artifacts.predictions import read_predictions
    from recsys_cli.data.templates import ITEM, answer_types

    if not path.is_file():
        raise RecsysError(
            f"{path}: listwise candidates file not found (write it with `recsys baseline sasrec --split train`)",
            exit_code=2,
        )
    preds = read_predictions(path, data_dir).select("prompt_id", "ranked")
    got = ((provenance.read(path) or {}).get("settings") or {}).get("split")
    if got is not None and got != "train":
        raise InputError.at(
            path,
            None,
            f"ranked lists of the train split (`recsys baseline sasrec --split train`); "
            f"this file answers split {got!r}",
        )
    columns = ["prompt_id", "template_id", "split", "family", "seen", "user_id", "item_id", "target"]
    prompts = read_artifact(data_dir, schemas.PROMPTS, columns)
    item = answer_types(prompts["template_id"], str(data_dir / schemas.PROMPTS)) == ITEM
    train = prompts.filter((pl.col("split") == "train") & pl.col("seen") & item)
    joined = train.join(preds, on="prompt_id", how="inner").sort("prompt_id")
    if joined.height == 0:
        raise InputError.at(
            path,
            None,
            f"ranked lists for train prompts of {data_dir / schemas.PROMPTS}; "
            "none of its prompt ids are train sequential/direct prompts",
        )
    return joined


def case_of(row: dict, seq: list[str], k: int, known: set[str]) -> ListwiseCase | None:
    """A training position's case, or None when the target is not at a training position."""
    target = row["item_id"]
    if target not in seq or seq.index(target) not in loo.train_positions(len(seq)):
        return None
    banned = held_out(seq)
    cands: list[str] = []
    for c in row["ranked"] or []:
        if c in known and c not in banned and c not in cands:
            cands.append(c)
            if len(cands) == k:
                break
    if target not in cands:
        cands = cands[: k - 1] + [target]
    if len(cands) < 2:
        return None
    hist = loo.history(seq, "train", target)[-lw.HISTORY_ITEMS :]
    return ListwiseCase(row["prompt_id"], row["user_id"], target, hist, cands)


def load_listwise(
    data_dir: Path,
    path: Path,
    k: int,
    tokenizer: Any,
    budget: int,
    sequences: dict[str, list[str]],
    candidate_ids: bool = False,
    head: str = "labels",
) -> ListwiseData:
    """Cases of the train prompts the retriever ranked, their titles tokenized, each checked to
    fit `budget` with its K candidates (and their soft tokens with `candidate_ids`; one line
    naming K and the lengths otherwise)."""
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.data.tokenize import encode_batch

    path = Path(path)
    joined = _train_prompts(Path(data_dir), path)
    items = read_artifact(data_dir, schemas.ITEMS, ["item_id", "title"])
    names = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    cases = [
        c
        for c in (
            case_of(r, list(sequences.get(r["user_id"]) or []), k, names.keys()) for r in joined.iter_rows(named=True)
        )
        if c is not None
    ]
    if not cases:
        raise InputError.at(
            path, None, "ranked lists for train prompts whose targets sit at training positions; found none"
        )
    needed = sorted({i for c in cases for i in (*c.history, *c.candidates)})
    toks = encode_batch(tokenizer, [" " + (names.get(i) or i) for i in needed])[0]
    data = ListwiseData(
        cases,
        {i: lw.title_tokens(t) for i, t in zip(needed, toks)},
        lw.Vocab.of(tokenizer),
        budget,
        candidate_ids,
        head == "pointer",
    )
    for c in cases:
        titles, soft = [data.titles[i] for i in c.candidates], len(c.candidates) if candidate_ids else 0
        need = max(lw.fixed_length(data.vocab, t, titles, soft) for t in lw.templates(True)) + len(data.vocab.empty)
        if need > budget:
            raise lw.too_long(len(c.candidates), need, budget)
    return data


def listwise_example(
    data: ListwiseData,
    rng: random.Random,
    special: SpecialIds,
    hybrid=None,
    sequences: dict[str, list[str]] | None = None,
) -> Example:
    """One listwise example drawn with `rng`: a case, a shuffle of its candidates, a seen
    template. `hybrid` (training/data.HybridSpec, RSLLM stage 2): soft tokens after the history
    titles (and after the candidate titles with data.candidate_ids), and the user's history
    rows for the user loss. Same draws with and without `hybrid` / candidate ids."""
    case = data.cases[rng.randrange(len(data.cases))]
    shown = list(case.candidates)
    rng.shuffle(shown)
    tpl = rng.choice(lw.templates(True))
    rows = hybrid.rows if hybrid is not None and hybrid.id_tokens else None
    cand_items = shown if hybrid is not None and data.candidate_ids else None  # id_tokens=False: entities, no tokens
    doc = lw.build(
        data.vocab,
        tpl,
        [(i, data.titles[i]) for i in case.history],
        [data.titles[c] for c in shown],
        data.budget,
        rows,
        cand_items,
    )
    ex = lw.example(doc, shown.index(case.item_id), len(shown), data.vocab, special, data.pointer)
    if hybrid is None:
        return ex
    from recsys_cli.data.rsllm import history_rows, hybridize

    hist = history_rows((sequences or {}).get(case.user_id, []), "train", case.item_id, hybrid.rows)
    return hybridize(ex, doc.entity_ids, hybrid.rows, hybrid.placeholder, hybrid.id_tokens, hist)
