"""`recsys textualize amazon` on the committed real slices (P5 Toys, Amazon 2014 / 2018)."""

from __future__ import annotations

import hashlib
import json

import polars as pl
import pytest

from recsys_cli.artifacts import schemas
from tests.conftest import FIXTURES, GIFT_CARDS, TOYS, run_cli


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_toys_writes_all_files_with_contract_schema(toys_data):
    for name in schemas.TEXTUALIZE_FILES:
        df = pl.read_parquet(toys_data / name)
        assert dict(df.schema) == schemas.SCHEMAS[name], name
    man = json.loads((toys_data / schemas.MANIFEST).read_text())
    assert man["rows"]["users.parquet"] == 300
    assert {i["name"] for i in man["inputs"]} == {"sequential_data.txt", "datamaps.json", "meta.jsonl"}
    assert man["options"]["seed"] == 0


def test_toys_sequences_match_p5_file(toys_data):
    seq = pl.read_parquet(toys_data / schemas.SEQUENCES)
    first = (TOYS / "sequential_data.txt").read_text().splitlines()[0].split()
    row = seq.filter(pl.col("user_id") == first[0]).row(0, named=True)
    assert row["items"] == first[1:]
    assert seq.height == 300
    items = pl.read_parquet(toys_data / schemas.ITEMS)
    assert items.filter(pl.col("item_id") == "1")["title"][0] == "Hasbro Electronic Catch Phrase"
    assert not items["title"].str.contains("&amp;|&quot;").any()


def test_entity_spans_point_at_their_text(toys_data):
    items = dict(pl.read_parquet(toys_data / schemas.ITEMS).select("item_id", "title").iter_rows())
    corpus = pl.read_parquet(toys_data / schemas.CORPUS)
    assert set(corpus["period"].unique()) == {"long", "medium", "short", "profile"}
    sampled = json.loads((toys_data / schemas.MANIFEST).read_text())["summary"]["corpus"]["sampled_by_period"]
    assert sampled["long"] * 3 == sampled["medium"] and sampled["long"] * 6 == sampled["short"] == 1800  # 10/30/60
    keys = [
        (u, tuple(e["entity_id"] for e in ents if e["kind"] == "item"))
        for u, p, ents in corpus.select("user_id", "period", "entities").iter_rows()
        if p != "profile"
    ]
    assert len(keys) == len(set(keys))  # no two documents of a user list the same items
    checked = 0
    for text, ents in corpus.head(400).select("text", "entities").iter_rows():
        for e in ents:
            span = text[e["start"] : e["end"]]
            if e["kind"] == "item":
                assert span == items[e["entity_id"][5:]]
            else:
                assert e["entity_id"] == f"{e['kind']}:" + " ".join(span.lower().split())
            checked += 1
    assert checked > 1000
    p = pl.read_parquet(toys_data / schemas.PROMPTS).filter(pl.col("family") == "sequential")
    for src, tgt, item, se, te in (
        p.head(300).select("source", "target", "item_id", "source_entities", "target_entities").iter_rows()
    ):
        assert tgt == items[item]
        assert te == [{"start": 0, "end": len(tgt), "kind": "item", "entity_id": f"item:{item}"}]
        assert all(src[e["start"] : e["end"]] == items[e["entity_id"][5:]] for e in se)


def test_no_valid_or_test_target_in_training_data(toys_data):
    seq = pl.read_parquet(toys_data / schemas.SEQUENCES)
    held = {u: set(items[-2:]) - set(items[:-2]) for u, items in seq.iter_rows()}
    corpus = pl.read_parquet(toys_data / schemas.CORPUS)
    for user, ents in corpus.select("user_id", "entities").iter_rows():
        ids = {e["entity_id"][5:] for e in ents if e["kind"] == "item"}
        assert not ids & held[user]
    train = pl.read_parquet(toys_data / schemas.PROMPTS).filter(pl.col("split") == "train")
    for user, item, se in train.select("user_id", "item_id", "source_entities").iter_rows():
        ids = {e["entity_id"][5:] for e in se if e["kind"] == "item"} | {item}
        assert not ids & held[user]


def test_splits_candidates_and_templates(toys_data):
    p = pl.read_parquet(toys_data / schemas.PROMPTS)
    seq = dict(pl.read_parquet(toys_data / schemas.SEQUENCES).iter_rows())
    assert set(p["family"].unique()) == {"sequential", "direct"}  # P5 Toys has no reviews
    assert p["prompt_id"].n_unique() == p.height
    assert not p.filter((pl.col("split") != "test") & ~pl.col("seen")).height  # unseen only at test
    test_seq = p.filter((pl.col("family") == "sequential") & (pl.col("split") == "test") & pl.col("seen"))
    assert test_seq.height == 300
    assert all(seq[u][-1] == i for u, i in test_seq.select("user_id", "item_id").iter_rows())
    ranked = p.filter(pl.col("candidates").is_not_null())
    assert set(ranked["split"].unique()) == {"valid", "test"} and set(ranked["family"].unique()) == {"direct"}
    for user, item, split, cands in ranked.select("user_id", "item_id", "split", "candidates").iter_rows():
        assert len(cands) == 100 == len(set(cands)) and item in cands
        assert item == seq[user][-1 if split == "test" else -2]
        assert not (set(cands) - {item}) & set(seq[user])
    yn = p.filter((pl.col("family") == "direct") & pl.col("target").is_in(["yes", "no"]) & (pl.col("split") == "test"))
    assert set(yn["target"].unique()) == {"yes", "no"}
    for user, item, target in yn.select("user_id", "item_id", "target").iter_rows():
        assert (item == seq[user][-1]) == (target == "yes")


