"""RSLLM stage 2 (docs/rsllm.md): batches of hybrid examples, the LM loss plus two InfoNCE
alignment losses, and the two-stage schedule.

    python -c "import torch; from recsys_cli.training.hybrid import info_nce; print(info_nce(torch.eye(3), torch.eye(3), 0.1))"

  loss = LM + item_loss_weight * InfoNCE(projector(e_item), title representation in the LLM)
            + user_loss_weight * InfoNCE(user_head(h at [START]), SASRec last state of the history)

Both InfoNCE terms are symmetric (a->b and b->a cross-entropy, averaged) with in-batch
negatives and temperature hybrid.temperature. Item: one row per distinct item of the batch
(its title representations averaged over its occurrences). User: one row per prompt with a
history; prompts with identical histories are not each other's negatives. A weight of 0 skips
the term entirely (no hidden states requested, no head forward): the LM loss is unchanged.
"""

from __future__ import annotations

from typing import Any

from recsys_cli.data.hybrid import HybridExample
from recsys_cli.training.data import collate

ITEM_TEXT = ("hidden", "embedding")


def collate_hybrid(examples: list[HybridExample], pad_id: int, dtype, pad_multiple: int = 8, history_len: int = 50) -> dict:
    """training/data.collate + the hybrid tensors (all long):
    soft_b/soft_pos/soft_row [S]: the soft tokens; title_row [T] and tok_title/tok_b/tok_pos [P]:
    every Part A title token and the title it belongs to; user_b/user_pos [U] (the [START]
    position) and user_hist [U, Lh] (left-padded history rows) for prompts with a history."""
    import torch

    from recsys_cli.baselines.sasrec_encoder import left_pad

    out = collate(examples, pad_id, dtype, pad_multiple)
    soft = [(b, p, r) for b, e in enumerate(examples) for p, r in getattr(e, "soft", [])]
    title_row, toks, users, hists = [], [], [], []
    for b, e in enumerate(examples):
        for s, t, r in getattr(e, "titles", []):
            toks.extend((len(title_row), b, p) for p in range(s, t))
            title_row.append(r)
        hist = getattr(e, "history", [])
        if hist and len(e) > e.part_a_len:  # a prompt with a Part B: [START] sits at part_a_len
            users.append((b, e.part_a_len))
            hists.append(hist[-history_len:])

    def cols(rows: list[tuple], n: int) -> list:
        return [torch.tensor([r[i] for r in rows], dtype=torch.long) for i in range(n)]  # n x [K]

    out["soft_b"], out["soft_pos"], out["soft_row"] = cols(soft, 3)
    out["tok_title"], out["tok_b"], out["tok_pos"] = cols(toks, 3)
    out["title_row"] = torch.tensor(title_row, dtype=torch.long)  # [T]
    out["user_b"], out["user_pos"] = cols(users, 2)
    out["user_hist"] = left_pad(hists, history_len) if hists else torch.zeros(0, 1, dtype=torch.long)  # [U, Lh]
    return out


