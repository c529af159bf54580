"""Training data for `pretrain`: corpus documents masked at entity / sentence / document level
mixed with the training prompts of the five families (ratios from the recipe), and the GLM
collator. Example i of a run is a pure function of (seed, i), so `--resume` only needs the step.

    python -c "from recsys_cli.training.data import load_sources; help(load_sources)"
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data import masking, tokenize
from recsys_cli.data.masking import Example
from recsys_cli.data.special_tokens import SpecialIds
from recsys_cli.data.tokenize import TokenizedDoc
from recsys_cli.data.trie import EntityTrie
from recsys_cli.errors import RecsysError


@dataclass
class Sources:
    docs: list[TokenizedDoc]  # corpus documents
    prompts: dict[str, list[tuple[TokenizedDoc, TokenizedDoc]]]  # family -> (source, target) of train & seen prompts
    valid: list[tuple[TokenizedDoc, TokenizedDoc]] = field(default_factory=list)  # valid prompts for the val loss
    trie: EntityTrie | None = None  # the entity pool: Part B intra ids (data/intra.py)

    @property
    def n_train(self) -> int:
        return len(self.docs) + sum(len(v) for v in self.prompts.values())


def _pairs(df, tokenizer) -> list[tuple[TokenizedDoc, TokenizedDoc]]:
    src = tokenize.tokenize_documents(df["source"].to_list(), df["source_entities"].to_list(), tokenizer)
    tgt = [tokenize.tokenize_target(t, e, tokenizer) for t, e in zip(df["target"].to_list(), df["target_entities"].to_list())]
    return list(zip(src, tgt))


def load_sources(data_dir, tokenizer, eval_prompts: int = 64, need_corpus: bool = True) -> Sources:
    """Tokenize corpus.parquet and the prompts (train: split=="train" and seen; valid: split=="valid"),
    and load the entity trie that numbers Part B intra positions (data/entities.pool_trie)."""
    import polars as pl

    from recsys_cli.data.entities import pool_trie

    corpus = read_artifact(data_dir, schemas.CORPUS, ["doc_id", "text", "entities"]).sort("doc_id")
    prompts = read_artifact(data_dir, schemas.PROMPTS).sort("prompt_id")
    docs = tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tokenizer) if need_corpus else []
    train = prompts.filter((pl.col("split") == "train") & pl.col("seen"))
    by_family = {}
    for fam in schemas.FAMILIES:
        part = train.filter(pl.col("family") == fam)
        if part.height:
            by_family[fam] = _pairs(part, tokenizer)
    valid = prompts.filter(pl.col("split") == "valid")
    if valid.height > eval_prompts:  # an even, deterministic spread over families and users
        step = valid.height / eval_prompts
        valid = valid[[int(i * step) for i in range(eval_prompts)]]
    if not docs and not by_family:
        raise RecsysError(f"{data_dir}: no training data (empty corpus.parquet and no train prompts)", exit_code=2)
    return Sources(docs, by_family, _pairs(valid, tokenizer) if valid.height else [], pool_trie(data_dir, tokenizer))


def slice_doc(doc: TokenizedDoc, start: int, end: int) -> TokenizedDoc:
    """Tokens [start, end) of `doc`; entities cut by the window are dropped, sentences clipped."""
    ents = [(s - start, e - start) for s, e in doc.entity_spans if s >= start and e <= end]
    sents = [(max(s, start) - start, min(e, end) - start) for s, e in doc.sentence_spans if e > start and s < end]
    return TokenizedDoc(doc.ids[start:end], ents, sents)


class ExampleStream:
    """Deterministic stream of GLM examples: `example(i)` depends only on (seed, i)."""

    def __init__(self, sources: Sources, recipe, special: SpecialIds):
        self.src = sources
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
            raise RecsysError("no training examples: the corpus is empty and no family has train prompts with weight > 0")

    def example(self, i: int) -> Example:
        rng = random.Random(f"{self.r.train.seed}:{i}")
        if rng.random() < self.corpus_ratio:
            return self._doc_example(self.src.docs[rng.randrange(len(self.src.docs))], rng)
        fam = rng.choices(self.families, weights=self.family_w)[0]
        pool = self.src.prompts[fam]
        return self.prompt(*pool[rng.randrange(len(pool))])

    def _doc_example(self, doc: TokenizedDoc, rng: random.Random) -> Example:
        level = masking.sample_level(rng, self.cfg)
        n = len(doc.ids)
        window = min(n, (self.max_length - 2) // 2 if level == "document" else int(self.max_length / 1.4))
        while True:
            starts = [s for s, _ in doc.sentence_spans if s <= n - window] or [0]
            st = starts[rng.randrange(len(starts))]
            ex = masking.mask_document(slice_doc(doc, st, st + window), level, rng, self.cfg, self.special, self.src.trie)
            if len(ex) <= self.max_length or window <= 8:
                return ex if len(ex) <= self.max_length else _truncate(ex, self.max_length)
            window = int(window * 0.8)

    def prompt(self, source: TokenizedDoc, target: TokenizedDoc) -> Example:
        """A prompt as Part A (+[gM]) and its answer as Part B, cut to max_length (keeping the
        end of the prompt, where the question is)."""
        max_len = self.max_length
        if len(target.ids) + 1 > max_len // 2:
            target = slice_doc(target, 0, max_len // 2 - 1)
        keep = max_len - (len(target.ids) + 2)
        if len(source.ids) > keep:
            source = slice_doc(source, len(source.ids) - keep, len(source.ids))
        return masking.prompt_example(source, target, self.special, self.src.trie)


def _truncate(ex: Example, n: int) -> Example:
    """Last resort for pathological documents: cut the tail (positions stay valid)."""
    return Example(ex.input_ids[:n], ex.labels[:n], ex.inter[:n], ex.intra[:n], min(ex.part_a_len, n), ex.spans, ex.entity_spans, ex.level)


def collate(examples: list[Example], pad_id: int, dtype, pad_multiple: int = 8) -> dict:
    """Right-padded tensors + the float 4D GLM mask.
    -> input_ids/labels/inter/intra [B, L] long, attn_mask_4d [B, 1, L, L], lengths [B]."""
    import torch

    from recsys_cli.modeling.mask import build_attention_mask

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
    return {"input_ids": ids, "labels": labels, "inter": inter, "intra": intra, "attn_mask_4d": mask, "lengths": torch.tensor(lengths)}
