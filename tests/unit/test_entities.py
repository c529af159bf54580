"""Entity pool, trie, dynamic intra positions, MinHash near-duplicates and grounding.

    python -m pytest tests/unit/test_entities.py
"""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.data import masking
from recsys_cli.data.entities import (
    DynamicIntra,
    EntityTrie,
    Grounder,
    MinHasher,
    build_pool,
    ground_text,
    intra_ids_dynamic,
    near_duplicate_clusters,
)
from recsys_cli.errors import RecsysError

ROWS = [
    {"entity_id": "item:1", "kind": "item", "token_ids": [5, 6, 7], "item_ids": ["1"]},
    {"entity_id": "item:2", "kind": "item", "token_ids": [5, 6], "item_ids": ["2"]},
    {"entity_id": "item:3", "kind": "item", "token_ids": [5, 6], "item_ids": ["3"]},  # same title as item 2
    {"entity_id": "brand:x", "kind": "brand", "token_ids": [9], "item_ids": ["1", "2"]},
]


def test_trie_steps_and_queries():
    trie = EntityTrie(ROWS)
    assert len(trie) == 4 and trie.num_nodes == 5  # root, 5, 5-6, 5-6-7, 9
    assert sorted(trie.children(trie.root)) == [5, 9]
    s = trie.step(trie.root, 5)
    assert s is not None and not trie.is_terminal(s) and trie.step(s, 7) is None
    s2 = trie.step(s, 6)
    assert trie.is_terminal(s2) and trie.entity_ids(s2) == ["item:2", "item:3"]
    assert trie.item_ids(s2) == ["2", "3"] and trie.children(s2) == [7]
    s3 = trie.step(s2, 7)
    assert trie.entity_ids(s3) == ["item:1"] and trie.children(s3) == []
    assert trie.walk([5, 6, 7]) == s3 and trie.walk([5, 7]) is None
    assert trie.lookup([5, 6]) == ["item:2", "item:3"] and trie.lookup([5]) == []
    assert trie.item_ids(trie.walk([9])) == []  # brands name no single item


def test_dynamic_intra_rule():
    trie = EntityTrie(ROWS)
    # after [START]: first unit continues from [START]=1, later units restart at 1
    assert intra_ids_dynamic([5, 6, 7, 9, 100, 5, 6], trie) == [2, 3, 4, 1, 1, 1, 2]
    assert intra_ids_dynamic([100, 5, 6, 100], trie) == [2, 1, 2, 1]
    assert intra_ids_dynamic([5, 6], trie, after_start=False) == [1, 2]
    d = DynamicIntra(trie)
    assert [d.push(5), d.push(6)] == [2, 3]
    c = d.clone()
    assert c.push(7) == 4 and d.push(100) == 1  # beams evolve independently
    d.reset()
    assert d.push(9) == 2


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
    docs = masking.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tiny_tokenizer)
    checked = 0
    for doc, ents, text in zip(docs, corpus["entities"].to_list(), corpus["text"].to_list()):
        for (s, e), ent in zip(doc.entity_spans, sorted(ents, key=lambda x: x["start"])):
            if ent["start"] > 0 and text[ent["start"] - 1] == " ":
                assert doc.ids[s:e] == ids[ent["entity_id"]]
                checked += 1
    assert checked > 100
    row = pool.row(0, named=True)
    assert row["token_ids"] == tiny_tokenizer(" " + row["text"], add_special_tokens=False)["input_ids"]


def test_trie_load_kinds_and_dynamic_matches_prompts(toys_entities, tiny_tokenizer):
    items_only = EntityTrie.load(toys_entities, kinds=["item"])
    everything = EntityTrie.load(toys_entities)
    assert 0 < len(items_only) < len(everything)
    with pytest.raises(RecsysError, match="unknown entity kinds"):
        EntityTrie.load(toys_entities, kinds=["colour"])
    prompts = pl.read_parquet(toys_entities / schemas.PROMPTS).filter(pl.col("family") == "sequential").head(20)
    tok = masking_tokenizer(tiny_tokenizer)
    special = masking.SpecialIds.from_tokenizer(tok)
    for row in prompts.iter_rows(named=True):
        tgt = masking.tokenize_target(row["target"], row["target_entities"], tok)
        ex = masking.prompt_example(masking.tokenize_document(row["source"], row["source_entities"], tok), tgt, special)
        assert intra_ids_dynamic(tgt.ids, items_only) == ex.intra[ex.part_a_len + 1 :]
        # the whole answer is one item title: the trie ends on it, naming the target item
        end = items_only.walk(tgt.ids)
        assert end is not None and row["item_id"] in items_only.item_ids(end)


def masking_tokenizer(tok):
    import copy

    t = copy.deepcopy(tok)
    masking.add_special_tokens(t)
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
        hits += ground_text(noisy, toys_entities) in set(dups.filter(pl.col("item_id") == r["item_id"])["item_id"]) | {r["item_id"]}
    assert hits >= 20
    assert g.ground_text("") is None and g.ground_text("zzzz qqqq", min_similarity=0.9) is None


def test_minhash_clusters_synthetic():
    h = MinHasher(num_perm=64)
    titles = ["LEGO Star Wars Millennium Falcon 75192", "LEGO Star Wars Millennium Falcon 75192 Set", "Gloomhaven: Jaws of the Lion", "Uno Card Game"]
    sigs = h.signatures(titles)
    assert sigs.shape == (4, 64) and sigs.dtype == np.uint64
    assert np.array_equal(sigs, MinHasher(num_perm=64).signatures(titles))  # deterministic
    assert near_duplicate_clusters(sigs, 0.8, 64) == [[0, 1]]


def test_build_pool_requires_items(tmp_path):
    with pytest.raises(RecsysError, match="items.parquet: file not found"):
        build_pool(tmp_path)


def test_light_tokenizer_matches_hf(toys_data, tiny_model, tiny_tokenizer):
    """build-entities reads tokenizer.json directly; it must give AutoTokenizer's ids."""
    from recsys_cli.data.entities import in_context_ids, load_text_tokenizer
    from recsys_cli.models.registry import resolve_model

    light = load_text_tokenizer(resolve_model(tiny_model))
    titles = pl.read_parquet(toys_data / schemas.ITEMS)["title"].to_list()[:300]
    assert in_context_ids(titles, light) == tiny_tokenizer([" " + t for t in titles], add_special_tokens=False)["input_ids"]
    corpus = pl.read_parquet(toys_data / schemas.CORPUS).head(30)
    a = masking.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), light)
    b = masking.tokenize_documents(corpus["text"].to_list(), corpus["entities"].to_list(), tiny_tokenizer)
    assert a == b
