"""Numeric precision of training and inference: fp32, or bf16 where the hardware computes it
natively. `auto` picks bf16 on a GPU that supports it and on a CPU with native bf16 dot
products (avx512_bf16 / AMX, reported by oneDNN), else fp32.

    python bench/precision.py    # fp32 vs bf16 side by side on this machine

Measured on the 2-core EPYC (avx512_bf16) machine: a 256-token prefill of SmolLM2-135M 2.3x
and a 4 x 256 training step 2.7x faster in bf16 (bench/results/precision.json). On a CPU
without native bf16 the same code would be emulated and slower, hence `auto`.

Training uses autocast (fp32 master weights, fp32 LoRA parameters). Inference casts the
merged model to bf16 but keeps the vocabulary projection in fp32 (its own untied fp32 weight,
input upcast), so next-token log-probs, which rank titles, are not rounded to bf16's 8 bits.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 matrix products natively."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def use_bf16(precision: str, device: str) -> bool:
    """`precision` (auto | fp32 | bf16) resolved for `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return native_bf16(device)
    return precision == "bf16"


def to_bf16_inference(lm) -> None:
    """Cast an inference model (LoRA merged) to bf16 in place, keeping the output projection in
    fp32: a separate fp32 copy of its weight (the tie with the input embedding is cut) and an
    input upcast, so the logits are fp32 products of bf16 hidden states."""
    import torch

    base = getattr(lm, "base", lm)
    head = base.get_output_embeddings()
    weight = head.weight.detach().float().clone()
    lm.to(torch.bfloat16)
    head.weight = torch.nn.Parameter(weight, requires_grad=False)
    if getattr(head, "bias", None) is not None:
        head.bias = torch.nn.Parameter(head.bias.detach().float(), requires_grad=False)
    head.register_forward_pre_hook(lambda _m, args: (args[0].float(), *args[1:]))
