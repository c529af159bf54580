"""Unit tests of the textualize library: text cleaning, spans, periods, templates, explanations."""

from __future__ import annotations

import random
import string

import numpy as np
import polars as pl
import pytest

from recsys_cli.data import corpus, explain, prompts, render, templates
from recsys_cli.data.spans import Registry, SpanLayout, SpanTable, entity_lists, join
from recsys_cli.data.text import clean, norm_key, sentences


def test_clean_unescapes_html_twice_and_collapses_whitespace():
    assert clean("  Cats &amp;amp; Dogs\n\t Game ") == "Cats & Dogs Game"
    assert clean("Barbie &quot;Pink&quot; <b>Doll</b>") == 'Barbie "Pink" Doll'
    assert clean(None) == ""
    assert norm_key("  Board   GAMES ") == "board games"


def test_join_span_table_and_layout_keep_offsets():
    reg = Registry()
    a, b = reg.mark("Gloom", "item", "item:2"), reg.mark("Uno", "item", "item:9")
    text, spans = join([a, b], "; ")
    assert [text[s:e] for s, e, _ in spans] == ["Gloom", "Uno"]
    joined = SpanTable.of([a, b]).joined([[0, 1, 0], [], [1]], np.array([5, 3]), 1)  # "Gloom Uno Gloom", "", "Uno"
    texts = ["Intro: Gloom Uno Gloom", "nothing", "Uno, then Gloom Uno Gloom"]
    layout = SpanLayout(3)
    layout.add(np.array([2, 0]), np.array([0, 7]), joined, np.array([2, 0]))
    layout.add(np.array([2, 1]), np.array([10, 0]), joined, np.array([0, 1]))
    col = entity_lists(*layout.arrays(), reg).to_list()
    assert [[t[e["start"] : e["end"]] for e in row] for t, row in zip(texts, col)] == [
        ["Gloom", "Uno", "Gloom"],
        [],
        ["Uno", "Gloom", "Uno", "Gloom"],
    ]
    assert [e["entity_id"] for e in col[2]] == ["item:9", "item:2", "item:9", "item:2"]


def test_render_fills_every_template_like_str_format():
    reg = Registry()
    titles = [reg.mark(t, "item", f"item:{i}") for i, t in enumerate(["Gloom", "Uno Deluxe", "Ü-Puzzle", ""])]
    plan = render.PromptPlan()
    h = plan.history([2, 0, 3, 1])
    r = (
        plan.add_reviews(
            rating=["5", "4"],
            explanation=["", "It is fun."],
            feature=["", "colours"],
            review=["", "Great game."],
            summary=["", "Fun"],
        )
        + 1
    )
    c = plan.candidates(np.array([1, 3, 0]))
    for i, _ in enumerate(templates.TEMPLATES):
        plan.add(i, i % 3, i % 2, i % 4, h, 1 + i % 2, r, c if i % 5 == 0 else -1)
    item_ids = pl.Series(["i0", "i1", "i2", "i3"])
    df = render.render(plan, ["u0", "u1"], ["user_u0", "user_u1"], titles, item_ids, reg)
    hist = "Ü-Puzzle; Gloom; ; Uno Deluxe"
    for i, (tpl, row) in enumerate(zip(templates.TEMPLATES, df.iter_rows(named=True))):
        values = {
            "user": f"user_u{i % 2}",
            "item": titles[i % 4][0],
            "history": hist,
            "answer": ("yes", "no")[i % 2],
            "rating": "4",
            "explanation": "It is fun.",
            "feature": "colours",
            "review": "Great game.",
            "summary": "Fun",
        }
        assert row["source"] == tpl.source.format(**values) and row["target"] == tpl.target.format(**values)
        assert (row["template_id"], row["split"], row["item_id"]) == (
            tpl.template_id,
            render.SPLITS[i % 3],
            f"i{i % 4}",
        )
        want = [
            t
            for name in (f for _, f, _, _ in string.Formatter().parse(tpl.source) if f)
            if name in ("item", "history")
            for t in (hist.split("; ") if name == "history" else [titles[i % 4][0]])
        ]
        assert [row["source"][e["start"] : e["end"]] for e in row["source_entities"]] == want
        assert [row["target"][e["start"] : e["end"]] for e in row["target_entities"]] == (
            [titles[i % 4][0]] if tpl.target == "{item}" else []
        )
        assert row["candidates"] == (["i1", "i3", "i0"] if i % 5 == 0 else None)


