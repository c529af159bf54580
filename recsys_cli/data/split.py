"""The leave-one-out split: the one definition every stage and every model uses.

    python -c "from recsys_cli.data.split import history; print(history(['a','b','c','d'], 'test'))"

For a user's sequence `items` (time order): `items[-1]` is the test target, `items[-2]` the
validation target, `items[:-2]` the training part. A test prompt sees `items[:-1]`, a valid
prompt `items[:-2]`; a training prompt at position t (1 <= t <= n-3) predicts `items[t]`
from `items[:t]`. Nothing a user's valid or test target reveals reaches that user's training
data (corpus, profile, train prompts). Users need at least 3 items.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import polars as pl

T = TypeVar("T")
HOLDOUT = 2  # the valid and test targets at the end of each sequence
MIN_ITEMS = HOLDOUT + 1
SPLITS = ("train", "valid", "test")


def train_items(items: Sequence[T]) -> list[T]:
    """The training part of a sequence: everything but the valid and test targets."""
    return list(items[:-HOLDOUT])


def target_position(n: int, split: str) -> int:
    """Index of the valid / test target in a sequence of n items."""
    if split == "test":
        return n - 1
    if split == "valid":
        return n - 2
    raise ValueError(f"split {split!r} has no single target position; expected valid or test")


def train_positions(n: int) -> range:
    """Positions t whose item is a training target (each is predicted from items[:t])."""
    return range(1, n - HOLDOUT)


def history(items: Sequence[T], split: str, target: T | None = None) -> list[T]:
    """What a prompt of `split` may see: items before its target. For train prompts the
    target must be given (its first position in the sequence)."""
    if split in ("test", "valid"):
        return list(items[: target_position(len(items), split)])
    if split != "train":
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if target is None or target not in items:
        return train_items(items)
    return list(items[: list(items).index(target)])


def split_of_position(pos: pl.Expr, n: pl.Expr) -> pl.Expr:
    """Polars: 'test', 'valid' or 'train' for the row at position `pos` of a sequence of n."""
    return (
        pl.when(pos == n - 1).then(pl.lit("test")).when(pos == n - 2).then(pl.lit("valid")).otherwise(pl.lit("train"))
    )


def is_train_position(pos: pl.Expr, n: pl.Expr) -> pl.Expr:
    """Polars: the row's item is in the training part of its sequence."""
    return pos < n - HOLDOUT
