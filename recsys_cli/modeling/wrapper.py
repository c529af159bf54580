"""`RecsysLM`: a causal LM (optionally wrapped by peft LoRA) plus the intra-position table.

2D positions onto a decoder-only model (DESIGN.md "Mapping GLM onto today's decoder-only
models"): the inter-position goes into the model's own `position_ids`; the intra-position
goes through `intra_embed` (zero-initialised, so an untrained wrapper *is* the base model)
and is added to `inputs_embeds`. With `positions="linear"` (the ablation) positions are
plain 0..L-1 (continuing after a KV cache) and the intra table is not used.

    python -c "from recsys_cli.modeling.checkpoint import load_base_for_inference as l; m,t,c=l('fixtures/tiny-model'); print(m)"
"""

from __future__ import annotations

import torch
from torch import nn

POSITIONS = ("glm", "linear")


def _cache_arg() -> str:
    """The cache keyword of the installed transformers' causal LMs (renamed in 5.x)."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_ARG = _cache_arg()
DEFAULT_MAX_INTRA = 64


class RecsysLM(nn.Module):
    """Base LM + intra-position table. `forward` takes the GLM inputs of one batch."""

    def __init__(self, base: nn.Module, positions: str = "glm", max_intra: int = DEFAULT_MAX_INTRA):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.base = base
        self.positions = positions
        self.max_intra = int(max_intra)
        self.new_token_ids: list[int] = []  # rows added for the special tokens
        hidden = base.get_input_embeddings().weight.shape[1]
        dtype = base.get_input_embeddings().weight.dtype
        self.intra_embed = nn.Embedding(self.max_intra, hidden, dtype=dtype)
        nn.init.zeros_(self.intra_embed.weight)

    @property
    def config(self):
        return self.base.config

    def embed(self, input_ids: torch.Tensor, intra: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (+ intra-position embeddings in glm mode).  -> [B, L, H]"""
        emb = self.base.get_input_embeddings()(input_ids)  # [B, L, H]
        if self.positions == "glm" and intra is not None:
            idx = intra.clamp(min=0, max=self.max_intra - 1)  # [B, L]
            emb = emb + self.intra_embed(idx).to(emb.dtype)  # [B, L, H]
        return emb

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, q]
        inter: torch.Tensor | None,  # [B, q] position ids (glm)
        intra: torch.Tensor | None,  # [B, q] intra ids (glm)
        attn_mask_4d: torch.Tensor,  # [B, 1, q, kv] float: 0 allowed, finfo.min blocked
        labels: torch.Tensor | None = None,  # [B, q] ALREADY aligned: label[i] is the target at i;
        # with labels, out.logits holds only the columns where some row has a target
        cache=None,  # a transformers Cache (decoding); out.cache holds the updated one
        use_cache: bool = False,
    ):
        if attn_mask_4d.dtype == torch.bool:
            raise TypeError("attn_mask_4d must be a float mask (0 allowed, finfo.min blocked), not bool")
        b, q = input_ids.shape
        if self.positions == "glm":
            position_ids = inter  # [B, q]
        else:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = (past + torch.arange(q, device=input_ids.device)).unsqueeze(0).expand(b, q)  # [B, q]
        embeds = self.embed(input_ids, intra)  # [B, q, H]
        if cache is None and use_cache:
            from transformers import DynamicCache

            cache = DynamicCache()
        extra = {}
        if labels is not None:
            # Only Part B positions carry targets: project just those columns onto the
            # vocabulary (the [B, q, V] logits dominate memory and time on small models).
            keep = (labels != -100).any(dim=0).nonzero().squeeze(1)  # [k]
            labels = labels[:, keep]  # [B, k]
            extra["logits_to_keep"] = keep
        out = self.base(
            inputs_embeds=embeds,
            attention_mask=attn_mask_4d.to(embeds.dtype),
            position_ids=position_ids,
            use_cache=use_cache,
            **{CACHE_ARG: cache},
            **extra,
        )
        if not hasattr(out, "cache"):  # older transformers name it past_key_values
            out.cache = getattr(out, "past_key_values", None)
        if labels is not None:
            logits = out.logits  # [B, k, V]
            out.loss = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
            )
        return out
