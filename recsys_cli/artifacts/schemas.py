"""The artifact contract: every file name and column the stages exchange. The ONLY place
they are defined (see docs/ARCHITECTURE.md, "Artifacts"). Ids are strings everywhere.
"""

from __future__ import annotations

import polars as pl

# --- file names -------------------------------------------------------------------------
ITEMS = "items.parquet"
USERS = "users.parquet"
INTERACTIONS = "interactions.parquet"
SEQUENCES = "sequences.parquet"
CORPUS = "corpus.parquet"
PROMPTS = "prompts.parquet"
ENTITIES = "entities.parquet"
ENTITIES_MINHASH = "entities.minhash.parquet"
MANIFEST = "manifest.json"
ENTITIES_MANIFEST = "entities.manifest.json"
NEAR_DUPLICATES = "entities.near_duplicates.parquet"
PREDICTIONS = "predictions"  # not a file name: predictions files are named by --out (artifacts/predictions.py)

# checkpoint directory (written by `pretrain`, read by `infer`)
CKPT_ADAPTER = "adapter"  # peft adapter dir: PeftModel.from_pretrained(base, C/adapter)
CKPT_TOKENIZER = "tokenizer"  # tokenizer with the special tokens
CKPT_EXTRAS = "extras.safetensors"  # intra-position table (+ anything else beside the adapter)
CKPT_CONFIG = "recsys_checkpoint.json"  # base model, fingerprint, positions mode, special ids
CKPT_METRICS = "metrics.jsonl"
CKPT_STATE = "train_state"  # optimizer/scheduler/rng state for --resume
PREDICTIONS_DIR = "predictions"  # C/predictions/<split>.parquet
PREDICTIONS_FILE = "{split}.parquet"  # infer default output inside PREDICTIONS_DIR
PREDICTIONS_UNCONSTRAINED_FILE = "{split}.unconstrained.parquet"  # infer --unconstrained (grounded free text)
BASELINE_MODELS_DIR = (
    "baselines"  # R/baselines/<name>.safetensors: trained baseline state (artifacts/item_embeddings.py)
)

# --- enumerations -----------------------------------------------------------------------
FAMILIES = ("rating", "sequential", "explanation", "review", "direct")
SPLITS = ("train", "valid", "test")
ENTITY_KINDS = ("item", "category", "brand", "feature")
RANKING_FAMILIES = ("sequential", "direct")

# --- schemas ----------------------------------------------------------------------------
ENTITY_SPAN = pl.Struct({"start": pl.Int32, "end": pl.Int32, "kind": pl.Utf8, "entity_id": pl.Utf8})

Schema = dict[str, "pl.DataType | type[pl.DataType]"]  # column -> polars type
ITEMS_SCHEMA: Schema = {
    "item_id": pl.Utf8,
    "title": pl.Utf8,
    "categories": pl.List(pl.Utf8),
    "brand": pl.Utf8,
    "price": pl.Float64,
    "text": pl.Utf8,
}
USERS_SCHEMA: Schema = {"user_id": pl.Utf8, "text": pl.Utf8}
INTERACTIONS_SCHEMA: Schema = {
    "user_id": pl.Utf8,
    "item_id": pl.Utf8,
    "timestamp": pl.Int64,  # unix seconds, nullable
    "rating": pl.Float64,  # nullable
    "review": pl.Utf8,
    "summary": pl.Utf8,
    "explanation": pl.Utf8,
    "feature": pl.Utf8,  # nullable
}
SEQUENCES_SCHEMA: Schema = {"user_id": pl.Utf8, "items": pl.List(pl.Utf8)}
CORPUS_SCHEMA: Schema = {
    "doc_id": pl.Utf8,
    "user_id": pl.Utf8,
    "period": pl.Utf8,  # long | medium | short | profile
    "text": pl.Utf8,
    "entities": pl.List(ENTITY_SPAN),  # character offsets into text, end exclusive
}
PROMPTS_SCHEMA: Schema = {
    "prompt_id": pl.Utf8,
    "family": pl.Utf8,
    "template_id": pl.Utf8,
    "seen": pl.Boolean,
    "split": pl.Utf8,
    "user_id": pl.Utf8,
    "item_id": pl.Utf8,
    "source": pl.Utf8,
    "target": pl.Utf8,
    "candidates": pl.List(pl.Utf8),  # nullable; direct prompts
    "source_entities": pl.List(ENTITY_SPAN),  # entity char spans inside `source`
    "target_entities": pl.List(ENTITY_SPAN),  # entity char spans inside `target`
}
ENTITIES_SCHEMA: Schema = {
    "entity_id": pl.Utf8,
    "kind": pl.Utf8,
    "text": pl.Utf8,
    "token_ids": pl.List(pl.Int64),  # in-context form (as the entity appears after a space)
    "item_ids": pl.List(pl.Utf8),  # items this entity names (title) or describes (category/brand)
}
ENTITIES_MINHASH_SCHEMA: Schema = {  # written by `build-entities`: one row per item title
    "entity_id": pl.Utf8,
    "item_id": pl.Utf8,
    "text": pl.Utf8,
    "signature": pl.List(pl.UInt64),  # datasketch MinHash hashvalues (char 3-grams, seed 1)
}
NEAR_DUPLICATES_SCHEMA: Schema = {  # written by `build-entities`: one row per member of a cluster
    "cluster": pl.Int64,
    "entity_id": pl.Utf8,
    "item_id": pl.Utf8,
    "text": pl.Utf8,
}
PREDICTIONS_SCHEMA: Schema = {
    "prompt_id": pl.Utf8,
    "family": pl.Utf8,
    "template_id": pl.Utf8,
    "seen": pl.Boolean,
    "output": pl.Utf8,  # the answer as readable text: the top item's title, yes/no, "3.87", a sentence
    "ranked": pl.List(pl.Utf8),  # item ids best first (ranking prompts); null otherwise; the only id column
    "scores": pl.List(pl.Float64),  # one per ranked item (higher is better); other kinds: see predictions.py
    "valid": pl.Boolean,  # output parsed / names a real item
}

SCHEMAS: dict[str, Schema] = {
    ITEMS: ITEMS_SCHEMA,
    USERS: USERS_SCHEMA,
    INTERACTIONS: INTERACTIONS_SCHEMA,
    SEQUENCES: SEQUENCES_SCHEMA,
    CORPUS: CORPUS_SCHEMA,
    PROMPTS: PROMPTS_SCHEMA,
    ENTITIES: ENTITIES_SCHEMA,
    ENTITIES_MINHASH: ENTITIES_MINHASH_SCHEMA,
    NEAR_DUPLICATES: NEAR_DUPLICATES_SCHEMA,
    PREDICTIONS: PREDICTIONS_SCHEMA,  # read and written only by artifacts/predictions.py
}

# what `textualize` writes (in this order)
TEXTUALIZE_FILES = (ITEMS, USERS, INTERACTIONS, SEQUENCES, CORPUS, PROMPTS)
