"""Biased matrix factorisation for ratings, in torch: r(u, i) = mu + b_u + b_i + p_u . q_i.

Trained full-batch with Adam on the ratings of interactions.parquet, leaving out every
(user, item) pair that has a valid or test prompt; early-stopped on the RMSE of the valid
rating prompts. It answers rating prompts with the predicted stars (clipped to [1, 5],
two decimals) and like/dislike prompts (their template's answer type) with `ratings.like_answer`.

    recsys baseline mf --data runs/musical --out runs/musical/mf.parquet --seed 0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data.ratings import like_answer, parse_ratings
from recsys_cli.data.templates import YES_NO_ANSWER, answer_types
from recsys_cli.errors import RecsysError


@dataclass
class MFConfig:
    dim: int = 32
    lr: float = 0.01
    l2: float = 0.05  # weight on the mean squared factor norm
    max_epochs: int = 300  # full-batch steps
    patience: int = 20
    seed: int = 0
    threads: int = 2


def _pairs(df: pl.DataFrame) -> pl.Series:
    return df["user_id"] + "\x1f" + df["item_id"]


def check_ratings(data: Path) -> int:
    """Number of rated interactions; an error naming the file when there are none."""
    inter = read_artifact(data, schemas.INTERACTIONS, ["rating"])
    rated = inter.height - inter["rating"].null_count()
    if rated == 0:
        raise RecsysError(
            f"{Path(data) / schemas.INTERACTIONS}: no ratings to train MF on; expected a rating column", 2
        )
    return rated


def fit_predict(
    data: Path, split: str, cfg: MFConfig, on_epoch: Callable[[int, float, float], None] | None = None
) -> tuple[pl.DataFrame, dict]:
    """Train MF and return (predictions frame for the split's rating prompts, summary)."""
    import torch

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    inter = read_artifact(data, schemas.INTERACTIONS, ["user_id", "item_id", "rating"]).drop_nulls("rating")
    cols = ["prompt_id", "family", "template_id", "seen", "split", "user_id", "item_id", "target"]
    prompts = read_artifact(data, schemas.PROMPTS, cols).filter(pl.col("family") == "rating")
    held = prompts.filter(pl.col("split").is_in(["valid", "test"]))
    train = inter.filter(~_pairs(inter).is_in(_pairs(held).implode()))
    if train.height == 0:
        raise RecsysError(
            f"{Path(data) / schemas.INTERACTIONS}: no ratings to train MF on; expected a rating column", 2
        )
    users = {u: n for n, u in enumerate(sorted(set(train["user_id"]) | set(prompts["user_id"])))}
    items = {i: n for n, i in enumerate(sorted(set(train["item_id"]) | set(prompts["item_id"])))}

    def encode(df: pl.DataFrame):
        u = torch.tensor([users[x] for x in df["user_id"]], dtype=torch.long)  # [R]
        i = torch.tensor([items[x] for x in df["item_id"]], dtype=torch.long)  # [R]
        return u, i

    tu, ti = encode(train)
    tr = torch.tensor(train["rating"].to_numpy(), dtype=torch.float32)  # [R]
    valid = prompts.filter(pl.col("split") == "valid")
    valid = valid.with_columns(stars=parse_ratings(valid["target"])).drop_nulls("stars")  # like prompts drop out
    vu, vi = encode(valid)
    vr = torch.tensor(valid["stars"].to_numpy(), dtype=torch.float32)

    mu = float(tr.mean())
    P = torch.nn.Parameter(torch.randn(len(users), cfg.dim) * 0.01)  # [U, D]
    Q = torch.nn.Parameter(torch.randn(len(items), cfg.dim) * 0.01)  # [I, D]
    bu = torch.nn.Parameter(torch.zeros(len(users)))  # [U]
    bi = torch.nn.Parameter(torch.zeros(len(items)))  # [I]
    opt = torch.optim.Adam([P, Q, bu, bi], lr=cfg.lr)

    def predict(u, i):  # [R], [R] -> [R]
        return mu + bu[u] + bi[i] + (P[u] * Q[i]).sum(-1)

    best, best_state, bad, epochs = float("inf"), None, 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        epochs = epoch
        pred = predict(tu, ti)  # [R]
        reg = (P[tu].pow(2).sum(-1) + Q[ti].pow(2).sum(-1)).mean() + (bu[tu].pow(2) + bi[ti].pow(2)).mean()
        loss = (pred - tr).pow(2).mean() + cfg.l2 * reg
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            target = (predict(vu, vi).clamp(1, 5) - vr).pow(2).mean().sqrt().item() if len(vr) else float(loss)
        if on_epoch is not None:
            on_epoch(epoch, float(loss.detach()), target)
        if target < best - 1e-5:
            best, bad = target, 0
            best_state = [t.detach().clone() for t in (P, Q, bu, bi)]
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        with torch.no_grad():
            for t, s in zip((P, Q, bu, bi), best_state):
                t.copy_(s)

    part = prompts.filter(pl.col("split") == split).sort("prompt_id")
    pu, pi = encode(part)
    with torch.no_grad():
        stars = predict(pu, pi).clamp(1, 5).numpy()  # [R]
    summary = {"train_ratings": train.height, "epochs": epochs, "best_valid_rmse": best, "global_mean": mu}
    return _prediction_frame(data, part, stars), summary


def _prediction_frame(data: Path, part: pl.DataFrame, stars) -> pl.DataFrame:
    """Rating prompts answered with the predicted star (2 decimals), like prompts with yes / no."""
    is_like = (answer_types(part["template_id"], str(Path(data) / schemas.PROMPTS)) == YES_NO_ANSWER).to_list()
    output = [like_answer(s) if like else f"{s:.2f}" for s, like in zip(stars, is_like)]
    return part.select("prompt_id", "family", "template_id", "seen").with_columns(
        pl.Series("output", output, dtype=pl.Utf8),
        pl.lit(None, dtype=pl.List(pl.Utf8)).alias("ranked"),
        pl.lit(None, dtype=pl.List(pl.Float64)).alias("scores"),
        pl.lit(True).alias("valid"),
    )
