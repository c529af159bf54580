"""The GLM attention mask as a float 4D tensor (0 = attend, finfo(dtype).min = blocked).

Part A (`[0, part_a_len)`) attends bidirectionally inside Part A; Part B (`[part_a_len,
length)`) is causal and sees all of Part A. Padding (`>= length`) is blocked as a key for
every row; a padding query row attends only to itself so its softmax stays finite (its
output is never read: its labels are -100).

    python -c "import torch; from recsys_cli.modeling.mask import build_attention_mask as b; print(b([2],[4],5,torch.float32))"
"""

from __future__ import annotations


def build_attention_mask(part_a_lens, lengths, total_len: int, dtype, device=None):
    """Float mask [B, 1, total_len, total_len] for a right-padded batch.

    Never a bool mask: eager attention *adds* the mask to the scores.
    """
    import torch

    a = torch.as_tensor(part_a_lens, dtype=torch.long, device=device).view(-1, 1, 1)  # [B,1,1]
    n = torch.as_tensor(lengths, dtype=torch.long, device=device).view(-1, 1, 1)  # [B,1,1]
    q = torch.arange(total_len, device=device).view(1, -1, 1)  # [1,L,1]
    k = torch.arange(total_len, device=device).view(1, 1, -1)  # [1,1,L]
    allowed = (k <= q) | (k < a)  # causal, plus every query sees all of Part A  [B,L,L]
    allowed = allowed & (k < n)  # padding keys blocked
    allowed = torch.where(q >= n, k == q, allowed)  # padding queries: self only (finite softmax)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)  # [B,L,L]
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask.unsqueeze(1)  # [B,1,L,L]


def extend_attention_mask(prev_mask, past_len: int, q_len: int):
    """For cached decoding: rows for `q_len` new causal tokens after `past_len` cached ones.

    `prev_mask` is the [B,1,*,past_len] float mask of the prompt's keys (only its last row's
    key pattern is reused: which past keys are real). Returns [B,1,q_len,past_len+q_len].
    """
    import torch

    key_ok = prev_mask[:, :, -1:, :past_len]  # [B,1,1,past]
    b = prev_mask.shape[0]
    past = key_ok.expand(b, 1, q_len, past_len)  # [B,1,q,past]
    new = torch.full((q_len, q_len), torch.finfo(prev_mask.dtype).min, dtype=prev_mask.dtype, device=prev_mask.device)
    new = torch.triu(new, diagonal=1).view(1, 1, q_len, q_len).expand(b, 1, q_len, q_len)  # [B,1,q,q]
    return torch.cat([past, new], dim=-1)  # [B,1,q,past+q]
