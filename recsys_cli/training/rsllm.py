"""RSLLM stage 2 (docs/rsllm.md): batches of hybrid examples, the LM loss plus two InfoNCE
alignment losses, and the two-stage schedule.

    python -c "import torch as t; from recsys_cli.training.rsllm import info_nce as f; print(f(t.eye(3), t.eye(3), 1))"

  loss = LM + item_loss_weight * InfoNCE(projector(e_item), title representation in the LLM)
            + user_loss_weight * InfoNCE(user_head(h at [START]), SASRec last state of the history)

Both InfoNCE terms are symmetric (a->b and b->a cross-entropy, averaged) with in-batch
negatives and temperature hybrid.temperature. Item: one row per distinct item of the batch;
its title is encoded alone in extra rows of the same forward (`pack_titles`), so the text side
never sees the item's own soft token and the loss cannot be met by copying it. User: one row
per prompt with a history (sequential / direct prompts: data/rsllm.prompt_history); prompts
with identical histories are not each other's negatives. A weight of 0 skips
the term entirely (no hidden states requested, no head forward): the LM loss is unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from recsys_cli.baselines.sasrec_encoder import left_pad
from recsys_cli.data.rsllm import HybridExample
from recsys_cli.modeling.mask import packed_attention_mask
from recsys_cli.training.data import collate


def collate_hybrid(
    examples: list[HybridExample],
    pad_id: int,
    dtype,
    pad_multiple: int = 8,
    history_len: int = 50,
    title_rows: bool = True,
) -> dict:
    """training/data.collate + the hybrid tensors (all long):
    soft_b/soft_pos/soft_row [S]: the soft tokens; title_row [I]: the distinct items whose title
    is in some Part A, title_tok [P] / title_ids [P]: each title's tokens (the longest occurrence);
    user_b/user_pos [U] (the [START] position) and user_hist [U, Lh] (left-padded history rows)
    for prompts with a history. With `title_rows`, the titles are also packed into extra batch
    rows after the examples (`pack_titles`): title_b/title_pos [P] locate each token there."""

    out = collate(examples, pad_id, dtype, pad_multiple)
    soft = [(b, p, r) for b, e in enumerate(examples) for p, r in getattr(e, "soft", [])]
    titles: dict[int, tuple[list[int], list[int]]] = {}  # row -> (token ids, intra ids), longest occurrence
    users, hists = [], []
    for b, e in enumerate(examples):
        for s, t, r in getattr(e, "titles", []):
            if t - s > len(titles.get(r, ((), ()))[0]):
                titles[r] = (list(e.input_ids[s:t]), list(e.intra[s:t]))
        hist = getattr(e, "history", [])
        if hist and len(e) > e.part_a_len:  # a prompt with a Part B: [START] sits at part_a_len
            users.append((b, e.part_a_len))
            hists.append(hist[-history_len:])

    def cols(rows: list[tuple], n: int) -> list:
        return [torch.tensor([r[i] for r in rows], dtype=torch.long) for i in range(n)]  # n x [K]

    order = sorted(titles)
    out["soft_b"], out["soft_pos"], out["soft_row"] = cols(soft, 3)
    out["title_row"] = torch.tensor(order, dtype=torch.long)  # [I]
    toks = [(k, tok) for k, r in enumerate(order) for tok in titles[r][0]]
    out["title_tok"], out["title_ids"] = cols(toks, 2)  # [P], [P]
    out["user_b"], out["user_pos"] = cols(users, 2)
    out["user_hist"] = left_pad(hists, history_len) if hists else torch.zeros(0, 1, dtype=torch.long)  # [U, Lh]
    if title_rows and order:
        pack_titles(out, [titles[r] for r in order], pad_id)
    return out


def pack_titles(out: dict, titles: list[tuple[list[int], list[int]]], pad_id: int) -> None:
    """Append the titles to the batch `out` (in place) as extra rows, several per row, each title
    its own bidirectional block (it sees only its own tokens: no soft token, no prompt), inter
    positions 0..n-1 and its Part A intra ids; no labels. One forward then gives every title's
    own representation beside the examples' (the item loss: it cannot copy its soft token).
    title_b/title_pos [P]: where each title token sits. Every title comes from an example's Part
    A, so it fits the batch's width."""
    width = out["input_ids"].shape[1]
    packed: list[list[tuple[int, int, int, int]]] = [[]]  # row -> (token id, inter, intra, block)
    where = []
    for k, (ids, intra) in enumerate(titles):
        if len(packed[-1]) + len(ids) > width:
            packed.append([])
        row = packed[-1]
        where.extend((len(packed) - 1, len(row) + j) for j in range(len(ids)))
        row.extend((tok, j, intra[j], k) for j, tok in enumerate(ids))
    n, m = out["input_ids"].shape[0], len(packed)
    ids = torch.full((m, width), pad_id, dtype=torch.long)  # [M, W]
    inter = torch.zeros((m, width), dtype=torch.long)  # [M, W]
    intra = torch.zeros((m, width), dtype=torch.long)  # [M, W]
    block = torch.full((m, width), -1, dtype=torch.long)  # [M, W]: title index, -1 = padding
    for i, row in enumerate(packed):
        ids[i, : len(row)], inter[i, : len(row)], intra[i, : len(row)], block[i, : len(row)] = torch.tensor(row).T
    mask = packed_attention_mask(block, torch.full_like(block, width), out["attn_mask_4d"].dtype)  # [M, 1, W, W]
    out["input_ids"] = torch.cat([out["input_ids"], ids])
    out["labels"] = torch.cat([out["labels"], torch.full((m, width), -100, dtype=torch.long)])
    out["inter"], out["intra"] = torch.cat([out["inter"], inter]), torch.cat([out["intra"], intra])
    out["attn_mask_4d"] = torch.cat([out["attn_mask_4d"], mask])  # [B + M, 1, W, W]
    out["title_b"] = torch.tensor([n + r for r, _ in where], dtype=torch.long)  # [P]
    out["title_pos"] = torch.tensor([p for _, p in where], dtype=torch.long)  # [P]


