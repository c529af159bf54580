"""Batches for the training loop: examples packed several to a row (or one per row), and the
GLM mask built from small per-token tensors on the device.

A row holds one or more examples (segments) back to back. Every token keeps its example's own
2D positions (inter restarts at 0 in each segment, intra as laid out), and the mask is
block-diagonal: a token sees only its own segment, inside which the GLM rule holds (Part A
bidirectional, Part B causal and seeing all of Part A). So an example's loss terms are the same
packed or not, and the loss of a batch (the token mean over its targets) too; packing only
removes padding. With one example per row the mask is exactly modeling/mask.build_attention_mask.

    recsys pretrain ... --set train.packing=true
    python -c "from recsys_cli.training.packing import pack_rows; print(pack_rows([200, 60, 120, 50], 256))"

The mask stays a float mask (0 attend, finfo.min blocked): the model runs eager attention,
which adds the mask to the scores (docs/design.md), and SDPA adds a float mask the same way.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recsys_cli.data.masking import Example
from recsys_cli.modeling.mask import packed_attention_mask as glm_mask

ROW_KEYS = ("input_ids", "labels", "inter", "intra", "segment", "a_end")  # [R, L] long each


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Example indices per row, first-fit decreasing into rows of `capacity` tokens (an example
    longer than `capacity` gets a row of its own); deterministic, each row in index order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return [sorted(r) for r in rows]


def collate_rows(examples: Sequence[Example], pad_id: int, capacity: int | None = None, pad_multiple: int = 8) -> dict:
    """Host tensors of a batch: `capacity` None puts one example per row (the unpacked batch of
    training/data.collate), else examples are packed into rows of max(capacity, longest) tokens,
    each padded to that width.
    -> input_ids / labels / inter / intra / segment / a_end [R, L] long (segment: the example's
    slot in its row, -1 on padding; a_end: the column where its Part A ends), lengths [R] (real
    tokens per row), placement [N, 3] (row, start, length of each example), keep [k] (the columns
    where some row has a target), and for rerank
    prompts allowed [P, 2] (row, column) + allowed_ids [P, A]."""
    lengths = [len(e) for e in examples]
    if capacity is None:
        rows = [[i] for i in range(len(examples))]
        width = max(lengths, default=0)
    else:  # packed rows are all `capacity` wide: the same shape every step (compiled layers keep their graph)
        width = max(capacity, max(lengths, default=0))
        rows = pack_rows(lengths, width)
    width = max(pad_multiple, ((width + pad_multiple - 1) // pad_multiple) * pad_multiple)
    n_rows = len(rows)
    t = {k: torch.zeros((n_rows, width), dtype=torch.long) for k in ROW_KEYS}  # [R, L] each
    t["input_ids"].fill_(pad_id)
    t["labels"].fill_(-100)
    t["segment"].fill_(-1)
    placement = torch.zeros((len(examples), 3), dtype=torch.long)  # [N, 3]
    allowed = []
    for r, row in enumerate(rows):
        at = 0
        for slot, i in enumerate(row):
            e, n = examples[i], lengths[i]
            cols = slice(at, at + n)
            t["input_ids"][r, cols] = torch.tensor(e.input_ids)
            t["labels"][r, cols] = torch.tensor(e.labels)
            t["inter"][r, cols] = torch.tensor(e.inter)
            t["intra"][r, cols] = torch.tensor(e.intra)
            t["segment"][r, cols] = slot
            t["a_end"][r, cols] = at + e.part_a_len
            placement[i] = torch.tensor([r, at, n])
            allowed += [(r, at + pos, opts, shifted(e, pos, at)) for pos, opts in sorted((e.allowed or {}).items())]
            at += n
        if at < width:  # padding continues the last example's positions (it is masked anyway)
            t["inter"][r, at:] = (examples[row[-1]].inter[-1] + 1) if at else 0
    out = {
        **t,
        "lengths": torch.tensor([sum(lengths[i] for i in row) for row in rows]),
        "placement": placement,
        "keep": (t["labels"] != -100).any(dim=0).nonzero().squeeze(1),
    }  # [k] columns with a target (RecsysLM's keep)
    if allowed:  # rerank prompts: the softmax of these positions is taken over `allowed_ids` only
        allowed.sort(key=lambda a: (a[0], a[1]))
        out.update(allowed_tensors(allowed))
    return out


def shifted(e, pos: int, at: int) -> list[tuple[int, int]] | None:
    """The pointer spans of `e`'s option position `pos`, moved to its row's columns (`at`)."""
    spans = (e.pointer or {}).get(pos)
    return None if spans is None else [(s + at, t + at) for s, t in spans]


def allowed_tensors(allowed: list) -> dict:
    """[(row, column, option ids, pointer spans or None)] -> allowed [P, 2], allowed_ids [P, A]
    (-1 padded) and, when some position is a listwise pointer one, allowed_spans [P, A, 2]."""
    width = max(len(o) for _, _, o, _ in allowed)
    allow_ids = torch.full((len(allowed), width), -1, dtype=torch.long)  # [P, A]
    for k, (_, _, opts, _) in enumerate(allowed):
        allow_ids[k, : len(opts)] = torch.tensor(opts)
    out = {"allowed": torch.tensor([[r, c] for r, c, _, _ in allowed], dtype=torch.long), "allowed_ids": allow_ids}
    if any(sp is not None for _, _, _, sp in allowed):
        spans = torch.full((len(allowed), width, 2), -1, dtype=torch.long)  # [P, A, 2]
        for k, (_, _, _, sp) in enumerate(allowed):
            if sp is not None:
                spans[k, : len(sp)] = torch.tensor(sp)
        out["allowed_spans"] = spans
    return out


def to_device(batch: dict, device, dtype) -> dict:
    """The model's inputs on `device`: the [R, L] tensors in one copy, then the mask built there
    (no step of the loss reads a device value back: RecsysLM gets `keep` from here).
    `lengths` and `placement` stay on the host (the loop counts tokens without a device read)."""
    pinned = str(device).startswith("cuda")

    def copy(t):  # pinned host memory: an asynchronous copy the host does not wait for
        return t.pin_memory().to(device, non_blocking=True) if pinned else t.to(device)

    out = dict(zip(ROW_KEYS, copy(torch.stack([batch[k] for k in ROW_KEYS])).unbind(0)))  # [6, R, L] in one copy
    out["attn_mask_4d"] = glm_mask(out.pop("segment"), out.pop("a_end"), dtype)  # [R, 1, L, L]
    out["lengths"], out["placement"] = batch["lengths"], batch["placement"]
    for key in ("keep", "allowed", "allowed_ids", "allowed_spans"):
        if key in batch:
            out[key] = copy(batch[key])
    return out
