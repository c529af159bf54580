"""Metrics of the paper's Tables 2-9, vectorised, with every convention spelled out.

Ranking (sequential, direct): one ground-truth item per prompt. With `rank` the 0-based
position of the truth in the ranked list (first occurrence), HR@k = 1[rank < k] and
NDCG@k = 1[rank < k] / log2(rank + 2) (the ideal DCG is 1), averaged over prompts. A prompt
whose list lacks the truth, is empty or null scores 0. Validity = share of all ranked ids
that are real items.

Rating: the first number in the output is parsed and clipped to [1, 5] (data/ratings.py, the
same parser `infer` uses); RMSE and MAE are over
parsed outputs, the unparsable ones are counted and reported (`unparsable`).

Text (explanation BLEU-4, review BLEU-2, ROUGE-1/2/L), two conventions:
* standard: sacrebleu's corpus BLEU (13a tokenizer, exp smoothing, max order n) and
  rouge-score's ROUGE F1 (lowercased, alphanumeric tokens, n-gram counts with clipping,
  no stemmer) averaged over pairs; an empty output scores 0. x100.
* p5 (`--p5-compatible`): BLEU = sacrebleu with tokenize='none', smooth_method='none',
  max order n (whitespace tokens, corpus level); ROUGE on space-split tokens without
  lowercasing, unique n-grams (sets), ROUGE-L F with beta = P/R; empty outputs are skipped
  as P5 skips them (and counted in `empty`). x100.

    from recsys_cli.evaluation.metrics import ranking_metrics, rating_metrics, text_metrics
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from typing import Sequence

import numpy as np
import polars as pl

from recsys_cli.data.ratings import parse_ratings
from recsys_cli.data.templates import YES_NO

KS = (1, 5, 10)
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


# --- ranking ------------------------------------------------------------------------------
def truth_ranks(ranked: pl.Series, truth: pl.Series, depth: int = max(KS)) -> np.ndarray:
    """0-based rank of `truth[i]` in `ranked[i][:depth]`; `depth` where it is absent. int64 [N]."""
    n = len(ranked)
    heads = ranked.list.head(depth).fill_null([])  # top-`depth` only: a 1M x 10 frame stays small
    lengths = heads.list.len().to_numpy().astype(np.int64)  # [N]
    flat = heads.explode()  # [F]; polars versions differ on whether [] explodes to a null
    per_row = lengths if len(flat) == int(lengths.sum()) else np.maximum(lengths, 1)  # [N]
    keep_rows = np.repeat(np.arange(n), per_row)  # [F]
    starts = np.concatenate([[0], np.cumsum(per_row)[:-1]]).astype(np.int64)  # [N]
    pos = np.arange(len(flat)) - np.repeat(starts, per_row)  # [F]
    truth_rep = truth.cast(pl.Utf8).gather(pl.Series(keep_rows))  # [F]
    hit = (flat == truth_rep).fill_null(False).to_numpy()  # [F]
    rank = np.full(n, depth, dtype=np.int64)  # [N]
    hit_rows, hit_pos = keep_rows[hit], pos[hit]
    np.minimum.at(rank, hit_rows, hit_pos)  # first occurrence wins
    return rank


def per_prompt(rank: np.ndarray, metric: str) -> np.ndarray:
    """One value per prompt of `metric` ("HR@k" or "NDCG@k") from 0-based ranks: float64 [N].
    HR@k = 1[rank < k]; NDCG@k = 1[rank < k] / log2(rank + 2). The averages below and the paired
    bootstrap (evaluation/bootstrap.py) are built on it."""
    name, _, k_text = metric.partition("@")
    if name not in ("HR", "NDCG") or not k_text.isdigit():
        raise ValueError(f"metric {metric!r}: expected HR@k or NDCG@k")
    rank = np.asarray(rank)
    hit = rank < int(k_text)  # [N]
    if name == "HR":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)


def ranking_from_ranks(rank: np.ndarray, ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    """HR@k and NDCG@k (k > 1) from 0-based ranks (rank >= k means a miss); keys start with `prefix`."""
    out: dict[str, float] = {}
    for k in ks:
        for name in ("HR", "NDCG") if k > 1 else ("HR",):
            values = per_prompt(rank, f"{name}@{k}")
            out[f"{prefix}{name}@{k}"] = float(values.mean()) if len(values) else 0.0
    return out


def _share(mask: pl.Series) -> float:
    """Share of true values in a boolean Series (nulls left out); 0 when it has none."""
    value = mask.mean()
    return float(value) if isinstance(value, (int, float)) else 0.0


def validity(ranked: pl.Series, items: pl.Series) -> float:
    """Share of all ranked ids (over every list) that are real item ids; 0 when none ranked."""
    flat = ranked.explode().drop_nulls()
    if len(flat) == 0:
        return 0.0
    return _share(flat.is_in(items.implode()))


def ranking_metrics(ranked: pl.Series, truth: pl.Series, items: pl.Series | None = None, ks=KS) -> dict[str, float]:
    rank = truth_ranks(ranked, truth, depth=max(ks))
    out = ranking_from_ranks(rank, ks)
    if items is not None:
        out["validity"] = validity(ranked, items)
    out["n"] = len(rank)
    out["empty"] = int((ranked.list.len().fill_null(0) == 0).sum())
    return out


def binary_accuracy(output: pl.Series, target: pl.Series) -> dict[str, float]:
    """Yes/no prompts: the first word of the output (lowercased, punctuation stripped) vs target."""
    pred = output.fill_null("").str.to_lowercase().str.extract(r"([a-z]+)", 1).fill_null("")
    gold = target.str.to_lowercase().str.strip_chars()
    unparsable = int((~pred.is_in(list(YES_NO))).sum())
    acc = _share(pred == gold)
    return {"accuracy": acc, "unparsable": unparsable, "n": len(gold)}


# --- rating -------------------------------------------------------------------------------
def rating_metrics(output: pl.Series, target: pl.Series, low: float = 1.0, high: float = 5.0) -> dict[str, float]:
    """RMSE / MAE over parsable outputs (clipped to [low, high]); unparsable ones counted."""
    pred = parse_ratings(output, low, high)  # the one parser (data/ratings.py), clipped
    gold = target.cast(pl.Utf8).str.strip_chars().cast(pl.Float64, strict=False)
    ok = (pred.is_not_null() & pred.is_finite().fill_null(False) & gold.is_not_null()).to_numpy()
    p = pred.to_numpy()[ok]
    g = gold.to_numpy()[ok]
    err = p - g
    return {
        "RMSE": float(np.sqrt(np.mean(err**2))) if len(err) else float("nan"),
        "MAE": float(np.mean(np.abs(err))) if len(err) else float("nan"),
        "n": len(output),
        "unparsable": int(len(output) - ok.sum()),
    }


# --- BLEU ---------------------------------------------------------------------------------
def bleu_stats(hyps: Sequence[str], refs: Sequence[str], order: int) -> tuple[list[int], list[int], int, int]:
    """Corpus sufficient statistics on whitespace tokens: clipped matches and totals per order,
    hypothesis length, reference length."""
    correct, total = [0] * order, [0] * order
    sys_len = ref_len = 0
    for hyp, ref in zip(hyps, refs):
        h, r = hyp.split(), ref.split()
        sys_len += len(h)
        ref_len += len(r)
        for n in range(1, order + 1):
            hc = Counter(zip(*(h[i:] for i in range(n))))
            if not hc:
                continue
            rc = Counter(zip(*(r[i:] for i in range(n))))
            total[n - 1] += len(h) - n + 1
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items() if g in rc)
    return correct, total, sys_len, ref_len


def bleu_from_stats(correct: list[int], total: list[int], sys_len: int, ref_len: int) -> float:
    """Unsmoothed BLEU x100: geometric mean of the n-gram precisions times the brevity
    penalty exp(1 - ref/sys) when sys < ref; 0 as soon as one order has no match."""
    if sys_len == 0 or any(t == 0 or c == 0 for c, t in zip(correct, total)):
        return 0.0
    log_p = sum(math.log(c / t) for c, t in zip(correct, total)) / len(correct)
    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len)
    return 100.0 * bp * math.exp(log_p)


def _stats_chunk(args: tuple[list[str], list[str], int, bool]):
    hyps, refs, order, tok13a = args
    if tok13a:
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        tok = Tokenizer13a()
        hyps, refs = [tok(h.rstrip()) for h in hyps], [tok(r.rstrip()) for r in refs]
    return bleu_stats(hyps, refs, order)


def corpus_stats(
    hyps: Sequence[str], refs: Sequence[str], order: int, tok13a: bool = False, workers: int | None = None
):
    """`bleu_stats` summed over process chunks (fork) when the corpus is large."""
    hyps, refs = list(hyps), list(refs)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(hyps) < 20_000:
        return _stats_chunk((hyps, refs, order, tok13a))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    step = math.ceil(len(hyps) / workers)
    chunks = [(hyps[i : i + step], refs[i : i + step], order, tok13a) for i in range(0, len(hyps), step)]
    correct, total, sys_len, ref_len = [0] * order, [0] * order, 0, 0
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for c, t, s, r in pool.map(_stats_chunk, chunks):
            correct = [a + b for a, b in zip(correct, c)]
            total = [a + b for a, b in zip(total, t)]
            sys_len, ref_len = sys_len + s, ref_len + r
    return correct, total, sys_len, ref_len


def bleu_p5(hyps: Sequence[str], refs: Sequence[str], order: int = 4, workers: int | None = None) -> float:
    """P5's BLEU-n (= sacrebleu tokenize='none', smooth_method='none', max_ngram_order=n)."""
    return bleu_from_stats(*corpus_stats(hyps, refs, order, tok13a=False, workers=workers))