@pytest.mark.parametrize("d,expect", [(10, (1, 3, 6)), (20, (2, 6, 12)), (1, (0, 0, 1)), (5, (0, 2, 3))])
def test_period_counts_follow_10_30_60(d, expect):
    c = corpus.period_counts(d)
    assert (c["long"], c["medium"], c["short"]) == expect and sum(c.values()) == d


def test_sample_window_periods():
    rng = random.Random(0)
    for m in (1, 3, 7, 40, 200):
        long_ = corpus.sample_window("long", m, rng)
        med = corpus.sample_window("medium", m, rng)
        short = corpus.sample_window("short", m, rng)
        assert long_ == sorted(set(long_)) and len(long_) == min(m, corpus.LONG_MAX)
        assert min(med) >= m - -(-m // 2) and len(med) == min(-(-m // 2), corpus.MEDIUM_MAX)
        assert short == list(range(short[0], short[0] + len(short))) and short[-1] < m
        assert short[0] >= m - max(5, -(-m // 5))


def test_templates_per_family():
    for fam in ("rating", "sequential", "explanation", "review", "direct"):
        ts = templates.by_family(fam)
        assert len(ts) >= 8
        assert any(not t.seen for t in ts) and any(t.seen for t in ts)
    ids = [t.template_id for t in templates.TEMPLATES]
    assert len(ids) == len(set(ids))
    # sequential / direct-rank answers are the item title; yes/no answers are the answer field
    assert all(t.target == "{item}" for t in templates.by_family("sequential"))
    assert all(t.target == "{answer}" for t in templates.by_family("direct", kinds=("yesno",)))


def test_template_picker_test_adds_every_unseen():
    pool = templates.by_family("sequential")
    choose = prompts.template_picker(random.Random(0))
    picked = [templates.TEMPLATES[i] for i in choose(prompts.TRAIN, pool)]
    assert len(picked) == 1 and picked[0].seen and picked[0] in pool
    test = [templates.TEMPLATES[i] for i in choose(prompts.TEST, pool)]
    assert {t.template_id for t in test if not t.seen} == {t.template_id for t in pool if not t.seen}
    assert sum(t.seen for t in test) == 1


def test_negatives_matrix_excludes_history_and_is_distinct():
    rng = np.random.default_rng(0)
    seqs = [[0, 1, 2, 3], [5, 6, 7], list(range(0, 95))]
    out = prompts.negatives_matrix(seqs, 120, 30, rng)
    for s, neg in zip(seqs, out):
        assert len(set(neg.tolist())) == len(neg)
        assert not set(neg.tolist()) & set(s)
    assert len(out[2]) == 25  # only 25 never-interacted items exist


def test_explanation_extraction_is_deterministic():
    reviews = [
        "Great. The strings sound bright and clear on my guitar. Fast shipping!",
        "The strings broke after a week of use on my guitar.",
        "My guitar stays in tune now.",
        None,
    ]
    e1, f1 = explain.extract(reviews)
    e2, f2 = explain.extract(list(reviews))
    assert (e1, f1) == (e2, f2)
    assert e1[0] == "The strings sound bright and clear on my guitar."
    assert f1[0] in e1[0].lower() and f1[0] in ("guitar", "strings")
    assert e1[3] is None and f1[3] is None
    assert sentences("A b. C d! E") == ["A b.", "C d!", "E"]
