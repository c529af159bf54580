"""Item-to-item co-occurrence baseline (ItemKNN): items bought by the same users are similar.

sim(i, j) = co(i, j) / sqrt(n_i * n_j) (cosine over user sets, built from the visible
histories, diagonal zeroed); a user's score for j = sum of sim(i, j) over their last
`window` history items. Popularity breaks ties (added with a tiny weight).

    recsys baseline itemknn --data runs/toys --out runs/toys/itemknn.parquet
"""

from __future__ import annotations

import numpy as np

from recsys_cli.baselines.context import Context
from recsys_cli.baselines.popularity import popularity_scores


def similarity(ctx: Context):
    """Sparse cosine item-item similarity, scipy CSR [N, N]."""
    from scipy import sparse

    rows, cols = [], []
    for u, hist in enumerate(ctx.histories.values()):
        for item in set(hist):
            rows.append(u)
            cols.append(ctx.index[item])
    ui = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(len(ctx.histories), len(ctx.items))
    )  # [U, N] binary
    co = (ui.T @ ui).tocsr()  # [N, N] co-occurrence counts
    co.setdiag(0)
    co.eliminate_zeros()
    n = np.asarray(ui.sum(0)).ravel()  # [N] users per item
    inv = 1.0 / np.sqrt(np.maximum(n, 1.0))
    return sparse.diags(inv) @ co @ sparse.diags(inv)  # [N, N]


def scorer(ctx: Context, window: int = 20):
    sim = similarity(ctx).tocsr()
    pop = popularity_scores(ctx)
    tiebreak = pop / (pop.max() + 1.0) * 1e-6

    def score(user: str):
        hist = ctx.histories.get(user)
        if hist is None:
            return None
        idx = [ctx.index[i] for i in hist[-window:]]
        if not idx:
            return tiebreak.copy()
        return np.asarray(sim[idx].sum(0)).ravel() + tiebreak  # [N]

    return score