def test_musical_2014_reviews_give_all_five_families(musical_data):
    p = pl.read_parquet(musical_data / schemas.PROMPTS)
    assert set(p["family"].unique()) == set(schemas.FAMILIES)
    for fam in schemas.FAMILIES:
        f = p.filter(pl.col("family") == fam)
        assert set(f["split"].unique()) == {"train", "valid", "test"}
        assert f.filter(~pl.col("seen")).height > 0
    rating = p.filter(pl.col("family") == "rating")
    assert set(rating["target"].unique()) <= {"1", "2", "3", "4", "5", "yes", "no"}
    inter = pl.read_parquet(musical_data / schemas.INTERACTIONS)
    assert inter.height == 591 and inter["rating"].null_count() == 0
    ex = inter.drop_nulls("explanation")
    assert ex.height > 300
    assert all(f in e.lower() for e, f in ex.select("explanation", "feature").iter_rows())
    seq = pl.read_parquet(musical_data / schemas.SEQUENCES)
    ts = dict(((u, i), t) for u, i, t in inter.select("user_id", "item_id", "timestamp").iter_rows())
    for user, items in seq.iter_rows():
        stamps = [ts[(user, i)] for i in items]
        assert stamps == sorted(stamps)
    # review-derived prompts never train on a user's sequential valid/test target
    held = {u: set(items[-2:]) for u, items in seq.iter_rows()}
    tr = p.filter((pl.col("split") == "train") & pl.col("family").is_in(["rating", "explanation", "review"]))
    assert not any(i in held[u] for u, i in tr.select("user_id", "item_id").iter_rows())


def test_gift_cards_2018_dedup_meta_and_json(tmp_path):
    src = GIFT_CARDS / "Gift_Cards_5.json"
    dup = tmp_path / "gc"
    dup.mkdir()
    lines = src.read_text().splitlines()
    (dup / "Gift_Cards_5.json").write_text("\n".join(lines + lines[:40]) + "\n")  # repeated variant rows
    (dup / "meta_Gift_Cards.json").write_bytes((GIFT_CARDS / "meta_Gift_Cards.json").read_bytes())
    code, out, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "Gift_Cards",
        "--data-dir",
        str(dup),
        "--out",
        str(tmp_path / "R"),
        "--json",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["interactions"] == 536 and summary["filters"]["raw_rows"] == 576
    assert summary["source"] == "amazon-2018" and summary["has_reviews"]
    items = pl.read_parquet(tmp_path / "R" / schemas.ITEMS)
    assert items.height == 129 and items["brand"].drop_nulls().len() > 0 and items["price"].drop_nulls().len() > 0
    assert not items["title"].str.starts_with(" ").any()


def test_p5_with_python_literal_2014_meta(tmp_path):
    code, out, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(FIXTURES / "amazon" / "toys_meta2014"),
        "--out",
        str(tmp_path / "R"),
        "--json",
        "--quiet",
    )
    assert code == 0, err
    s = json.loads(out)
    assert s["users"] == 20 and not s["has_reviews"]
    assert any("no reviews" in n for n in s["notes"])
    items = pl.read_parquet(tmp_path / "R" / schemas.ITEMS)
    assert items.filter(pl.col("item_id") == "2")["title"][0] == "Gloom"
    assert items.filter(pl.col("item_id") == "2")["categories"][0].to_list() == ["Games", "Board Games"]


def test_same_seed_is_byte_identical_other_seed_differs(tmp_path, toys_data):
    args = ["textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--quiet"]
    assert run_cli(*args, "--out", str(tmp_path / "a"), "--seed", "0")[0] == 0
    assert _hashes(tmp_path / "a") == _hashes(toys_data)
    assert run_cli(*args, "--out", str(tmp_path / "b"), "--seed", "1")[0] == 0
    hb = _hashes(tmp_path / "b")
    assert hb[schemas.PROMPTS] != _hashes(toys_data)[schemas.PROMPTS]
    assert hb[schemas.SEQUENCES] == _hashes(toys_data)[schemas.SEQUENCES]


def test_summary_table_on_stdout(tmp_path):
    code, out, _ = run_cli(
        "textualize",
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(FIXTURES / "amazon" / "toys_meta2014"),
        "--out",
        str(tmp_path / "R"),
        "--quiet",
    )
    assert code == 0
    assert "prompts sequential" in out and "no reviews in source" in out and "interactions" in out


@pytest.mark.parametrize("short", ["toys", "beauty", "sports"])
def test_short_names_map_to_amazon_categories(short):
    from recsys_cli.data.sources.amazon import SHORT_NAMES, resolve_category

    assert resolve_category(short) == SHORT_NAMES[short]
    assert resolve_category("Musical_Instruments") == "Musical_Instruments"
