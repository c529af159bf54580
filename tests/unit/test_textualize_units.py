"""Unit tests of the textualize library: text cleaning, spans, periods, templates, explanations."""

from __future__ import annotations

import random

import numpy as np
import pytest

from recsys_cli.data import corpus, explain, prompts, templates
from recsys_cli.data.spans import Registry, chunks, entity_column, fill, join, resolve
from recsys_cli.data.text import clean, norm_key, sentences


def test_clean_unescapes_html_twice_and_collapses_whitespace():
    assert clean("  Cats &amp;amp; Dogs\n\t Game ") == "Cats & Dogs Game"
    assert clean("Barbie &quot;Pink&quot; <b>Doll</b>") == 'Barbie "Pink" Doll'
    assert clean(None) == ""
    assert norm_key("  Board   GAMES ") == "board games"


def test_join_and_fill_keep_offsets():
    reg = Registry()
    a, b = reg.mark("Gloom", "item", "item:2"), reg.mark("Uno", "item", "item:9")
    text, spans = join([a, b], "; ")
    assert [text[s:e] for s, e, _ in spans] == ["Gloom", "Uno"]
    tpl = templates.TEMPLATES[10]  # sequential-1: {user} ... {history} ... {user}
    src, found = fill(tpl.parts, {"user": "user_1", "history": (text, spans), "item": b})
    assert [src[s:e] for s, e, _ in resolve(found)] == ["Gloom", "Uno"]
    doc, parts = chunks([("Intro:", []), a, b, a], " ")
    assert [doc[s:e] for s, e, _ in resolve(parts)] == ["Gloom", "Uno", "Gloom"]
    col = entity_column([found, [], parts], reg).to_list()
    assert [(e["start"], e["end"], e["entity_id"]) for e in col[0]] == [(s, e, reg.ids[x]) for s, e, x in resolve(found)]
    assert col[1] == [] and [doc[e["start"]:e["end"]] for e in col[2]] == ["Gloom", "Uno", "Gloom"]


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


def test_choose_templates_test_adds_every_unseen():
    pool = templates.by_family("sequential")
    rng = random.Random(0)
    assert all(t.seen for t in prompts.choose_templates("train", pool, rng))
    test = prompts.choose_templates("test", pool, rng)
    assert {t.template_id for t in test if not t.seen} == {t.template_id for t in pool if not t.seen}


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
