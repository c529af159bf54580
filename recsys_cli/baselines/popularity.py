"""Popularity baseline: every user gets the items bought most often in the visible histories.

recsys baseline popularity --data runs/toys --out runs/toys/popularity.parquet
"""

from __future__ import annotations

import numpy as np

from recsys_cli.baselines.context import Context


def popularity_scores(ctx: Context) -> np.ndarray:
    """Interaction count per item over the split's visible histories, float64 [N]."""
    counts = np.zeros(len(ctx.items), dtype=np.float64)
    for hist in ctx.histories.values():
        for item in hist:
            counts[ctx.index[item]] += 1
    return counts


def scorer(ctx: Context):
    counts = popularity_scores(ctx)
    return lambda user: counts if user in ctx.histories else None
