"""Training data for `pretrain`: corpus documents masked at entity / sentence / document level
mixed with the training prompts of the five families (ratios from the recipe), and the GLM
collator. Example i of a run is a pure function of (seed, i), so `--resume` only needs the step.

    python -c "from recsys_cli.training.data import load_sources; help(load_sources)"
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import torch

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data import masking, tokenize
from recsys_cli.data.entities import pool_trie
from recsys_cli.data.masking import Example
from recsys_cli.data.ratings import star_restriction, star_token_ids
from recsys_cli.data.rsllm import fit_source, hybrid_document, hybridize, prompt_history
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.tokenize import TokenizedDoc
from recsys_cli.data.trie import EntityTrie
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.mask import build_attention_mask
from recsys_cli.training.listwise import listwise_example
from recsys_cli.training.packing import allowed_tensors, shifted
from recsys_cli.training.rerank import restrict

PromptKey = tuple[str, "str | None", str]  # (user_id, target item_id, split): what a hybrid prompt's history needs


@dataclass
class Sources:
    docs: list[TokenizedDoc]  # corpus documents
    prompts: dict[str, list[tuple[TokenizedDoc, TokenizedDoc]]]  # family -> (source, target) of train & seen prompts
    valid: list[tuple[TokenizedDoc, TokenizedDoc]] = field(default_factory=list)  # valid prompts for the val loss
    trie: EntityTrie | None = None  # the entity pool: Part B intra ids (data/positions.py)
    rerank: list = field(default_factory=list)  # training/rerank.RerankPrompt: retriever top-K of train prompts
    listwise: Any = None  # training/listwise.ListwiseData: retriever top-K of train positions, listwise prompts
    keys: dict[str, list[PromptKey]] = field(default_factory=dict)  # family -> key of each prompt (same order)
    valid_keys: list[PromptKey] = field(default_factory=list)
    sequences: dict[str, list[str]] = field(default_factory=dict)  # user_id -> items (sequences.parquet)
    star_ids: list[int] | None = None  # the stars 1..5 at the answer position (inference/rating.py)

    @property
    def n_train(self) -> int:
        return len(self.docs) + sum(len(v) for v in self.prompts.values())


def _keys(df) -> list[PromptKey]:
    return list(zip(df["user_id"].to_list(), df["item_id"].to_list(), df["split"].to_list()))


def _pairs(df, tokenizer) -> list[tuple[TokenizedDoc, TokenizedDoc]]:
    src = tokenize.tokenize_documents(df["source"].to_list(), df["source_entities"].to_list(), tokenizer)
    tgt = [
        tokenize.tokenize_target(t, e, tokenizer)
        for t, e in zip(df["target"].to_list(), df["target_entities"].to_list())
    ]
    return list(zip(src, tgt))


def load_sources(data_dir, tokenizer, eval_prompts: int = 64, need_corpus: bool = True) -> Sources:
    """Tokenize corpus.parquet and the prompts (train: split=="train" and seen; valid: split=="valid"),
    and load the entity trie that numbers Part B intra positions (data/entities.pool_trie)."""

    corpus = read_artifact(data_dir, schemas.CORPUS, ["doc_id", "text", "entities"]).sort("doc_id")
    prompts = read_artifact(data_dir, schemas.PROMPTS).sort("prompt_id")
    docs = (
        tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tokenizer)
        if need_corpus
        else []
    )
    train = prompts.filter((pl.col("split") == "train") & pl.col("seen"))
    by_family, keys = {}, {}
    for fam in schemas.FAMILIES:
        part = train.filter(pl.col("family") == fam)
        if part.height:
            by_family[fam], keys[fam] = _pairs(part, tokenizer), _keys(part)
    valid = prompts.filter(pl.col("split") == "valid")
    if valid.height > eval_prompts:  # an even, deterministic spread over families and users
        step = valid.height / eval_prompts
        valid = valid[[int(i * step) for i in range(eval_prompts)]]
    if not docs and not by_family:
        raise RecsysError(f"{data_dir}: no training data (empty corpus.parquet and no train prompts)", exit_code=2)
    seqs = read_artifact(data_dir, schemas.SEQUENCES, ["user_id", "items"])
    return Sources(
        docs,
        by_family,
        _pairs(valid, tokenizer) if valid.height else [],
        pool_trie(data_dir, tokenizer),
        keys=keys,
        valid_keys=_keys(valid),
        sequences=dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list())),
        star_ids=star_token_ids(tokenizer),
    )


@dataclass
class HybridSpec:
    """What ExampleStream needs for RSLLM stage-2 examples (docs/rsllm.md)."""

    rows: dict[str, int]  # item id -> recommender table row (data/rsllm.item_rows)
    placeholder: int  # input id at soft positions (the tokenizer's pad id; the model overwrites it)
    id_tokens: bool = True  # False: the "without ID tokens" ablation (same examples, no soft tokens)


class ExampleStream:
    """Deterministic stream of GLM examples: `example(i)` depends only on (seed, i)."""

    def __init__(self, sources: Sources, recipe, special: SpecialIds, hybrid: HybridSpec | None = None):
        self.src = sources
        self.hybrid = hybrid  # None: text only; else stage-2 examples (example(i, stage=2)) are HybridExamples
        self.r = recipe
        self.special = special
        self.cfg = recipe.mask
        self.max_length = recipe.train.max_length
        weights = recipe.train.family_weights
        fams = [f for f in schemas.FAMILIES if sources.prompts.get(f) and weights.get(f, 0) > 0]
        self.families = fams
        self.family_w = [float(weights[f]) for f in fams]
        self.corpus_ratio = recipe.train.corpus_ratio if sources.docs else 0.0
        if not fams:
            self.corpus_ratio = 1.0 if sources.docs else 0.0
        if not sources.docs and not fams:
            raise RecsysError(
                "no training examples: the corpus is empty and no family has train prompts with weight > 0"
            )
        self.rerank_weight = recipe.rerank.weight if sources.rerank else 0.0
        self.listwise_weight = recipe.listwise.weight if sources.listwise is not None else 0.0
        self.star_ids = sources.star_ids if recipe.train.rating_stars else None  # rating answers: CE over the 5 stars

    def example(self, i: int, stage: int = 1) -> Example:
        """Example i; `stage` 2 (with a HybridSpec) builds the same draw as a Text-ID hybrid example."""
        rng = random.Random(f"{self.r.train.seed}:{i}")
        hyb = self.hybrid is not None and stage == 2
        side = self.rerank_weight + self.listwise_weight
        u = rng.random() if side > 0 else 1.0  # no draw at all when both are off
        if u < self.rerank_weight:
            rp = self.src.rerank[rng.randrange(len(self.src.rerank))]
            if hyb:
                return self.prompt(
                    rp.source, rp.target, (rp.user_id, rp.item_id, "train"), rp.candidates, family="sequential"
                )  # rerank prompts: sequential / direct, with a history
            return restrict(self.prompt(rp.source, rp.target), rp.candidates, self.special.end)
        if u < side:
            hybrid = self.hybrid if hyb else None
            return listwise_example(self.src.listwise, rng, self.special, hybrid, self.src.sequences)
        if rng.random() < self.corpus_ratio:
            return self._doc_example(self.src.docs[rng.randrange(len(self.src.docs))], rng, hyb)
        fam = rng.choices(self.families, weights=self.family_w)[0]
        pool = self.src.prompts[fam]
        j = rng.randrange(len(pool))
        keys = self.src.keys.get(fam)
        return self.prompt(*pool[j], keys[j] if hyb and keys else None, family=fam) if hyb else self.prompt(*pool[j])

    def _doc_example(self, doc: TokenizedDoc, rng: random.Random, hyb: bool = False) -> Example:
        level = masking.sample_level(rng, self.cfg)
        n = len(doc.ids)
        window = min(n, (self.max_length - 2) // 2 if level == "document" else int(self.max_length / 1.4))
        while True:
            starts = [s for s, _ in doc.sentence_spans if s <= n - window] or [0]
            st = starts[rng.randrange(len(starts))]
            part = doc.slice(st, st + window)
            if hyb:  # the window shrinks until text + planned soft tokens fit: never truncated
                h = self.hybrid
                ex = hybrid_document(
                    part, level, rng, self.cfg, self.special, self.src.trie, h.rows, h.placeholder, h.id_tokens
                )
                if ex.budget_len <= self.max_length or window <= 1:
                    return ex
                window = min(window - 1, int(window * 0.8))
                continue
            ex = masking.mask_document(part, level, rng, self.cfg, self.special, self.src.trie)
            if len(ex) <= self.max_length or window <= 8:
                return ex if len(ex) <= self.max_length else _truncate(ex, self.max_length)
            window = int(window * 0.8)

    def prompt(
        self,
        source: TokenizedDoc,
        target: TokenizedDoc,
        key: PromptKey | None = None,
        candidates: list[list[int]] | None = None,
        family: str | None = None,
    ) -> Example:
        """A prompt as Part A (+[gM]) and its answer as Part B, cut to max_length (keeping the
        end of the prompt, where the question is). With a key (user, item, split) and a
        HybridSpec: the hybrid example (soft tokens counted in the budget; the user's history for
        the user loss when `family` carries one, data/rsllm.prompt_history); `candidates` (rerank)
        restricts the answer's softmax. A one-star answer ("4") takes its answer position's softmax
        over the five star tokens (the recipe's train.rating_stars; inference/rating.py reads the
        same distribution)."""
        max_len = self.max_length
        if len(target.ids) + 1 > max_len // 2:
            target = target.slice(0, max_len // 2 - 1)
        keep = max_len - (len(target.ids) + 2)
        if key is None or self.hybrid is None:
            if len(source.ids) > keep:
                source = source.slice(len(source.ids) - keep, len(source.ids))
            return self._stars(masking.prompt_example(source, target, self.special, self.src.trie), target)
        h = self.hybrid
        user, item, split = key
        hist = prompt_history(self.src.sequences.get(user, []), family, split, item, source.entity_ids, h.rows)
        source = fit_source(source, keep, h.rows)
        ex = self._stars(masking.prompt_example(source, target, self.special, self.src.trie), target)
        if candidates is not None:
            ex = restrict(ex, candidates, self.special.end)
        return hybridize(ex, [*source.entity_ids, *target.entity_ids], h.rows, h.placeholder, h.id_tokens, hist)

    def _stars(self, ex: Example, target: TokenizedDoc) -> Example:
        """`ex` with its answer position ([START], index part_a_len) restricted to the star tokens
        when the answer is one star; other answers unchanged."""
        stars = star_restriction(target.ids, self.star_ids)
        if stars is not None:
            ex.allowed = {ex.part_a_len: stars}
        return ex

    def valid_examples(self, stage: int = 1) -> list[Example]:
        """The valid prompts as examples (hybrid ones in stage 2)."""
        hyb = self.hybrid is not None and stage == 2
        keys = (
            self.src.valid_keys
            if hyb and len(self.src.valid_keys) == len(self.src.valid)
            else [None] * len(self.src.valid)
        )
        return [self.prompt(s, t, k) for (s, t), k in zip(self.src.valid, keys)]


def _truncate(ex: Example, n: int) -> Example:
    """Last resort for pathological documents: cut the tail (positions stay valid)."""
    return Example(
        ex.input_ids[:n],
        ex.labels[:n],
        ex.inter[:n],
        ex.intra[:n],
        min(ex.part_a_len, n),
        ex.spans,
        ex.entity_spans,
        ex.level,
    )


def collate(examples: list[Example], pad_id: int, dtype, pad_multiple: int = 8) -> dict:
    """Right-padded tensors + the float 4D GLM mask.
    -> input_ids/labels/inter/intra [B, L] long, attn_mask_4d [B, 1, L, L], lengths [B]."""

    lengths = [len(e) for e in examples]
    L = max(lengths)
    L = ((L + pad_multiple - 1) // pad_multiple) * pad_multiple
    B = len(examples)
    ids = torch.full((B, L), pad_id, dtype=torch.long)  # [B, L]
    labels = torch.full((B, L), -100, dtype=torch.long)  # [B, L]
    inter = torch.zeros((B, L), dtype=torch.long)  # [B, L]
    intra = torch.zeros((B, L), dtype=torch.long)  # [B, L]
    for b, e in enumerate(examples):
        n = len(e)
        ids[b, :n] = torch.tensor(e.input_ids)
        labels[b, :n] = torch.tensor(e.labels)
        inter[b, :n] = torch.tensor(e.inter)
        intra[b, :n] = torch.tensor(e.intra)
        inter[b, n:] = (e.inter[-1] + 1) if n else 0
    mask = build_attention_mask([e.part_a_len for e in examples], lengths, L, dtype)  # [B, 1, L, L]
    out = {
        "input_ids": ids,
        "labels": labels,
        "inter": inter,
        "intra": intra,
        "attn_mask_4d": mask,
        "lengths": torch.tensor(lengths),
    }
    rows = [
        (b, pos, opts, shifted(e, pos, 0))
        for b, e in enumerate(examples)
        for pos, opts in sorted((e.allowed or {}).items())
    ]
    if rows:  # rerank and listwise prompts: the softmax of these positions is over `allowed_ids` only
        out.update(allowed_tensors(rows))  # allowed [R, 2] (row, position), allowed_ids [R, A][, allowed_spans]
    return out
