"""What the model sees and is taught at the answer position (issue 29: answers that began with ".").

With SmolLM2's tokenizer " 4" is two tokens, a lone space (216) and "4": the rating answer
used to be `[gM] [START] Ġ 4 [END]`, so the answer position was taught a content-free space
that the base model gives 2-5% (its "." gets 10-30%), and the star sat one step later. Now the
answer's first token is the answer: `[gM] [START] 4 [END]`, at inference and in training alike.

    python -m pytest tests/unit/test_answer_start.py -q
"""

from __future__ import annotations

import polars as pl

from recsys_cli.data import masking, tokenize
from recsys_cli.inference.engine import Engine
from recsys_cli.inference.options import InferOptions


def _row(data, family: str, split: str = "train") -> dict:
    p = pl.read_parquet(data / "prompts.parquet")
    one_star = pl.col("target").str.contains(r"^\d$")
    return p.filter((pl.col("family") == family) & (pl.col("split") == split) & one_star).row(0, named=True)


def test_rating_answer_layout_at_training_and_inference(musical_data, tok, special):
    row = _row(musical_data, "rating")
    star = tok.convert_tokens_to_ids(row["target"])
    src = tokenize.tokenize_documents([row["source"]], [row["source_entities"]], tok)[0]
    tgt = tokenize.tokenize_target(row["target"], row["target_entities"], tok)
    assert tgt.ids == [star]  # not [216 ('Ġ'), star]
    ex = masking.prompt_example(src, tgt, special, None)
    la = ex.part_a_len
    assert ex.input_ids[la - 2 :] == [src.ids[-1], special.g_m, special.start, star]
    assert ex.labels[la - 1 :] == [masking.IGNORE, star, special.end]  # [START] is taught the star itself
    assert ex.inter[la:] == [la - 1, la - 1] and ex.intra[la:] == [1, 2]
    # inference: the same Part A; decode.prefill appends [START] at the [gM] inter position
    a, ai, _ = Engine(None, tok, InferOptions(), None, None, {}).part_a([row])
    assert a[0] == ex.input_ids[:la] and ai[0] == ex.intra[:la]


def test_no_free_text_answer_starts_with_a_lone_space(musical_data, tok):
    """Ratings, summaries, explanations: the first answer token is never whitespace alone."""
    p = pl.read_parquet(musical_data / "prompts.parquet").filter(pl.col("split") == "train")
    p = p.filter(pl.col("target_entities").list.len() == 0)
    firsts = [tokenize.tokenize_target(t, None, tok).ids[0] for t in p["target"].to_list()]
    blank = [t for t, f in zip(p["target"].to_list(), firsts) if not tok.decode([f]).strip()]
    assert len(firsts) > 500 and blank == []


def test_leading_space_kept_where_it_merges_or_an_entity_starts(tok):
    lone = tokenize.lone_space_id(tok)
    assert lone == tok.convert_tokens_to_ids("Ġ")
    assert tokenize.tokenize_target("Great strings", None, tok).ids[0] == tok.convert_tokens_to_ids("ĠGreat")
    title = "7 Wonders"  # an entity keeps its in-context ids (" 7 Wonders"), the ones the item trie holds
    doc = tokenize.tokenize_target(title, [{"start": 0, "end": len(title), "kind": "item", "entity_id": "item:x"}], tok)
    assert doc.ids == tok(" " + title, add_special_tokens=False)["input_ids"] and doc.ids[0] == lone
    assert doc.entity_spans == [(0, len(doc.ids))]