def bleu_standard(hyps: Sequence[str], refs: Sequence[str], order: int = 4, workers: int | None = None) -> float:
    """sacrebleu's default corpus BLEU (13a tokenizer, exp smoothing) with max n-gram order
    `order`: the statistics are counted here (in parallel), the formula is sacrebleu's."""
    from sacrebleu.metrics import BLEU

    correct, total, sys_len, ref_len = corpus_stats(hyps, refs, order, tok13a=True, workers=workers)
    score = BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp", max_ngram_order=order)
    return float(score.score)


# --- ROUGE --------------------------------------------------------------------------------
def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence length, bit-parallel (Hyyrö 2004): O(len(b)) big-int ops."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's tokenizer without stemming: lowercase, alphanumeric runs."""
    return [t for t in _NON_ALNUM.split(text.lower()) if t]


def rouge_pair_standard(hyp: str, ref: str) -> tuple[float, float, float]:
    """rouge-score F1 of ROUGE-1, ROUGE-2, ROUGE-L for one pair (fractions, not x100)."""
    h, r = rouge_tokens(hyp), rouge_tokens(ref)
    out = []
    for n in (1, 2):
        hc = Counter(zip(*(h[i:] for i in range(n))))
        rc = Counter(zip(*(r[i:] for i in range(n))))
        inter = sum(min(c, rc[g]) for g, c in hc.items() if g in rc)
        out.append(_f1(inter / max(sum(hc.values()), 1), inter / max(sum(rc.values()), 1)))
    if not h or not r:
        out.append(0.0)
    else:
        lcs = lcs_length(r, h)
        out.append(_f1(lcs / len(h), lcs / len(r)))
    return out[0], out[1], out[2]


