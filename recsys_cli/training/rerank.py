"""Rerank training prompts: training positions whose candidates are a retriever's own top-K,
so the model learns to tell hard negatives apart (docs/rerank.md).

    recsys baseline sasrec --data R --split train --top-k 50 --out R/predictions/train/sasrec.parquet
    recsys pretrain --data R --config recipes/pretrain/quality-cpu.yaml \\
        --set rerank.candidates=R/predictions/train/sasrec.parquet --set rerank.weight=0.3

A rerank example is a training prompt (sequential or direct) with its answer, the target's
title, in Part B. Its loss is the one `infer --candidates-from` ranks with: log P(target) under
decoding restricted to the K candidates' titles (the softmax at each answer position is taken
over the tokens that continue some candidate, inference/candidates.py). Positions where only
one candidate remains cost nothing and carry no label; so the loss sits on the few tokens that
decide between the target and the retriever's other top items. The retriever's file must be
made on the same data (provenance) from train prompts only: a training position's candidates
come from its own history, never from the valid or test targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cli.data.masking import IGNORE, Example
from recsys_cli.data.tokenize import TokenizedDoc
from recsys_cli.data.trie import ROOT, EntityTrie
from recsys_cli.errors import InputError, RecsysError


@dataclass
class RerankPrompt:
    source: TokenizedDoc
    target: TokenizedDoc  # the target's title, as an answer
    candidates: list[list[int]]  # in-context title tokens of the K candidates (target included)
    user_id: str | None = None  # for the hybrid (RSLLM) user history
    item_id: str | None = None  # the target item


def load_rerank_prompts(data_dir: Path, path: Path, k: int, tokenizer: Any) -> list[RerankPrompt]:
    """Train prompts (sequential, direct) that the retriever ranked, with its top-k (the target
    replaces the k-th candidate when the retriever missed it), tokenized."""
    import polars as pl

    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.artifacts.predictions import read_predictions
    from recsys_cli.data import tokenize
    from recsys_cli.data.templates import ITEM, answer_types

    path = Path(path)
    if not path.is_file():
        raise RecsysError(
            f"{path}: rerank candidates file not found (write it with `recsys baseline sasrec --split train`)",
            exit_code=2,
        )
    preds = read_predictions(path, data_dir).select("prompt_id", "ranked")
    prompts = read_artifact(data_dir, schemas.PROMPTS)
    item = answer_types(prompts["template_id"], str(data_dir / schemas.PROMPTS)) == ITEM
    prompts = prompts.filter((pl.col("split") == "train") & pl.col("seen") & item)
    joined = prompts.join(preds, on="prompt_id", how="inner").sort("prompt_id")
    if joined.height == 0:
        raise InputError.at(
            path,
            None,
            f"ranked lists for train prompts of {data_dir / schemas.PROMPTS}; "
            "none of its prompt ids are train sequential/direct prompts",
        )
    items = read_artifact(data_dir, schemas.ITEMS, ["item_id", "title"])
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    out_rows = []
    for row in joined.iter_rows(named=True):
        cands = [c for c in (row["ranked"] or []) if c in titles][:k]
        if row["item_id"] not in cands:
            cands = cands[: k - 1] + [row["item_id"]]
        out_rows.append((row, cands))
    srcs = tokenize.tokenize_documents(
        [r["source"] for r, _ in out_rows], [r["source_entities"] for r, _ in out_rows], tokenizer
    )
    needed = sorted({c for _, cs in out_rows for c in cs})
    toks = dict(zip(needed, tokenize.encode_batch(tokenizer, [" " + titles[c] for c in needed])[0]))
    result = []
    for src, (row, cands) in zip(srcs, out_rows):
        tgt = tokenize.tokenize_target(row["target"], row["target_entities"], tokenizer)
        result.append(RerankPrompt(src, tgt, [list(toks[c]) for c in cands], row["user_id"], row["item_id"]))
    return result


def restrict(ex: Example, candidates: list[list[int]], end_id: int) -> Example:
    """Annotate the answer of `ex` (Part B = [START] title) with the candidate-restricted
    softmax: position -> allowed next tokens. Positions with one allowed token lose their label."""
    trie = EntityTrie((c, i) for i, c in enumerate(candidates))
    a = ex.part_a_len
    labels = list(ex.labels)
    allowed: dict[int, list[int]] = {}
    node = ROOT
    for pos in range(a, len(ex.input_ids)):
        if pos > a:
            node = trie.step(node, ex.input_ids[pos])
        if node < 0:  # the answer left the candidates (truncated title): no more restricted labels
            labels[pos:] = [IGNORE] * (len(labels) - pos)
            break
        options = trie.children(node) + ([end_id] if trie.is_terminal(node) else [])
        if labels[pos] == IGNORE or len(options) < 2 or labels[pos] not in options:
            labels[pos] = IGNORE
            continue
        allowed[pos] = sorted(options)
    return Example(
        ex.input_ids, labels, ex.inter, ex.intra, ex.part_a_len, ex.spans, ex.entity_spans, "rerank", allowed
    )
