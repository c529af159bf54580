"""The GLM attention mask as a float 4D tensor (0 = attend, finfo(dtype).min = blocked), the one
module that lays it out: training batches, packed training rows, inference prefill and cached
steps all call a builder here (tests/unit/test_glm_mask.py checks the layouts agree and greps
that no other module builds one).

Part A (`[0, part_a_len)`) attends bidirectionally inside Part A; Part B (`[part_a_len,
length)`) is causal and sees all of Part A. Padding is blocked as a key for every row; a
padding query row attends to itself so its softmax stays finite (its output is never read).

* `build_attention_mask`: a right-padded training batch, one example per row.
* `packed_attention_mask`: several examples (segments) per row, block-diagonal (training/packing.py).
* `prefill_attention_mask`: a left-padded inference batch of Part A + [START] (inference/decode.py).
* `cached_attention_mask`: new causal tokens after cached keys (decode steps, candidate rows).

    python -c "import torch; from recsys_cli.modeling.mask import build_attention_mask as b; \
print(b([2], [4], 5, torch.float32))"
"""

from __future__ import annotations


def _as_float(allowed, dtype):
    """bool `allowed` -> float mask of the same shape (0 attend, finfo(dtype).min blocked).
    Never a bool mask: eager attention *adds* the mask to the scores."""
    import torch

    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask


def build_attention_mask(part_a_lens, lengths, total_len: int, dtype, device=None):
    """Float mask [B, 1, total_len, total_len] for a right-padded batch; padding queries see
    only themselves."""
    import torch

    a = torch.as_tensor(part_a_lens, dtype=torch.long, device=device).view(-1, 1, 1)  # [B,1,1]
    n = torch.as_tensor(lengths, dtype=torch.long, device=device).view(-1, 1, 1)  # [B,1,1]
    q = torch.arange(total_len, device=device).view(1, -1, 1)  # [1,L,1]
    k = torch.arange(total_len, device=device).view(1, 1, -1)  # [1,1,L]
    allowed = (k <= q) | (k < a)  # causal, plus every query sees all of Part A  [B,L,L]
    allowed = allowed & (k < n)  # padding keys blocked
    allowed = torch.where(q >= n, k == q, allowed)  # padding queries: self only (finite softmax)
    return _as_float(allowed, dtype).unsqueeze(1)  # [B,1,L,L]


def packed_attention_mask(segment, a_end, dtype):
    """Float mask [R, 1, L, L] on the tensors' device for packed rows: `segment` [R, L] is each
    token's example index (-1 = padding), `a_end` [R, L] the end column of that example's Part
    A. Token q attends key k iff both are in the same segment and (k <= q or k is in that
    segment's Part A); a padding token attends itself only. A segment whose `a_end` covers it
    whole is one bidirectional block (training/rsllm.pack_titles)."""
    import torch

    width = segment.shape[1]
    pos = torch.arange(width, device=segment.device)
    q, k = pos.view(1, -1, 1), pos.view(1, 1, -1)  # [1, L, 1], [1, 1, L]
    same = segment[:, :, None] == segment[:, None, :]  # [R, L, L]
    allowed = same & ((k <= q) | (k < a_end[:, :, None]))  # [R, L, L]
    allowed = torch.where((segment >= 0)[:, :, None], allowed, k == q)  # padding queries: self only
    return _as_float(allowed, dtype).unsqueeze(1)  # [R, 1, L, L]


def prefill_attention_mask(key_ok, part_a_end: int, dtype):
    """Float mask [B, 1, L, L] for a left-padded prefill batch: `key_ok` [B, L] bool marks the
    real columns (padding on the left), columns `< part_a_end` are Part A (bidirectional) and
    the rest ([START], ...) causal. A padding query also sees itself (its output is never read,
    and its key is blocked for every real query)."""
    import torch

    length = key_ok.shape[1]
    pos = torch.arange(length, device=key_ok.device)
    allowed = (pos[None, :] < part_a_end) | (pos[None, :] <= pos[:, None])  # [L, L] A bidirectional, rest causal
    allowed = allowed[None] & key_ok[:, None, :]  # [B, L, L]
    allowed |= torch.eye(length, dtype=torch.bool, device=key_ok.device)[None]  # pad rows see themselves
    return _as_float(allowed, dtype).unsqueeze(1)  # [B, 1, L, L]


def cached_attention_mask(key_ok, dtype, width: int = 1, lens=None):
    """Float mask [N, 1, width, past + width] for `width` new causal tokens per row after the
    cached keys (`key_ok` [N, past] bool: which cached columns are real). `lens` [N] long: how
    many of the new tokens of each row are real (None: all); a padding new token is blocked as
    a key and, as a query, sees itself too."""
    import torch

    n, past = key_ok.shape
    q = torch.arange(width, device=key_ok.device)
    new = (q[None, :] <= q[:, None])[None].expand(n, width, width)  # [N, W, W] causal
    if lens is not None:
        new = new & (q[None, None, :] < lens.to(key_ok.device)[:, None, None])  # padding keys blocked
    new = new | torch.eye(width, dtype=torch.bool, device=key_ok.device)[None]  # pad rows see themselves
    allowed = torch.cat([key_ok[:, None, :].expand(n, width, past), new], -1)  # [N, W, past+W]
    return _as_float(allowed[:, None], dtype)  # [N, 1, W, past+W]
