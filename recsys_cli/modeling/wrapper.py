"""`RecsysLM`: a causal LM (optionally wrapped by peft LoRA) plus the intra-position table.

2D positions onto a decoder-only model (docs/design.md "GLM on decoder-only models"):
the inter-position goes into the model's own `position_ids`; the intra-position
goes through `intra_embed` (zero-initialised, so an untrained wrapper *is* the base model)
and is added to `inputs_embeds`. With `positions="linear"` (the ablation) positions are
plain 0..L-1 (continuing after a KV cache) and the intra table is not used.

RSLLM (docs/rsllm.md): with `lm.hybrid` set (modeling/rsllm.HybridModules), `forward(...,
soft=(batch_idx, position, item_rows))` replaces the token embedding at those positions by
the projected item-ID embedding (the intra embedding is still added), and `hidden=True`
returns the last layer's (final-norm) hidden states as `out.hidden` from the same forward.

    python -c "from recsys_cli.modeling.checkpoint import load_base_for_inference as l; \
        m, t, c = l('fixtures/tiny-model'); print(m)"
"""

from __future__ import annotations

import torch
from torch import nn

from recsys_cli.modeling import pointer

POSITIONS = ("glm", "linear")


def _cache_arg() -> str:
    """The cache keyword of the installed transformers' causal LMs (renamed in 5.x)."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_ARG = _cache_arg()


def _decoder(base: nn.Module) -> nn.Module:
    """The decoder stack (embeddings .. final norm) inside a causal LM, peft-wrapped or not."""
    inner = base.get_base_model() if hasattr(base, "get_base_model") else base
    return inner.get_decoder()


DEFAULT_MAX_INTRA = 64


class RecsysLM(nn.Module):
    """Base LM + intra-position table. `forward` takes the GLM inputs of one batch."""

    def __init__(
        self,
        base: nn.Module,
        positions: str = "glm",
        max_intra: int = DEFAULT_MAX_INTRA,
        pointer_temperature: float = pointer.TEMPERATURE,
    ):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.base = base
        self.positions = positions
        self.max_intra = int(max_intra)
        self.new_token_ids: list[int] = []  # rows added for the special tokens
        self.hybrid: nn.Module | None = None  # RSLLM projector + heads (modeling/rsllm.py)
        self.pointer_temperature = pointer_temperature  # listwise.head pointer: the recipe's listwise.temperature
        hidden = base.get_input_embeddings().weight.shape[1]
        dtype = base.get_input_embeddings().weight.dtype
        self.intra_embed = nn.Embedding(self.max_intra, hidden, dtype=dtype)
        nn.init.zeros_(self.intra_embed.weight)

    @property
    def config(self):
        return self.base.config

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors save_checkpoint writes into extras.safetensors beside the intra table."""
        return self.hybrid.extra_tensors() if self.hybrid is not None else {}

    def embed(self, input_ids: torch.Tensor, intra: torch.Tensor | None, soft=None) -> torch.Tensor:
        """Token embeddings, the soft ID tokens in place (RSLLM), + intra-position embeddings
        in glm mode.  -> [B, L, H]"""
        emb = self.base.get_input_embeddings()(input_ids)  # [B, L, H]
        if soft is not None and len(soft[0]):
            if self.hybrid is None:
                raise ValueError("soft tokens given but the model has no hybrid projector (lm.hybrid is None)")
            b_idx, pos, rows = soft  # [S], [S], [S] long
            vec = self.hybrid.project(rows).to(emb.dtype)  # [S, H]
            emb = emb.index_put((b_idx, pos), vec)  # [B, L, H], out of place (autograd-safe)
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
        soft=None,  # RSLLM: (batch_idx [S], position [S], item_rows [S]) long tensors, or None
        hidden: bool = False,  # also return out.hidden [B, q, H]: last layer, after the final norm
        allowed=None,  # rerank prompts: ([R, 2] (row, position), [R, A] allowed token ids, -1 padded[,
        # [R, A, 2] pointer spans or None]): a row with spans scores its options by modeling/pointer
        last_only: bool = False,  # project only the last position onto the vocabulary (prefill)
        keep=None,  # with labels: [k] long, the columns where some row has a target (else found here, a device sync)
    ):
        if attn_mask_4d.dtype == torch.bool:
            raise TypeError("attn_mask_4d must be a float mask (0 allowed, finfo.min blocked), not bool")
        b, q = input_ids.shape
        if self.positions == "glm":
            position_ids = inter  # [B, q]
        else:
            past = cache.get_seq_length() if cache is not None else 0
            position_ids = (past + torch.arange(q, device=input_ids.device)).unsqueeze(0).expand(b, q)  # [B, q]
        embeds = self.embed(input_ids, intra, soft)  # [B, q, H]
        if cache is None and use_cache:
            from transformers import DynamicCache

            cache = DynamicCache()
        extra = {}
        if labels is not None:
            # Only Part B positions carry targets: project just those columns onto the
            # vocabulary (the [B, q, V] logits dominate memory and time on small models).
            if keep is None:
                keep = (labels != -100).any(dim=0).nonzero().squeeze(1)  # [k]
            labels = labels[:, keep]  # [B, k]
            extra["logits_to_keep"] = keep
        elif last_only:
            extra["logits_to_keep"] = 1  # out.logits [B, 1, V]
        pointer = allowed is not None and len(allowed) > 2 and allowed[2] is not None
        hidden = hidden or (labels is not None and pointer)
        seen: list = []
        hook = _decoder(self.base).register_forward_hook(lambda _m, _i, o: seen.append(o)) if hidden else None
        try:
            out = self.base(
                inputs_embeds=embeds,
                attention_mask=attn_mask_4d.to(embeds.dtype),
                position_ids=position_ids,
                use_cache=use_cache,
                **{CACHE_ARG: cache},
                **extra,
            )
        finally:
            if hook is not None:
                hook.remove()
        if hidden:  # the decoder stack's output: every position, after the final norm
            out.hidden = (
                seen[-1].last_hidden_state if hasattr(seen[-1], "last_hidden_state") else seen[-1][0]
            )  # [B, q, H]
        if not hasattr(out, "cache"):  # older transformers name it past_key_values
            out.cache = getattr(out, "past_key_values", None)
        if labels is not None:
            states = out.hidden if pointer else None
            out.loss = _token_loss(
                out.logits.float(), labels, keep, allowed, states, self.pointer_temperature
            )  # logits [B, k, V]
        return out


