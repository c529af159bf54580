"""Paired bootstrap: is method A better than method B on the same prompts, beyond noise?

    from recsys_cli.evaluation.bootstrap import paired_bootstrap
    paired_bootstrap(ranks_a, ranks_b, "NDCG@10", seed=0)
    # {"diff": 0.0041, "ci95": [-0.0006, 0.0090], "excludes_0": False, "n": 2000, "resamples": 2000, "seed": 0}

Input: the 0-based rank of each prompt's target under A and under B, in the same prompt order
(evaluation/metrics.truth_ranks; a miss is any rank >= k). The per-prompt metric
(metrics.per_prompt: HR@k or NDCG@k) is computed for both, and d = A - B per prompt. `diff` is
the mean of d; the 95% interval is the 2.5th and 97.5th percentiles of the mean of d over
`resamples` resamples of the prompts drawn with replacement (the same resample for both
methods: that is what makes it paired). `excludes_0`: the whole interval lies on one side of 0.
Seeded: the same inputs and seed give the same interval. Vectorised (numpy); the resamples are
drawn in blocks so memory stays bounded for large prompt sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys_cli.evaluation.metrics import per_prompt

RESAMPLES = 2000
BLOCK_CELLS = 1 << 23  # resample indices held at once (64 MiB of int64)


def paired_interval(
    a_values: np.ndarray, b_values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Mean of a - b over paired per-prompt values, with its 95% percentile bootstrap interval."""
    a_values, b_values = np.asarray(a_values, dtype=np.float64), np.asarray(b_values, dtype=np.float64)
    if a_values.shape != b_values.shape or a_values.ndim != 1:
        raise ValueError(f"paired values: two 1-D arrays of one length; got {a_values.shape} and {b_values.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1; got {resamples}")
    d = a_values - b_values  # [N]
    n = len(d)
    out: dict[str, Any] = {"n": n, "resamples": resamples, "seed": seed}
    if n == 0:
        return {**out, "diff": 0.0, "ci95": [0.0, 0.0], "excludes_0": False}
    rng = np.random.default_rng(seed)
    rows = max(1, min(resamples, BLOCK_CELLS // n))  # resamples per block
    means = np.empty(resamples, dtype=np.float64)  # [R]
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))  # [B, N] prompts drawn with replacement
        means[start:stop] = d[idx].mean(axis=1)  # [B]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {**out, "diff": float(d.mean()), "ci95": [float(lo), float(hi)], "excludes_0": bool(lo > 0 or hi < 0)}


def paired_bootstrap(
    a_ranks: np.ndarray, b_ranks: np.ndarray, metric: str, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """metric(A) - metric(B) over the same prompts (0-based target ranks, same order), with a 95% interval."""
    return paired_interval(per_prompt(a_ranks, metric), per_prompt(b_ranks, metric), resamples, seed)


def format_interval(result: dict[str, Any]) -> str:
    """'+0.0040 [-0.0006, +0.0090]', with a '*' when the interval excludes 0."""
    lo, hi = result["ci95"]
    star = " *" if result["excludes_0"] else ""
    return f"{result['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]{star}"