def info_nce(a, b, temperature: float, keys=None):
    """Symmetric InfoNCE of paired rows a[i] <-> b[i] ([N, D] each) on cosine similarity;
    keys [N]: rows with equal keys are not negatives of each other. 0 when N < 2."""
    n = a.shape[0]
    if n < 2:
        return a.float().sum() * 0.0 + b.float().sum() * 0.0  # keeps the graph, value 0
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature  # [N, N]
    if keys is not None:
        eye = torch.eye(n, dtype=torch.bool, device=logits.device)  # [N, N]
        logits = logits.masked_fill((keys[:, None] == keys[None, :]) & ~eye, float("-inf"))  # [N, N]
    target = torch.arange(n, device=logits.device)  # [N]
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def title_text(lm, batch: dict, hidden, text: str = "hidden"):
    """The text side of the item loss: one row per distinct item (batch["title_row"]), the mean
    over its title tokens of the last layer's states in the title's own block of the packed rows
    (text="hidden": the title alone, so it never sees its soft token, see pack_titles) or of the
    input token embeddings (text="embedding", context-free).  -> [I, H] float"""
    if text == "hidden":
        if "title_b" not in batch:
            raise ValueError("item_text hidden needs the packed title rows (collate_hybrid(..., title_rows=True))")
        h = hidden[batch["title_b"], batch["title_pos"]]  # [P, H]
    else:
        h = lm.base.get_input_embeddings()(batch["title_ids"])  # [P, H]
    h, tt, n = h.float(), batch["title_tok"], batch["title_row"].shape[0]
    txt = torch.zeros(n, h.shape[1], device=h.device, dtype=h.dtype).index_add(0, tt, h)  # [I, H]
    return txt / torch.bincount(tt, minlength=n).clamp(min=1)[:, None].to(h.dtype)  # [I, H]


def item_loss(lm, batch: dict, hidden, temperature: float, text: str = "hidden"):
    """Projected ID embedding of each distinct batch item vs its title's representation
    (`title_text`)."""
    return info_nce(lm.hybrid.project(batch["title_row"]), title_text(lm, batch, hidden, text), temperature)


def user_loss(lm, batch: dict, hidden, encoder, temperature: float):
    """user_head(LLM state at [START]) vs the frozen SASRec state after the same history."""
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
    out = model(
        batch["input_ids"],
        batch["inter"],
        batch["intra"],
        batch["attn_mask_4d"],
        labels=batch["labels"],
        soft=soft,
        hidden=need_hidden,
        allowed=allowed,
    )
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
