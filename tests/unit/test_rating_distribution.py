"""Star ratings from the model's distribution at the answer position (inference/rating.py), and
the matching training loss (training/data.py `_stars`), on the tiny model with the real tokenizer
and the real Musical Instruments 2014 reviews.

    python -m pytest tests/unit/test_rating_distribution.py -q
"""

from __future__ import annotations

import math

import polars as pl
import pytest

torch = pytest.importorskip("torch")

from recsys_cli.data import ratings, tokenize  # noqa: E402
from recsys_cli.inference import rating  # noqa: E402
from recsys_cli.inference.options import InferOptions, modes_of  # noqa: E402
from tests.conftest import TINY_MODEL  # noqa: E402


@pytest.fixture(scope="module")
def lm_tok():
    from recsys_cli.modeling.checkpoint import load_base_for_inference

    lm, tok, _ = load_base_for_inference(str(TINY_MODEL))
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero intra table, as after training
        lm.intra_embed.weight.normal_(0, 1.0)
    return lm, tok


def _rating_rows(data, split: str) -> list[dict]:
    p = pl.read_parquet(data / "prompts.parquet").filter(pl.col("split") == split)
    return [r for r, m in zip(p.to_dicts(), modes_of(p, False, data / "prompts.parquet")) if m == "rating"]


def _stream(data, tok, tiny_model, **sets):
    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.training.data import ExampleStream, load_sources
    from recsys_cli.training.recipe import load_recipe

    r = load_recipe(None, [("model.name", tiny_model), ("train.max_length", 96), *sets.items()])
    return ExampleStream(load_sources(data, tok, eval_prompts=8), r, SpecialIds.from_tokenizer(tok))


def test_star_tokens_are_single_and_what_training_puts_at_the_answer_position(tok):
    stars = rating.star_token_ids(tok)
    assert stars == [tok.convert_tokens_to_ids(str(s)) for s in rating.STARS]
    assert all(tokenize.tokenize_target(str(s), None, tok).ids == [t] for s, t in zip(rating.STARS, stars))
    assert ratings.star_restriction([stars[3]], stars) == stars
    assert ratings.star_restriction([stars[3], stars[4]], stars) is None
    assert ratings.star_restriction([stars[0]], None) is None


def test_every_rating_prompt_gets_a_number_from_the_star_distribution(musical_data, lm_tok):
    from recsys_cli.inference.engine import Engine
    from recsys_cli.modeling.mask import build_attention_mask

    lm, tok = lm_tok
    rows = _rating_rows(musical_data, "test")
    assert len(rows) >= 100
    none = [set()] * len(rows)
    expected = Engine(lm, tok, InferOptions(rating_scoring="distribution"), None, None, {}).run("rating", rows, none)
    argmax = Engine(lm, tok, InferOptions(rating_scoring="argmax"), None, None, {}).run("rating", rows, none)
    stars = rating.star_token_ids(tok)
    for r, e, m in zip(rows, expected, argmax):
        p = e["scores"]
        assert e["valid"] and len(p) == 5 and math.isclose(sum(p), 1.0, abs_tol=1e-5)
        assert 1.0 <= float(e["output"]) <= 5.0
        assert float(e["output"]) == pytest.approx(sum(pi * s for pi, s in zip(p, rating.STARS)), abs=0.005)
        assert float(m["output"]) == 1 + max(range(5), key=p.__getitem__) and m["scores"] == pytest.approx(p)
    # one prompt by hand: a full forward (no cache, no padding), softmax over the 5 star ids at [START]
    eng = Engine(lm, tok, InferOptions(), None, None, {})
    (a,), (ai,), _ = eng.part_a(rows[:1])
    n = len(a)
    ids = torch.tensor([a + [eng.special.start]])
    with torch.inference_mode():
        logits = lm(
            ids,
            torch.tensor([list(range(n)) + [n - 1]]),
            torch.tensor([ai + [1]]),
            build_attention_mask([n], [n + 1], n + 1, torch.float32),
        ).logits[0, -1]
    assert torch.softmax(logits[stars], -1).tolist() == pytest.approx(expected[0]["scores"], abs=1e-5)
    assert len({e["output"] for e in expected}) > 1  # the prompts differ, so do their ratings


