"""Every metric against values computed by hand (and the reference packages where they exist).

python -m pytest tests/unit/test_metrics.py
"""

from __future__ import annotations

import math
import random

import numpy as np
import polars as pl
import pytest

from recsys_cli.evaluation import metrics as M


def ranked(lists):
    return pl.Series("ranked", lists, dtype=pl.List(pl.Utf8))


# --- ranking ------------------------------------------------------------------------------
def test_ranking_hand_computed():
    r = ranked([["a", "b", "c"], ["x", "y"], [], None, ["b", "a", "a"], ["q"] * 9 + ["t"]])
    truth = pl.Series(["c", "z", "a", "a", "a", "t"])
    assert M.truth_ranks(r, truth).tolist() == [2, 10, 10, 10, 1, 9]
    m = M.ranking_metrics(r, truth, items=pl.Series(["a", "b", "c", "t"]))
    assert m["HR@1"] == 0.0
    assert m["HR@5"] == pytest.approx(2 / 6)
    assert m["NDCG@5"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(3)) / 6)
    assert m["HR@10"] == pytest.approx(3 / 6)
    assert m["NDCG@10"] == pytest.approx((0.5 + 1 / math.log2(3) + 1 / math.log2(11)) / 6)
    # ranked ids: a b c x y b a a q*9 t = 18 ids, real: a b c b a a t = 7
    assert m["validity"] == pytest.approx(7 / 18)
    assert m["n"] == 6 and m["empty"] == 2


def test_ranking_top1_and_first_occurrence():
    m = M.ranking_metrics(ranked([["a", "a"], ["b", "a"]]), pl.Series(["a", "a"]))
    assert m["HR@1"] == 0.5
    assert m["NDCG@5"] == pytest.approx((1.0 + 1 / math.log2(3)) / 2)


def test_ranking_matches_naive_loop_on_random_lists():
    rng = random.Random(3)
    lists, truth = [], []
    for _ in range(500):
        lists.append([str(rng.randrange(30)) for _ in range(rng.randrange(0, 15))])
        truth.append(str(rng.randrange(30)))
    rank = M.truth_ranks(ranked(lists), pl.Series(truth))
    for lst, t, got in zip(lists, truth, rank):
        head = lst[:10]
        assert got == (head.index(t) if t in head else 10)


# --- binary and rating ----------------------------------------------------------------------
def test_binary_accuracy_hand_computed():
    m = M.binary_accuracy(pl.Series(["Yes.", "no", "maybe", None]), pl.Series(["yes", "yes", "no", "no"]))
    assert m == {"accuracy": 0.25, "unparsable": 2, "n": 4}


def test_rating_clips_and_counts_unparsable():
    out = pl.Series(["4", "5 stars", "abc", "7", None, "0.5"])
    gold = pl.Series(["3", "5", "4", "4", "2", "2"])
    m = M.rating_metrics(out, gold)
    # parsed: 4, 5, 7->5, 0.5->1; errors 1, 0, 1, -1
    assert m["unparsable"] == 2 and m["n"] == 6
    assert m["RMSE"] == pytest.approx(math.sqrt(3 / 4))
    assert m["MAE"] == pytest.approx(3 / 4)


def test_rating_all_unparsable_is_nan_not_zero():
    m = M.rating_metrics(pl.Series(["n/a"]), pl.Series(["3"]))
    assert math.isnan(m["RMSE"]) and m["unparsable"] == 1


def test_rating_parser_is_the_one_infer_uses():
    from recsys_cli.data.ratings import parse_rating, parse_ratings

    texts = ["I'd say 4.5 stars", "none", ".5", "1e1", "3.", "-2", "4 or 5", "", None]
    assert parse_ratings(pl.Series(texts, dtype=pl.Utf8)).to_list() == [parse_rating(t) for t in texts]
    assert parse_rating("I'd say 4.5 stars") == 4.5 and parse_rating("none") is None


# --- BLEU -----------------------------------------------------------------------------------
def test_bleu_p5_hand_computed():
    hyp, ref = ["the cat sat on the mat"], ["the cat is on the mat"]
    # unigrams 5/6 matched; bigrams: "the cat", "on the", "the mat" of 5 -> 3/5; same length
    assert M.bleu_p5(hyp, ref, 2) == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))
    # brevity: hyp "the cat" vs 6-token ref: p1 = p2 = 1, BP = exp(1 - 6/2)
    assert M.bleu_p5(["the cat"], ref, 2) == pytest.approx(100 * math.exp(1 - 3))
    assert M.bleu_p5(["dog"], ref, 2) == 0.0  # no bigram at all


@pytest.mark.parametrize("order", [1, 2, 4])
def test_bleu_p5_equals_sacrebleu_configured(order):
    from sacrebleu.metrics import BLEU

    rng = random.Random(order)
    vocab = ["the", "toy", "is", "fun", "Fun", "great,", "kids", "love", "it.", "a", "b"]
    for _ in range(25):
        n = rng.randrange(1, 30)
        hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 14))) for _ in range(n)]
        refs = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 14))) for _ in range(n)]
        want = BLEU(tokenize="none", smooth_method="none", max_ngram_order=order).corpus_score(hyps, [refs]).score
        assert M.bleu_p5(hyps, refs, order) == pytest.approx(want, abs=1e-9)