def _token_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    keep: torch.Tensor,
    allowed,
    states=None,
    temperature: float = pointer.TEMPERATURE,
) -> torch.Tensor:
    """Mean cross-entropy over the labelled positions. A position listed in `allowed` (a rerank
    prompt, training/rerank.py) takes its softmax over its allowed tokens only: the candidate-
    restricted distribution `infer --candidates-from` ranks with. A listwise pointer position
    (allowed[2], with `states` [B, q, H]) takes it over modeling/pointer's candidate scores
    (cosine / `temperature`)."""
    b, k, v = logits.shape
    ce = nn.functional.cross_entropy(
        logits.reshape(-1, v), labels.reshape(-1), ignore_index=-100, reduction="none"
    )  # [B*k]
    if allowed is not None and len(allowed[0]):
        where, ids = allowed[0], allowed[1]  # [R, 2], [R, A]
        col = torch.searchsorted(keep, where[:, 1].contiguous())  # [R] column of each position among the kept ones
        rows = logits[where[:, 0], col]  # [R, V]
        pad = ids < 0  # [R, A]
        sub = rows.gather(1, ids.clamp(min=0)).masked_fill(pad, float("-inf"))  # [R, A]
        target = rows.gather(1, labels[where[:, 0], col].clamp(min=0)[:, None])[:, 0]  # [R]
        if states is not None:
            answer = labels[where[:, 0], col]  # [R]
            sub, target = _pointer_terms(states, where, ids, allowed[2], answer, sub, target, temperature)
        ce = ce.index_put((where[:, 0] * k + col,), torch.logsumexp(sub, 1) - target)  # [B*k]
    valid = labels.reshape(-1) != -100
    return ce.sum() / valid.sum().clamp(min=1)  # ignored positions are 0 in ce (no boolean indexing: no device sync)


def _pointer_terms(states, where, ids, spans, answer, sub, target, temperature):
    """Rows with pointer spans swap their label logits for pointer scores.  -> sub [R, A], target [R]."""
    is_ptr = (spans[..., 0] >= 0).any(1)  # [R]
    pad = (ids < 0) | (spans[..., 0] < 0)  # [R, A]
    query = states[where[:, 0], where[:, 1]]  # [R, H] the [START] state
    ptr = pointer.scores(query, pointer.span_means(states, where[:, 0], spans), pad, temperature)  # [R, A]
    pick = (ids == answer[:, None]).int().argmax(1)  # [R] the answer's option
    sub = torch.where(is_ptr[:, None], ptr, sub)  # [R, A]
    target = torch.where(is_ptr, ptr.gather(1, pick[:, None])[:, 0], target)  # [R]
    return sub, target
