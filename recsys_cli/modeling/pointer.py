"""The listwise pointer head (recipe `listwise.head: pointer`, docs/rerank.md "Listwise scoring"):
candidate j's score is the cosine between the last layer's state at `[START]` and the mean
state of candidate j's title in Part A, the candidates' mean subtracted, divided by the
recipe's `listwise.temperature` (TEMPERATURE by default). The same function scores in training
(modeling/wrapper._token_loss) and in `infer --item-scoring listwise` (inference/listwise.py); it
adds no parameters. Importing this module does not import torch (the recipe reads TEMPERATURE).

Why: the label head must learn to bind a letter to the title written after it before the
label logits carry anything; a small model at a CPU budget stays at chance there
(bench/results/quality-ranker-cpu.json). The pointer reads each candidate's own
representation, so the gradient reaches the candidates directly.

    python -c "import torch; from recsys_cli.modeling import pointer as p; \
        h = torch.randn(1, 9, 4); print(p.scores(h[:, 8], p.span_means(h, torch.tensor([0]), \
        torch.tensor([[[0, 3], [3, 8]]])), torch.tensor([[False, False]])))"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TEMPERATURE = 0.05  # the default: cosine / 0.05, scores within +-20, the range of an LM head's logits


def span_means(hidden: torch.Tensor, rows: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` [B, L, H] over each span: rows [R] (the batch row of each query), spans
    [R, A, 2] (start, end) columns, -1 padded.  -> [R, A, H] float (0 for padding)."""
    import torch

    b, _, h = hidden.shape
    cums = torch.cat([hidden.new_zeros(b, 1, h), hidden.float().cumsum(1)], 1)[rows]  # [R, L + 1, H]
    start = spans[..., 0].clamp(min=0)  # [R, A]
    end = spans[..., 1].clamp(min=0)  # [R, A]
    at_end = cums.gather(1, end[..., None].expand(-1, -1, h))  # [R, A, H]
    at_start = cums.gather(1, start[..., None].expand(-1, -1, h))  # [R, A, H]
    width = (end - start).clamp(min=1).to(at_end.dtype)  # [R, A]
    return (at_end - at_start) / width[..., None]  # [R, A, H]


def scores(
    query: torch.Tensor, cands: torch.Tensor, pad: torch.Tensor, temperature: float = TEMPERATURE
) -> torch.Tensor:
    """Pointer scores: query [R, H], candidate means [R, A, H], pad [R, A] bool (True: no
    candidate), cosine / `temperature`.  -> [R, A] float, -inf on padding."""
    import torch

    real = (~pad).to(cands.dtype)[..., None]  # [R, A, 1]
    center = (cands * real).sum(1) / real.sum(1).clamp(min=1)  # [R, H]
    centred = cands - center[:, None]  # [R, A, H]
    cos = torch.nn.functional.cosine_similarity(query.float()[:, None], centred, dim=-1, eps=1e-6)  # [R, A]
    return (cos / temperature).masked_fill(pad, float("-inf"))
