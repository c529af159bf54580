"""LoRA setup: which projections get adapters, which modules train in full, and the peft model.

    python -c "from recsys_cli.modeling.lora import DEFAULT_TARGETS; print(DEFAULT_TARGETS)"

The paper adapts the attention and MLP projections (GLM's query_key_value, dense,
dense_h_to_4h, dense_4h_to_h) with rank 8; on Llama-style models those are q/k/v/o and
gate/up/down. The new special tokens' embedding rows train through peft's
`trainable_token_indices`, unless `modules_to_save` trains the whole embedding.
"""

from __future__ import annotations

from recsys_cli.errors import RecsysError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
OTHER_KNOWN = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "c_attn", "c_proj", "c_fc")


def lora_targets(model, wanted: list[str] | None) -> list[str]:
    """The attention + MLP projections present in `model` (the paper's query_key_value, dense,
    dense_h_to_4h, dense_4h_to_h), or the user's list checked against the model."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if wanted:
        bad = [w for w in wanted if w not in names]
        if bad:
            raise RecsysError(f"--lora-targets: {bad} are not linear layers of this model (it has {sorted(names)})")
        return list(wanted)
    found = [t for t in DEFAULT_TARGETS + OTHER_KNOWN if t in names]
    if not found:
        raise RecsysError(f"no known attention/MLP projections in this model; pass --lora-targets from {sorted(names)}")
    return found


def _module_name(model, module) -> str | None:
    """The last component of `module`'s name inside `model` (e.g. embed_tokens, lm_head)."""
    for n, m in model.named_modules():
        if m is module and n:
            return n.rsplit(".", 1)[-1]
    return None


def full_modules(model, wanted: list[str] | None) -> tuple[list[str], bool, bool]:
    """Check the recipe's `modules_to_save` (modules trained in full, e.g. the embedding of a
    random model) against `model`. -> (names, embedding_in_full, tied): with tied embeddings
    the input embedding and the output head are one matrix, so naming either trains both."""
    if not wanted:
        return [], False, False
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules() if n}
    bad = [w for w in wanted if w not in names]
    if bad:
        raise RecsysError(
            f"modules_to_save / --modules-to-save: {bad} are not modules of this model (e.g. embed_tokens, lm_head)"
        )
    emb = _module_name(model, model.get_input_embeddings())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    heads = {emb, _module_name(model, head)} if tied else {emb}
    return list(wanted), bool(heads & set(wanted)), tied


def attach_lora(
    model,
    new_token_ids: list[int],
    rank: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    targets=None,
    modules_to_save=None,
):
    """Wrap with peft LoRA; the new tokens' embedding rows are trainable via trainable_token_indices,
    unless `modules_to_save` trains the whole embedding (then those rows train with it, and peft's
    ensure_weight_tying keeps a tied output head the same matrix, in training and after loading)."""
    from peft import LoraConfig, get_peft_model

    full, embedding_in_full, tied = full_modules(model, modules_to_save)
    lora = lora_targets(model, targets)
    both = sorted(set(full) & set(lora))
    if both:
        raise RecsysError(
            f"{both} are both LoRA targets and modules_to_save; a module is either adapted or trained in full"
        )
    cfg = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora,
        trainable_token_indices=None if embedding_in_full else (list(new_token_ids) or None),
        modules_to_save=full or None,
        ensure_weight_tying=embedding_in_full and tied,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)
