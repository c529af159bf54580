"""SASRec baseline: the history-excluded objective, seeded training, top-N lists with scores,
the train-split model that never sees a valid or test target, the test-split refit and the valid
refit one position earlier.

    python -m pytest tests/unit/test_sasrec.py -q
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from recsys_cli.baselines import sasrec, sasrec_train
from recsys_cli.baselines.context import load_context, rank_prompts

TINY = sasrec.SASRecConfig(
    hidden=8, blocks=1, max_len=10, dropout=0.0, max_epochs=2, patience=2, batch_size=64, threads=1, seed=0
)


def _brute_force_loss(model, seq, tgt, exclude: bool) -> float:
    """Mean cross-entropy, one real position at a time, the softmax over the allowed items."""
    h = model(seq)  # [B, L, H]
    table = model.item.weight  # [N + 1, H]
    losses = []
    for b in range(seq.shape[0]):
        for t in range(seq.shape[1]):
            target = int(tgt[b, t])
            if target == 0:
                continue
            banned = {0} | ({int(i) for i in seq[b, : t + 1]} - {target} if exclude else set())
            allowed = [i for i in range(table.shape[0]) if i not in banned]
            logits = table[allowed] @ h[b, t]  # [A]
            losses.append(float(torch.logsumexp(logits, 0) - logits[allowed.index(target)]))
    return float(np.mean(losses))


@pytest.mark.parametrize("exclude", [True, False])
def test_full_softmax_leaves_out_the_items_seen_so_far(exclude):
    cfg = sasrec.SASRecConfig(hidden=8, blocks=1, max_len=6, dropout=0.0, mask_seen=exclude)
    torch.manual_seed(0)
    model = sasrec.build_model(9, cfg).eval()
    seq = torch.tensor([[0, 0, 3, 5, 3, 7], [1, 2, 4, 6, 8, 9]])  # user 0 repeats item 3
    tgt = torch.tensor([[0, 0, 5, 3, 7, 2], [2, 4, 6, 8, 9, 1]])  # its target 3 at t=3 was seen at t=2
    with torch.no_grad():
        got = float(sasrec_train._loss(model, model(seq), seq, tgt, cfg, 9, None))
        want = _brute_force_loss(model, seq, tgt, exclude)
        other = _brute_force_loss(model, seq, tgt, not exclude)
    assert got == pytest.approx(want, rel=1e-5)
    assert abs(got - other) > 1e-4  # the mask changes the objective


def test_sampled_softmax_never_uses_a_seen_item_as_negative():
    cfg = sasrec.SASRecConfig(hidden=8, blocks=1, max_len=4, dropout=0.0, negatives=6, mask_seen=True)
    torch.manual_seed(0)
    model = sasrec.build_model(9, cfg).eval()
    seq = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    tgt = torch.tensor([[2, 3, 4, 5], [6, 7, 8, 9]])
    cand = [int(c) + 1 for c in torch.randperm(9, generator=torch.Generator().manual_seed(0))[:6]]  # what _loss draws
    with torch.no_grad():
        got = float(sasrec_train._loss(model, model(seq), seq, tgt, cfg, 9, torch.Generator().manual_seed(0)))
        h, table, losses = model(seq), model.item.weight, []
        for b in range(2):
            for t in range(4):
                target, seen = int(tgt[b, t]), {int(i) for i in seq[b, : t + 1]}
                allowed = [target] + [c for c in cand if c != target and c not in seen]
                logits = table[allowed] @ h[b, t]  # [A]
                losses.append(float(torch.logsumexp(logits, 0) - logits[0]))
    assert got == pytest.approx(float(np.mean(losses)), rel=1e-5)


def test_ring_is_learned_and_training_is_seeded():
    seqs = [[(u + k) % 12 + 1 for k in range(8)] for u in range(60)]  # every next item is the successor
    cfg = sasrec.SASRecConfig(
        hidden=16,
        blocks=1,
        max_len=4,
        dropout=0.0,
        lr=1e-2,
        batch_size=32,
        max_epochs=15,
        patience=15,
        seed=0,
        threads=1,
    )
    model, history = sasrec_train.train(seqs, 12, cfg)
    assert history[0]["valid_x_HR@1"] < 0.9 and sasrec_train.best_epoch(history, cfg)["valid_x_HR@1"] == 1.0
    again, history2 = sasrec_train.train(seqs, 12, cfg)
    assert [r["loss"] for r in history] == [r["loss"] for r in history2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    sampled, h3 = sasrec_train.train(seqs, 12, sasrec.SASRecConfig(**{**cfg.as_dict(), "negatives": 5}))
    assert max(r["valid_x_HR@5"] for r in h3) == 1.0


def test_top_n_lists_carry_the_model_scores_and_exclude_history(toys_data):
    ctx = load_context(toys_data, "test")
    fitted = sasrec_train.fit(ctx, TINY, "test")
    df = rank_prompts(ctx, fitted.score, k=50)
    seq = df.filter(pl.col("family") == "sequential")
    assert (seq["ranked"].list.len() == 50).all() and (seq["scores"].list.len() == 50).all()
    prompts = ctx.prompts.select("prompt_id", "user_id")
    users = dict(zip(prompts["prompt_id"], prompts["user_id"]))
    for pid, ranked, scores in seq.select("prompt_id", "ranked", "scores").head(40).iter_rows():
        hist = ctx.sequences[users[pid]][:-1]
        assert not set(ranked) & set(hist)  # exclude-history never ranks a history item
        assert len(set(ranked)) == 50 and scores == sorted(scores, reverse=True)
        row = fitted.score([users[pid]], [hist])[0]
        assert np.allclose([row[ctx.index[i]] for i in ranked], scores)  # the scores are the model's
        allowed = np.delete(row, [ctx.index[i] for i in hist])
        assert scores[-1] >= np.sort(allowed)[-50] - 1e-5  # the 50 best allowed items (batching moves last bits)
    with_hist = rank_prompts(ctx, fitted.score, k=50, exclude_history=False).filter(pl.col("family") == "sequential")
    leaked = sum(
        bool(set(r) & set(ctx.sequences[users[p]][:-1])) for p, r in with_hist.select("prompt_id", "ranked").iter_rows()
    )
    assert leaked > 0  # --include-history ranks history items too (the last item is close to every state)


def test_train_split_model_and_histories_never_see_valid_or_test(toys_data, monkeypatch):
    seen_training: list[list[int]] = []
    real_train = sasrec_train.train

    def spy(sequences, num_items, cfg, on_epoch=None):
        seen_training.extend(list(s) for s in sequences)
        return real_train(sequences, num_items, cfg, on_epoch)

    monkeypatch.setattr(sasrec_train, "train", spy)
    ctx = load_context(toys_data, "train")
    fitted = sasrec_train.fit(ctx, TINY, "train")
    full = list(ctx.sequences.values())
    assert len(seen_training) == len(full)
    for got, items in zip(seen_training, full):
        assert [ctx.items[i - 1] for i in got] == items[:-1]  # no test target
        assert [ctx.items[i - 1] for i in sasrec.loo.train_items(got)] == items[:-3]  # trained on items[:-3]
        assert ctx.items[got[-2] - 1] == items[-3]  # early stopping on items[-3], not the valid target

    asked: list[tuple[str, list[str]]] = []

    def score(users, histories):
        asked.extend(zip(users, histories))
        return fitted.score(users, histories)

    df = rank_prompts(ctx, score, k=10)
    assert df.height == ctx.prompts.height > 0 and set(ctx.prompts["family"]) == {"sequential", "direct"}
    targets = dict(zip(zip(ctx.prompts["user_id"], ctx.prompts["item_id"]), ctx.prompts["prompt_id"]))
    assert len(asked) == len(targets)
    for user, hist in asked:
        items = ctx.sequences[user]
        assert not set(hist) & set(items[-2:])  # never the valid or test target
        assert hist == items[: len(hist)] and (user, items[len(hist)]) in targets  # exactly the items before its target


def _rank_excluding_history(model, histories, target: int, max_len: int) -> np.ndarray:
    """0-based rank of item `target` among the items outside each history: int [U]."""
    scores = sasrec.score_all(model, histories, max_len)  # [U, N], column j = item j + 1
    for row, hist in zip(scores, histories):
        row[[i - 1 for i in hist]] = -np.inf
    return (scores > scores[:, [target - 1]]).sum(1)


def test_refit_learns_the_valid_target_but_never_the_test_target():
    # ring walks of items 1..12, then item 15, the valid target 13 and the test target 14 (13 and
    # 14 occur nowhere else): only a model trained on items[:-1] has seen "15 -> 13"
    seqs = [[(u + k) % 12 + 1 for k in range(6)] + [15, 13, 14] for u in range(60)]
    cfg = sasrec.SASRecConfig(
        hidden=16,
        blocks=1,
        max_len=4,
        dropout=0.0,
        lr=1e-2,
        batch_size=32,
        max_epochs=12,
        patience=12,
        seed=0,
        threads=1,
    )
    selected, _ = sasrec_train.train(seqs, 15, cfg)
    # early stopping "chose" epoch 12, with an lr cut after epoch 6 (13 is unlearnable for it)
    chosen = [{"epoch": e, "valid_x_NDCG@10": e / 100, **({"lr": 5e-3} if e == 6 else {})} for e in range(1, 13)]
    model, rows = sasrec_train.refit(seqs, 15, cfg, chosen)
    assert len(rows) == 12 and all(r["loss"] > 0 for r in rows)
    valid_hist = [s[:-2] for s in seqs]
    assert (
        _rank_excluding_history(model, valid_hist, 13, cfg.max_len) == 0
    ).mean() > 0.9  # learned from the valid position
    assert (
        _rank_excluding_history(selected, valid_hist, 13, cfg.max_len) > 0
    ).mean() > 0.9  # early stopping never saw it
    test_rank = _rank_excluding_history(model, [s[:-1] for s in seqs], 14, cfg.max_len)
    assert (test_rank == 0).mean() < 0.1  # item 14 (the test target) was never a label: not learned
    again, rows2 = sasrec_train.refit(seqs, 15, cfg, chosen)
    assert [r["loss"] for r in rows] == [r["loss"] for r in rows2]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize(
    ("split", "refit", "refitted"),
    [("test", True, True), ("test", False, False), ("valid", True, True), ("valid", False, False)],
)
def test_valid_and_test_prompts_get_the_refit_model(toys_data, split, refit, refitted):
    ctx = load_context(toys_data, split)
    fitted = sasrec_train.fit(ctx, sasrec.SASRecConfig(**{**TINY.as_dict(), "refit": refit}), split)
    assert (fitted.model is not fitted.selected) == refitted and bool(fitted.refit_history) == refitted
    if refitted:
        changed = [
            not torch.equal(a, b)
            for a, b in zip(fitted.model.state_dict().values(), fitted.selected.state_dict().values())
        ]
        assert any(changed)
        assert len(fitted.refit_history) == sasrec_train.best_epoch(fitted.history, TINY)["epoch"]


def test_the_valid_refit_trains_up_to_the_position_before_the_valid_target(toys_data):
    """On the fixture: the valid protocol is the test one shifted by one position. Early stopping reads
    items[-3] (the test protocol: items[-2]); the refit learns items[:-2] (test: items[:-1])."""
    from recsys_cli.data import split as loo

    ctx = load_context(toys_data, "valid")
    seqs = [[ctx.index[i] + 1 for i in s] for s in ctx.sequences.values()]
    early = sasrec.training_sequences(seqs, "valid", refit=True)
    assert sasrec.training_sequences(seqs, "test", refit=True) == seqs
    for full, shifted in zip(seqs, early):
        n = len(full)
        assert shifted == loo.history(full, "test")  # the test target is gone
        assert loo.train_items(shifted) == full[: n - 3]  # early stopping trains on items[:-3] ...
        assert shifted[loo.target_position(len(shifted), "valid")] == full[n - 3]  # ... and stops on items[-3]
        assert loo.history(shifted, "test") == full[: n - 2]  # the refit learns items[:-2]: never the valid target
    valid = sasrec.protocol("valid", True)
    assert valid.startswith("early-stopped on items[-3]") and "refit on items[:-2]" in valid
    assert "refit on items[:-1]" in sasrec.protocol("test", True) and "refit" not in sasrec.protocol("valid", False)


def test_the_valid_refit_never_learns_the_valid_target():
    # ring walks of items 1..12, then item 15, the valid target 13 and the test target 14 (13 and 14 occur
    # nowhere else); the refit gets what `fit` gives it for valid prompts: the sequences without the test target
    seqs = [[(u + k) % 12 + 1 for k in range(6)] + [15, 13, 14] for u in range(60)]
    cfg = sasrec.SASRecConfig(
        hidden=16,
        blocks=1,
        max_len=4,
        dropout=0.0,
        lr=1e-2,
        batch_size=32,
        max_epochs=12,
        patience=12,
        seed=0,
        threads=1,
    )
    chosen = [{"epoch": e, "valid_x_NDCG@10": e / 100} for e in range(1, 13)]  # as if early stopping chose epoch 12
    valid_model, _ = sasrec_train.refit(sasrec.training_sequences(seqs, "valid", refit=True), 15, cfg, chosen)
    test_model, _ = sasrec_train.refit(sasrec.training_sequences(seqs, "test", refit=True), 15, cfg, chosen)
    valid_hist = [s[:-2] for s in seqs]
    assert (_rank_excluding_history(test_model, valid_hist, 13, cfg.max_len) == 0).mean() > 0.9  # a label: learned
    assert (_rank_excluding_history(valid_model, valid_hist, 13, cfg.max_len) > 0).mean() > 0.9  # never a label