def rouge_pair_p5(hyp: str, ref: str) -> tuple[float, float, float]:
    """P5's ROUGE for one pair: tokens = text.split(" "), unique n-grams, F1 with a 1e-8
    guard for ROUGE-N, and ROUGE-L F with beta = P / R."""
    h, r = hyp.split(" "), ref.split(" ")
    out = []
    for n in (1, 2):
        hs = set(zip(*(h[i:] for i in range(n))))
        rs = set(zip(*(r[i:] for i in range(n))))
        overlap = len(hs & rs)
        p = overlap / len(hs) if hs else 0.0
        rec = overlap / len(rs) if rs else 0.0
        out.append(2.0 * (p * rec / (p + rec + 1e-8)))
    lcs = lcs_length(h, r)
    r_l, p_l = lcs / len(r), lcs / len(h)
    beta = p_l / (r_l + 1e-12)
    num = (1 + beta**2) * r_l * p_l
    out.append(num / (r_l + beta**2 * p_l + 1e-12))
    return out[0], out[1], out[2]


def _rouge_chunk(args: tuple[list[str], list[str], bool]) -> np.ndarray:
    hyps, refs, p5 = args
    fn = rouge_pair_p5 if p5 else rouge_pair_standard
    return np.array([fn(h, r) for h, r in zip(hyps, refs)], dtype=np.float64).reshape(-1, 3)


def rouge_matrix(hyps: Sequence[str], refs: Sequence[str], p5: bool = False, workers: int | None = None) -> np.ndarray:
    """Per-pair [ROUGE-1, ROUGE-2, ROUGE-L] F values, float64 [N, 3]; split over processes
    when there are many pairs (`workers` defaults to the CPU count, at most 4)."""
    hyps, refs = list(hyps), list(refs)
    workers = workers or min(4, os.cpu_count() or 1)
    if workers <= 1 or len(hyps) < 20_000:
        return _rouge_chunk((hyps, refs, p5))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    step = math.ceil(len(hyps) / workers)
    chunks = [(hyps[i : i + step], refs[i : i + step], p5) for i in range(0, len(hyps), step)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return np.concatenate(list(pool.map(_rouge_chunk, chunks)))


def text_metrics(output: pl.Series, target: pl.Series, bleu_order: int, p5: bool = False) -> dict[str, float]:
    """BLEU-n and ROUGE-1/2/L (x100) for one family; see the module docstring for conventions."""
    hyps = output.fill_null("").to_list()
    refs = target.fill_null("").to_list()
    empty = sum(1 for h in hyps if not h.strip())
    if p5:
        pairs = [(h, r) for h, r in zip(hyps, refs) if len(h) > 0]  # P5 drops empty outputs
        kept_h, kept_r = [p[0] for p in pairs], [p[1] for p in pairs]
        bleu = bleu_p5(kept_h, kept_r, bleu_order)
        rouge = rouge_matrix(kept_h, kept_r, p5=True)
    else:
        bleu = bleu_standard(hyps, refs, bleu_order)
        rouge = rouge_matrix(hyps, refs, p5=False)
    means = rouge.mean(axis=0) * 100 if len(rouge) else np.zeros(3)
    return {
        f"BLEU-{bleu_order}": bleu,
        "ROUGE-1": float(means[0]),
        "ROUGE-2": float(means[1]),
        "ROUGE-L": float(means[2]),
        "n": len(hyps),
        "empty": empty,
    }