def test_generate_scoring_still_parses_text(musical_data, lm_tok):
    from recsys_cli.inference.engine import Engine

    lm, tok = lm_tok
    rows = _rating_rows(musical_data, "test")[:4]
    out = Engine(lm, tok, InferOptions(rating_scoring="generate"), None, None, {}).run("rating", rows, [set()] * 4)
    assert [o["prompt_id"] for o in out] == [r["prompt_id"] for r in rows]
    assert all(o["scores"] is None or len(o["scores"]) == 1 for o in out)


def _loss_by_hand(lm, ex, end_id, stars):
    """Mean over Part B labels: CE over the star tokens at [START] (when `stars`), full CE after."""
    from recsys_cli.modeling.mask import build_attention_mask

    n = len(ex)
    with torch.no_grad():
        logits = lm(
            torch.tensor([ex.input_ids]),
            torch.tensor([ex.inter]),
            torch.tensor([ex.intra]),
            build_attention_mask([ex.part_a_len], [n], n, torch.float32),
        ).logits[0]
    la, gold = ex.part_a_len, ex.labels[ex.part_a_len]
    if stars:
        first = -torch.log_softmax(logits[la, stars], -1)[stars.index(gold)]
    else:
        first = -torch.log_softmax(logits[la], -1)[gold]
    end = -torch.log_softmax(logits[la + 1], -1)[end_id]
    return float((first + end) / 2)


@pytest.mark.parametrize("on", [True, False], ids=["stars", "full-vocabulary"])
def test_rating_loss_is_the_cross_entropy_over_the_five_stars(musical_data, lm_tok, tiny_model, on):
    from recsys_cli.training.data import collate

    lm, tok = lm_tok
    stream = _stream(musical_data, tok, tiny_model, **{"train.rating_stars": on})
    stars = rating.star_token_ids(tok)
    src, tgt = next((s, t) for s, t in stream.src.prompts["rating"] if t.ids[0] in stars)
    ex = stream.prompt(src, tgt)
    assert ex.allowed == ({ex.part_a_len: stars} if on else None)
    b = collate([ex], tok.pad_token_id, torch.float32)
    with torch.no_grad():
        got = lm(
            b["input_ids"],
            b["inter"],
            b["intra"],
            b["attn_mask_4d"],
            labels=b["labels"],
            allowed=(b["allowed"], b["allowed_ids"]) if "allowed" in b else None,
        ).loss
    assert float(got) == pytest.approx(_loss_by_hand(lm, ex, stream.special.end, stars if on else None), rel=1e-4)


def test_short_rating_training_moves_weights_and_the_star_distribution(musical_data, tiny_model, tmp_path):
    """Rating prompts only, a hot 8-step run: LoRA and the new rows move, and the gold star's
    log-probability under the five-star softmax rises on the training prompts."""
    from recsys_cli.modeling.mask import build_attention_mask
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    weights = {"rating": 1.0, "sequential": 0.0, "explanation": 0.0, "review": 0.0, "direct": 0.0}
    sets = {
        "model.name": tiny_model,
        "train.max_steps": 8,
        "train.batch_size": 4,
        "train.max_length": 96,
        "train.lr": 0.01,
        "train.warmup_steps": 1,
        "train.corpus_ratio": 0.0,
        "train.family_weights": weights,
        "lora.dropout": 0.0,
        "eval.eval_every": 1000,
        "train.save_every": 1000,
        "train.precision": "fp32",
    }
    r = load_recipe(None, list(sets.items()))
    tr = Trainer(r, musical_data, tmp_path / "C")
    stars = rating.star_token_ids(tr.tok)
    exs = [tr.stream.prompt(s, t) for s, t in tr.sources.prompts["rating"] if t.ids[0] in stars][:48]

    def gold_logp() -> float:
        tr.lm.eval()
        total = 0.0
        with torch.no_grad():
            for ex in exs:
                n, la = len(ex), ex.part_a_len
                lo = tr.lm(
                    torch.tensor([ex.input_ids]),
                    torch.tensor([ex.inter]),
                    torch.tensor([ex.intra]),
                    build_attention_mask([la], [n], n, torch.float32),
                ).logits[0, la]
                total += float(torch.log_softmax(lo[stars], -1)[stars.index(ex.labels[la])])
        return total / len(exs)

    before_w = {n: p.detach().clone() for n, p in tr.lm.named_parameters() if p.requires_grad}
    before = gold_logp()
    tr.train()
    moved = [n for n, p in tr.lm.named_parameters() if p.requires_grad and not torch.equal(before_w[n], p.detach())]
    assert any("lora_B" in n for n in moved) and len(moved) == len(before_w)
    after = gold_logp()
    assert after > before + 0.05, (before, after)
