"""SASRec training (baselines/sasrec.py has the model): early stopping on the validation split,
then, for test prompts, a refit that also learns from the validation target; `fit` runs the
protocol of a split (sasrec.protocol) and returns the scorer of its prompts.

    python -c "from recsys_cli.baselines.sasrec import SASRecConfig; \
from recsys_cli.baselines.sasrec_train import train; \
m, h = train([[1, 2, 3, 4, 5]] * 50, 5, SASRecConfig(hidden=8, blocks=1, max_len=4, max_epochs=3)); print(h[-1])"

`train` fits `loo.train_items(seq)` (items[:-2]) and keeps the weights of the epoch with the
best valid NDCG@10 (items[-2] predicted from items[:-2]). A test prompt sees items[:-1], so the
valid target is an ordinary past interaction for it: `refit` trains a fresh model (same seed) on
items[:-1] for the number of epochs early stopping chose, replaying its lr cuts, with no further
look at any target. This is the usual "retrain on train + valid with the selected settings" step;
bench/sasrec.py checks it one position earlier, on the validation split only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from recsys_cli.baselines.sasrec import (
    SASRecConfig,
    _left_pad,
    build_model,
    rank_metrics,
    score_all,
    training_sequences,
)
from recsys_cli.data import split as loo
from recsys_cli.host_memory import retain_freed_memory

# torch is imported inside the functions, as `recsys --help` must never load it:
# commands/baseline.py imports this module.


def _loss(model, h, seq, tgt, cfg: SASRecConfig, num_items: int, sampler):
    """Cross-entropy at the real positions of a batch: h [B, L, H], seq / tgt int64 [B, L]."""
    import torch
    import torch.nn.functional as F

    keep = tgt > 0  # [B, L]
    length = seq.shape[1]
    if 0 < cfg.negatives < num_items:  # K distinct uniform negatives shared by the batch (+ the target)
        k = cfg.negatives
        cand = torch.randperm(num_items, generator=sampler)[:k] + 1  # [K] item ids
        pos = (h[keep] * model.item(tgt[keep])).sum(-1, keepdim=True)  # [T, 1]
        logits = torch.cat([pos, h[keep] @ model.item(cand).T], dim=1)  # [T, 1 + K]
        slot = torch.full((num_items + 1,), k + 1, dtype=torch.long)  # [N + 1] item -> its logit column
        slot[cand] = torch.arange(1, k + 1)
        index = slot[tgt[keep]][:, None]  # [T, 1] the target drawn as a negative
        if cfg.mask_seen:
            seen = (seq[:, None, :] * torch.ones(length, length, dtype=torch.long).tril()[None])[keep]  # [T, L]
            index = torch.cat([index, slot[seen]], 1)  # [T, 1 + L]
        blocked = torch.zeros(len(pos), k + 2, dtype=torch.bool).scatter(1, index, True)[:, : k + 1]  # [T, 1 + K]
        blocked[:, 0] = False  # the target's own logit
        return F.cross_entropy(logits.masked_fill(blocked, float("-inf")), torch.zeros(len(pos), dtype=torch.long))
    logits = h[keep] @ model.item.weight.T  # [T, N + 1]; column 0 = padding, always masked
    if cfg.mask_seen:
        causal = torch.ones(length, length, dtype=torch.long).tril()  # [L(t), L(j)]
        seen = seq[:, None, :] * causal[None]  # [B, L, L] items at positions j <= t, else 0
        seen = seen.masked_fill(seen == tgt[..., None], 0)[keep]  # [T, L] the target stays in
        index = torch.cat([torch.zeros(len(seen), 1, dtype=torch.long), seen], 1)  # [T, 1 + L]
    else:
        index = torch.zeros(int(keep.sum()), 1, dtype=torch.long)  # [T, 1]
    logits = logits.scatter(1, index, float("-inf"))  # [T, N + 1]
    return F.cross_entropy(logits, tgt[keep])


def _length_batches(seqs: Sequence[Sequence[int]], batch_size: int, max_len: int, gen) -> list[np.ndarray]:
    """Batches of similar length (sorted by length with random tie-breaking, batch order
    shuffled): far less padding than random batches, where most sequences are short."""
    lengths = np.minimum([len(s) for s in seqs], max_len)
    order = np.lexsort((gen.random(len(seqs)), lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in gen.permutation(len(batches))]


def _epoch(
    model, opt, inputs, labels, cfg: SASRecConfig, num_items: int, gen, sampler, deadline: float
) -> tuple[float, bool]:
    """One pass over (inputs[i] -> labels[i]) in length batches: (mean loss per label, cut short by the deadline)."""
    import torch

    model.train()
    total, count = 0.0, 0
    for idx in _length_batches(inputs, cfg.batch_size, cfg.max_len, gen):
        if time.perf_counter() > deadline:
            return total / max(count, 1), True
        seq = torch.from_numpy(_left_pad([inputs[i] for i in idx], cfg.max_len))  # [B, L]
        tgt = torch.from_numpy(_left_pad([labels[i] for i in idx], cfg.max_len))  # [B, L]
        loss = _loss(model, model(seq), seq, tgt, cfg, num_items, sampler)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.item.weight[0].zero_()
        n = int((tgt > 0).sum())
        total, count = total + float(loss.detach()) * n, count + n
    return total / max(count, 1), False


def _start(num_items: int, cfg: SASRecConfig):
    """Seeded model, optimizer, batch-order generator and negative sampler."""
    import torch

    retain_freed_memory()  # ~1.5x faster epochs on CPU: the logits buffers are reused, not re-mapped
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = build_model(num_items, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    return model, opt, np.random.default_rng(cfg.seed), torch.Generator().manual_seed(cfg.seed)


def _usable(sequences: Sequence[Sequence[int]]) -> list[Sequence[int]]:
    """Sequences with at least one training pair in items[:-2]; `train` and `refit` use the same users."""
    return [s for s in sequences if len(s) >= loo.HOLDOUT + 2]


def _pairs(parts: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    """Every position predicts the next item: inputs part[:-1], labels part[1:]."""
    return [p[:-1] for p in parts], [p[1:] for p in parts]


def train(
    sequences: Sequence[Sequence[int]],
    num_items: int,
    cfg: SASRecConfig,
    on_epoch: Callable[[int, float, dict], None] | None = None,
):
    """Train on `loo.train_items(seq)` of every sequence, early-stop on NDCG@10 of its valid
    target (history excluded or not, as `cfg.exclude_history`).

    Returns (model with the best validation weights, history: list of per-epoch dicts).
    `elapsed_s` counts training only, `wall_s` validation passes too; the time cap is on `wall_s`."""
    model, opt, gen, sampler = _start(num_items, cfg)
    usable = _usable(sequences)
    inputs, labels = _pairs([loo.train_items(s) for s in usable])
    val_hist = [loo.history(s, "valid") for s in usable]
    val_tgt = [s[loo.target_position(len(s), "valid")] for s in usable]
    key = "valid_x_NDCG@10" if cfg.exclude_history else "valid_NDCG@10"

    best, best_state, bad, history, decays = -1.0, None, 0, [], 0
    started, eval_s = time.perf_counter(), 0.0
    deadline = started + cfg.max_minutes * 60
    for epoch in range(1, cfg.max_epochs + 1):
        loss, out_of_time = _epoch(model, opt, inputs, labels, cfg, num_items, gen, sampler, deadline)
        row = {"epoch": epoch, "loss": loss, "elapsed_s": time.perf_counter() - started - eval_s}
        if out_of_time:
            row["partial"] = True  # the time cap cut the epoch short; it is still evaluated
        if epoch % cfg.eval_every == 0 and val_hist:
            t_eval = time.perf_counter()
            row.update({f"valid_{k}": v for k, v in rank_metrics(model, val_hist, val_tgt, cfg.max_len).items()})
            eval_s += time.perf_counter() - t_eval
            if row[key] > best:
                best, bad = row[key], 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if cfg.lr_decay < 1.0 and bad >= cfg.decay_patience and decays < 3:  # a plateau: smaller steps
                for group in opt.param_groups:
                    group["lr"] *= cfg.lr_decay
                bad, decays = 0, decays + 1
                row["lr"] = opt.param_groups[0]["lr"]
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row["loss"], row)
        row["wall_s"] = time.perf_counter() - started
        if bad >= cfg.patience or out_of_time or row["wall_s"] / 60 > cfg.max_minutes:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def refit(
    sequences: Sequence[Sequence[int]],
    num_items: int,
    cfg: SASRecConfig,
    history: list[dict],
    on_epoch: Callable[[int, float, dict], None] | None = None,
):
    """A fresh model on items[:-1] of every sequence (the valid target is one more label; the
    test target stays out) for `best_epoch(history)` epochs, with the lr cuts `train` made before
    that epoch. No target is evaluated. The time cap is `cfg.max_minutes` again. Given sequences
    without their test target (the valid refit, sasrec.training_sequences), it learns items[:-2].

    Returns (model, rows: one dict per epoch with `loss` and `elapsed_s`)."""
    epochs = int(best_epoch(history, cfg).get("epoch", 0))
    cuts = {int(r["epoch"]): r["lr"] for r in history if "lr" in r and int(r["epoch"]) < epochs}
    model, opt, gen, sampler = _start(num_items, cfg)
    inputs, labels = _pairs([loo.history(s, "test") for s in _usable(sequences)])  # items[:-1]
    started, rows = time.perf_counter(), []
    deadline = started + cfg.max_minutes * 60
    for epoch in range(1, epochs + 1):
        loss, out_of_time = _epoch(model, opt, inputs, labels, cfg, num_items, gen, sampler, deadline)
        row = {"epoch": epoch, "loss": loss, "elapsed_s": time.perf_counter() - started}
        if epoch in cuts:  # `train` cut the lr after this epoch
            for group in opt.param_groups:
                group["lr"] = cuts[epoch]
        if out_of_time:
            row["partial"] = True
        rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, loss, row)
        if out_of_time:
            break
    model.eval()
    return model, rows


def best_epoch(history: list[dict], cfg: SASRecConfig) -> dict:
    """The epoch row whose weights `train` kept."""
    key = "valid_x_NDCG@10" if cfg.exclude_history else "valid_NDCG@10"
    return max(history, key=lambda r: r.get(key, -1.0)) if history else {}


@dataclass
class Fitted:
    model: object  # the SASRec module that scores the split's prompts (eval mode)
    history: list  # per-epoch rows of `train` (early stopping)
    item_ids: list  # item_ids[j] is row j + 1 of the item table (= ctx.items)
    score: Callable  # (users, histories as item id lists) -> float64 [B, N] over ctx.items
    selected: object  # the early-stopped model (= `model` unless refitted): items[:-2], or items[:-3] when `shifted`
    refit_history: list  # per-epoch rows of `refit` (empty without one)


def fit(ctx, cfg: SASRecConfig, split: str, on_epoch=None, on_refit_epoch=None) -> Fitted:
    """Train SASRec for the prompts of `split` on the context's sequences
    (recsys_cli.baselines.context.Context); see `training_sequences` and `protocol`. Test and
    valid prompts with `cfg.refit` get the refit model (baselines/sasrec_train.refit), trained up to
    the prompts' target (test: items[:-1]; valid: items[:-2])."""
    seqs = [[ctx.index[i] + 1 for i in full] for full in ctx.sequences.values()]  # 1..N, 0 = padding
    early = training_sequences(seqs, split, cfg.refit)
    selected, history = train(early, len(ctx.items), cfg, on_epoch=on_epoch)
    model, refit_history = selected, []
    if split in ("valid", "test") and cfg.refit and history:  # refit trains on `early` but its last item
        model, refit_history = refit(early, len(ctx.items), cfg, history, on_epoch=on_refit_epoch)

    return Fitted(model, history, list(ctx.items), scorer(ctx, model, cfg), selected, refit_history)


def scorer(ctx, model, cfg: SASRecConfig) -> Callable:
    """`model`'s score for rank_prompts: (users, histories as item id lists) -> float64 [B, N]
    over ctx.items (the item table does not depend on the split, so any split's context of the
    same data may rank with it)."""

    def score(users: list[str], histories: list[list[str]]) -> np.ndarray:
        rows = [[ctx.index[i] + 1 for i in h if i in ctx.index] for h in histories]
        return score_all(model, rows, cfg.max_len).astype(np.float64)  # [B, N]

    return score