def info_nce(a, b, temperature: float, keys=None):
    """Symmetric InfoNCE of paired rows a[i] <-> b[i] ([N, D] each) on cosine similarity;
    keys [N]: rows with equal keys are not negatives of each other. 0 when N < 2."""
    import torch
    import torch.nn.functional as F

    n = a.shape[0]
    if n < 2:
        return a.float().sum() * 0.0 + b.float().sum() * 0.0  # keeps the graph, value 0
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature  # [N, N]
    if keys is not None:
        eye = torch.eye(n, dtype=torch.bool, device=logits.device)  # [N, N]
        logits = logits.masked_fill((keys[:, None] == keys[None, :]) & ~eye, float("-inf"))  # [N, N]
    target = torch.arange(n, device=logits.device)  # [N]
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def item_loss(lm, batch: dict, hidden, temperature: float, text: str = "hidden"):
    """Projected ID embedding of each distinct batch item vs the mean representation of its
    title tokens in Part A: the last layer's hidden states (text="hidden") or the input token
    embeddings (text="embedding", context-free)."""
    import torch

    tb, tp, tt, rows = batch["tok_b"], batch["tok_pos"], batch["tok_title"], batch["title_row"]
    if text == "hidden":
        h = hidden[tb, tp]  # [P, H]
    else:
        h = lm.base.get_input_embeddings()(batch["input_ids"][tb, tp])  # [P, H]
    h = h.float()
    t = rows.shape[0]
    per_title = torch.zeros(t, h.shape[1], device=h.device).index_add(0, tt, h)  # [T, H]
    per_title = per_title / torch.bincount(tt, minlength=t).clamp(min=1)[:, None]  # [T, H]
    uniq, inv = torch.unique(rows, return_inverse=True)  # [I], [T]
    txt = torch.zeros(len(uniq), h.shape[1], device=h.device).index_add(0, inv, per_title)  # [I, H]
    txt = txt / torch.bincount(inv, minlength=len(uniq)).clamp(min=1)[:, None]  # [I, H]
    z_id = lm.hybrid.project(uniq)  # [I, H]
    return info_nce(z_id, txt, temperature)


def user_loss(lm, batch: dict, hidden, encoder, temperature: float):
    """user_head(LLM state at [START]) vs the frozen SASRec state after the same history."""
    import torch

    h = hidden[batch["user_b"], batch["user_pos"]]  # [U, H]
    head = lm.hybrid.user_head
    u = head(h.to(head.weight.dtype))  # [U, d_rec]
    s = encoder.encode_padded(batch["user_hist"]).to(u.device)  # [U, d_rec], no grad
    _, keys = torch.unique(batch["user_hist"], dim=0, return_inverse=True)  # [U]: equal histories share a key
    return info_nce(u, s, temperature, keys)


def hybrid_step(model, lm, batch: dict, hyb, encoder=None) -> dict[str, Any]:
    """One forward of a hybrid batch and its losses (call inside the loop's autocast).
    `model` is what the loop calls (lm or a DeepSpeed engine), `lm` the RecsysLM; `hyb` the
    recipe's HybridArgs. -> {"loss": total, "lm_loss", "item_loss", "user_loss"} (tensors;
    a skipped term is None)."""
    w_item = hyb.item_loss_weight if len(batch["title_row"]) else 0.0
    w_user = hyb.user_loss_weight if (len(batch["user_b"]) and encoder is not None) else 0.0
    need_hidden = (w_item > 0 and hyb.item_text == "hidden") or w_user > 0
    soft = (batch["soft_b"], batch["soft_pos"], batch["soft_row"]) if len(batch["soft_b"]) else None
    allowed = (batch["allowed"], batch["allowed_ids"]) if "allowed" in batch else None  # rerank examples
    out = model(batch["input_ids"], batch["inter"], batch["intra"], batch["attn_mask_4d"], labels=batch["labels"],
                soft=soft, hidden=need_hidden, allowed=allowed)
    hidden = getattr(out, "hidden", None)
    li = item_loss(lm, batch, hidden, hyb.temperature, hyb.item_text) if w_item > 0 else None
    lu = user_loss(lm, batch, hidden, encoder, hyb.temperature) if w_user > 0 else None
    total = out.loss
    if li is not None:
        total = total + w_item * li
    if lu is not None:
        total = total + w_user * lu
    return {"loss": total, "lm_loss": out.loss, "item_loss": li, "user_loss": lu}


def stage_of(step: int, hyb) -> int:
    """1 (text-only, the existing objective) for the first hybrid.stage1_steps steps, then 2."""
    return 1 if step < hyb.stage1_steps else 2


def schedule_step(step: int, hyb, total: int) -> tuple[int, int]:
    """(step, total) to give the lr schedule (training/loop.lr_at): with
    hybrid.restart_schedule, stage 2 warms up and decays again over its own steps."""
    if not hyb.restart_schedule or hyb.stage1_steps <= 0:
        return step, total
    if step < hyb.stage1_steps:
        return step, hyb.stage1_steps
    return step - hyb.stage1_steps, max(1, total - hyb.stage1_steps)