def test_bleu_standard_is_sacrebleu_default():
    from sacrebleu.metrics import BLEU

    hyps, refs = ["The toy is great, kids love it!"], ["The toy is great; my kids love it."]
    assert M.bleu_standard(hyps, refs, 4) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-9)
    rng = random.Random(7)
    vocab = ["The", "toy", "is", "great,", "kids", "love", "it!", "(really)", "5-star", "a", "b", "don't"]
    for order in (2, 4):
        for _ in range(20):
            n = rng.randrange(1, 20)
            hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 12))) for _ in range(n)]
            refs = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 12))) for _ in range(n)]
            want = BLEU(max_ngram_order=order).corpus_score(hyps, [refs]).score
            assert M.bleu_standard(hyps, refs, order) == pytest.approx(want, abs=1e-9)


def test_bleu_parallel_equals_serial():
    rng = random.Random(4)
    vocab = ["the", "toy", "is", "fun", "kids", "love", "it."]
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 12))) for _ in range(21_000)]
    refs = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 12))) for _ in range(21_000)]
    assert M.bleu_p5(hyps, refs, 4, workers=2) == pytest.approx(M.bleu_p5(hyps, refs, 4, workers=1), abs=1e-9)


# --- ROUGE ----------------------------------------------------------------------------------
def test_lcs_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randrange(0, 70))]
        b = [rng.choice("abcd") for _ in range(rng.randrange(0, 70))]
        t = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                t[i, j] = t[i - 1, j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1, j], t[i, j - 1])
        assert M.lcs_length(a, b) == t[-1, -1]


def test_rouge_standard_hand_computed():
    r1, r2, rl = M.rouge_pair_standard("The cat sat", "the cat sat on the mat")
    assert r1 == pytest.approx(2 * 0.5 / 1.5)  # P 3/3, R 3/6
    assert r2 == pytest.approx(2 * 0.4 / 1.4)  # P 2/2, R 2/5
    assert rl == pytest.approx(2 * 0.5 / 1.5)  # LCS 3


def test_rouge_standard_equals_rouge_score_on_random_pairs():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rng = random.Random(1)
    vocab = ["Great", "great", "toy!", "kids", "love", "it", "--", "a", "b", "the", "5-star", "don't"]
    for _ in range(400):
        h = " ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 20)))
        r = " ".join(rng.choice(vocab) for _ in range(rng.randrange(0, 20)))
        s = scorer.score(r, h)
        got = M.rouge_pair_standard(h, r)
        want = (s["rouge1"].fmeasure, s["rouge2"].fmeasure, s["rougeL"].fmeasure)
        assert got == pytest.approx(want, abs=1e-12)


def test_rouge_p5_hand_computed():
    r1, r2, rl = M.rouge_pair_p5("a a b", "a b b c")
    assert r1 == pytest.approx(0.8, abs=1e-7)  # unique: {a,b} vs {a,b,c}: P 1, R 2/3
    assert r2 == pytest.approx(0.4, abs=1e-7)  # {aa, ab} vs {ab, bb, bc}: P 1/2, R 1/3
    # LCS("a a b", "a b b c") = 2: R 1/2, P 2/3, beta = P/R = 4/3
    assert rl == pytest.approx(25 / 45.5, abs=1e-9)
    # no lowercasing, no punctuation stripping
    assert M.rouge_pair_p5("Toy.", "toy")[0] == pytest.approx(0.0)


def test_rouge_matrix_parallel_equals_serial():
    rng = random.Random(2)
    vocab = list("abcdefgh")
    hyps = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 10))) for _ in range(25_000)]
    refs = [" ".join(rng.choice(vocab) for _ in range(rng.randrange(1, 10))) for _ in range(25_000)]
    serial = M.rouge_matrix(hyps[:3000], refs[:3000], workers=1)
    parallel = M.rouge_matrix(hyps, refs, workers=2)
    assert parallel.shape == (25_000, 3)
    np.testing.assert_array_equal(parallel[:3000], serial)


def test_text_metrics_conventions():
    out = pl.Series(["the toy is fun", "", "Great toy"])
    gold = pl.Series(["the toy is fun", "nice", "great toy"])
    std = M.text_metrics(out, gold, 2)
    p5 = M.text_metrics(out, gold, 2, p5=True)
    assert std["empty"] == p5["empty"] == 1 and std["n"] == 3
    # standard: lowercased, the empty output counts as 0: ROUGE-1 = (1 + 0 + 1) / 3
    assert std["ROUGE-1"] == pytest.approx(100 * 2 / 3)
    # p5: the empty output is skipped, "Great" != "great": ROUGE-1 = (1 + 0.5) / 2
    assert p5["ROUGE-1"] == pytest.approx(100 * 1.5 / 2, abs=1e-5)
    # p5 BLEU-2 over the two kept pairs: unigrams 5/6, bigrams 3/4, equal lengths
    assert p5["BLEU-2"] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 4))
