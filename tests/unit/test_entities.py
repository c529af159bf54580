"""Entity pool, the entity trie, MinHash near-duplicates and grounding.

python -m pytest tests/unit/test_entities.py
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.data import masking, tokenize
from recsys_cli.data.entities import Grounder, MinHasher, build_pool, ground_text, near_duplicate_clusters, pool_trie
from recsys_cli.data.positions import part_b_intra
from recsys_cli.data.special_tokens import SpecialIds, add_special_tokens
from recsys_cli.data.trie import NONE, ROOT, load_entity_trie, trie_from_rows
from recsys_cli.errors import RecsysError

ROWS = [
    {"entity_id": "item:1", "kind": "item", "token_ids": [5, 6, 7], "item_ids": ["1"]},
    {"entity_id": "item:2", "kind": "item", "token_ids": [5, 6], "item_ids": ["2"]},
    {"entity_id": "item:3", "kind": "item", "token_ids": [5, 6], "item_ids": ["3"]},  # same title as item 2
    {"entity_id": "brand:x", "kind": "brand", "token_ids": [9], "item_ids": ["1", "2"]},
]


def test_trie_steps_and_queries():
    trie = trie_from_rows((r["entity_id"], r["kind"], r["token_ids"], r["item_ids"]) for r in ROWS)
    assert len(trie) == 3 and trie.num_nodes == 5  # entries 5-6-7, 5-6, 9; nodes root, 5, 5-6, 5-6-7, 9
    assert sorted(trie.children(ROOT)) == [5, 9]
    s = trie.step(ROOT, 5)
    assert s != NONE and not trie.is_terminal(s) and trie.step(s, 7) == NONE
    s2 = trie.step(s, 6)
    assert trie.is_terminal(s2) and trie.payloads[s2] == ["2", "3"]  # item payloads: item ids
    assert trie.children(s2) == [7] and trie.unique_tail(s2) is None
    s3 = trie.step(s2, 7)
    assert trie.payloads[s3] == ["1"] and trie.children(s3) == [] and trie.unique_tail(s3) == ([], s3)
    assert trie.walk([5, 6, 7]) == s3 and trie.walk([5, 7]) == NONE
    assert trie.lookup([5, 6]) == ["2", "3"] and trie.lookup([5]) == []  # pygtrie, the store
    assert trie.payloads[trie.walk([9])] == ["brand:x"]  # a brand names no single item
    assert trie.max_depth == 3
    items = trie_from_rows(((r["entity_id"], r["kind"], r["token_ids"], r["item_ids"]) for r in ROWS), items_only=True)
    assert items.walk([9]) == NONE and items.lookup([5, 6, 7]) == ["1"]


@pytest.fixture(scope="module")
def pool(toys_entities):
    return pl.read_parquet(toys_entities / schemas.ENTITIES)


def test_pool_matches_items_and_corpus(toys_entities, pool):
    items = pl.read_parquet(toys_entities / schemas.ITEMS)
    assert pool.schema == pl.Schema(schemas.ENTITIES_SCHEMA)
    assert pool["entity_id"].n_unique() == len(pool)
    assert set(pool["kind"].unique()) <= set(schemas.ENTITY_KINDS)
    it = pool.filter(pl.col("kind") == "item")
    assert len(it) == items.filter(pl.col("title") != "").height
    row = it.row(0, named=True)
    assert row["item_ids"] == [row["entity_id"].removeprefix("item:")]
    # every entity id used in the corpus and the prompts is in the pool
    corpus = pl.read_parquet(toys_entities / schemas.CORPUS)
    used = set(corpus.explode("entities").unnest("entities")["entity_id"].drop_nulls())
    assert used and used <= set(pool["entity_id"])
    cats = pool.filter(pl.col("kind") == "category")
    assert all(len(x) >= 1 for x in cats["item_ids"].to_list())


def test_token_ids_are_in_context(toys_entities, pool, tiny_tokenizer):
    """The ids a corpus document gives an entity equal the stored ids (the " " + text rule)."""
    ids = dict(zip(pool["entity_id"], pool["token_ids"].to_list()))
    corpus = pl.read_parquet(toys_entities / schemas.CORPUS).head(50)
    docs = tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tiny_tokenizer)
    checked = 0
    for doc, ents, text in zip(docs, corpus["entities"].to_list(), corpus["text"].to_list()):
        for (s, e), ent in zip(doc.entity_spans, sorted(ents, key=lambda x: x["start"])):
            if ent["start"] > 0 and text[ent["start"] - 1] == " ":
                assert doc.ids[s:e] == ids[ent["entity_id"]]
                checked += 1
    assert checked > 100
    row = pool.row(0, named=True)
    assert row["token_ids"] == tiny_tokenizer(" " + row["text"], add_special_tokens=False)["input_ids"]


def test_trie_load_kinds_and_part_b_matches_prompts(toys_entities, tiny_tokenizer):
    items_only = load_entity_trie(toys_entities, kinds=["item"])
    everything = load_entity_trie(toys_entities)
    assert 0 < len(items_only) < len(everything)
    with pytest.raises(RecsysError, match="unknown entity kinds"):
        load_entity_trie(toys_entities, kinds=["colour"])
    tok = masking_tokenizer(tiny_tokenizer)
    # without entities.parquet the same trie is computed in memory (mask-preview, pretrain)
    assert pool_trie(toys_entities, tok).num_nodes == everything.num_nodes
    prompts = pl.read_parquet(toys_entities / schemas.PROMPTS).filter(pl.col("family") == "sequential").head(20)
    special = SpecialIds.from_tokenizer(tok)
    for row in prompts.iter_rows(named=True):
        tgt = tokenize.tokenize_target(row["target"], row["target_entities"], tok)
        ex = masking.prompt_example(
            tokenize.tokenize_document(row["source"], row["source_entities"], tok), tgt, special, everything
        )
        assert part_b_intra(tgt.ids, everything) == ex.intra[ex.part_a_len :]
        assert ex.intra[ex.part_a_len :] == list(range(1, len(tgt.ids) + 2))  # one title: 1..n+1
        # the whole answer is one item title: the trie ends on it, naming the target item
        end = items_only.walk(tgt.ids)
        assert end != NONE and row["item_id"] in items_only.payloads[end]


def masking_tokenizer(tok):
    import copy

    t = copy.deepcopy(tok)
    add_special_tokens(t)
    return t


def test_near_duplicates_and_grounding(toys_entities, pool):
    dups = pl.read_parquet(toys_entities / schemas.NEAR_DUPLICATES)
    assert dups.schema == pl.Schema(schemas.NEAR_DUPLICATES_SCHEMA)
    assert len(dups) >= 2 and dups.group_by("cluster").len()["len"].min() >= 2
    sig = pl.read_parquet(toys_entities / schemas.ENTITIES_MINHASH)
    assert len(sig) == pool.filter(pl.col("kind") == "item").height
    g = Grounder.load(toys_entities)
    rng = random.Random(0)
    rows = [sig.row(i, named=True) for i in rng.sample(range(len(sig)), 30)]
    exact = sum(g.ground_text(r["text"]) == r["item_id"] for r in rows)
    assert exact >= 28  # exact duplicates of another title may win
    # a damaged title (dropped last word, lower case, typo) still grounds to its item
    hits = 0
    for r in rows:
        words = r["text"].lower().split()
        noisy = " ".join(words[:-1] if len(words) > 3 else words).replace("e", "3", 1)
        hits += ground_text(noisy, toys_entities) in set(dups.filter(pl.col("item_id") == r["item_id"])["item_id"]) | {
            r["item_id"]
        }
    assert hits >= 20
    assert g.ground_text("") is None and g.ground_text("zzzz qqqq", min_similarity=0.9) is None


def test_minhash_clusters_synthetic():
    h = MinHasher(num_perm=64)
    titles = [
        "LEGO Star Wars Millennium Falcon 75192",
        "LEGO Star Wars Millennium Falcon 75192 Set",
        "Gloomhaven: Jaws of the Lion",
        "Uno Card Game",
    ]
    sigs = h.signatures(titles)
    assert sigs.shape == (4, 64) and sigs.dtype == np.uint64
    assert np.array_equal(sigs, MinHasher(num_perm=64).signatures(titles))  # deterministic
    assert near_duplicate_clusters(sigs, 0.8, 64) == [[0, 1]]


def test_build_pool_requires_items(tmp_path):
    with pytest.raises(RecsysError, match=r"not a complete recsys run \(no manifest.json\)"):
        build_pool(tmp_path)


def test_light_tokenizer_matches_hf(toys_data, tiny_model, tiny_tokenizer):
    """build-entities reads tokenizer.json directly; it must give AutoTokenizer's ids."""
    from recsys_cli.data.entities import in_context_ids
    from recsys_cli.modeling.registry import load_text_tokenizer, resolve_model

    light = load_text_tokenizer(resolve_model(tiny_model))
    titles = pl.read_parquet(toys_data / schemas.ITEMS)["title"].to_list()[:300]
    assert (
        in_context_ids(titles, light)
        == tiny_tokenizer([" " + t for t in titles], add_special_tokens=False)["input_ids"]
    )
    corpus = pl.read_parquet(toys_data / schemas.CORPUS).head(30)
    a = tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), light)
    b = tokenize.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tiny_tokenizer)
    assert a == b
