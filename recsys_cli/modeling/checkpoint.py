"""Building, saving and loading RecsysLM checkpoints (docs/ARCHITECTURE.md "Checkpoint directory").

    C/adapter/                 peft adapter (LoRA + trainable rows of the new tokens, or the whole
                               embedding when the recipe lists it in modules_to_save)
    C/tokenizer/               tokenizer with [M] [sM] [gM] [START] [END]
    C/extras.safetensors       intra_embed.weight + new_token_rows (a copy, for inspection)
    C/recsys_checkpoint.json   base model + fingerprint, vocab size, positions, max_intra, ...

    python -c "from recsys_cli.modeling import load_checkpoint; m,t,c=load_checkpoint('runs/ckpt'); print(c)"
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import atomic_dir, write_json
from recsys_cli.errors import RecsysError

CHECKPOINT_FORMAT = 1
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_special_tokens(tokenizer) -> dict[str, int]:
    """Add the five GLM tokens (idempotent, via data.masking); returns token -> id."""
    from recsys_cli.data import masking

    return masking.add_special_tokens(tokenizer).as_dict()


def resize_for_tokens(model, tokenizer) -> list[int]:
    """Grow the embedding (and untied head) to the tokenizer; new rows = mean of the old rows
    (deterministic, so a reloaded base is identical). Returns the new row indices."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    new = len(tokenizer)
    if new <= old:
        return []
    model.resize_token_embeddings(new, mean_resizing=False)
    with torch.no_grad():
        emb = model.get_input_embeddings().weight  # [V, H]
        emb[old:] = emb[:old].mean(dim=0, keepdim=True)
        head = model.get_output_embeddings()
        if head is not None and head.weight.data_ptr() != emb.data_ptr():
            head.weight[old:] = head.weight[:old].mean(dim=0, keepdim=True)
    return list(range(old, new))


def prepare_base(model_name: str | None, dtype=None, trust_remote_code: bool = False):
    """Resolve + load the base model and tokenizer, add the special tokens, resize.
    Returns (model, tokenizer, spec, special: token->id)."""
    from recsys_cli.models.registry import load_base_model, load_tokenizer, resolve_model

    spec = resolve_model(model_name)
    tok = load_tokenizer(spec, trust_remote_code=trust_remote_code)
    special = add_special_tokens(tok)
    model = load_base_model(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    resize_for_tokens(model, tok)
    return model, tok, spec, special


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
    found = [t for t in DEFAULT_TARGETS + ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "c_attn", "c_proj", "c_fc") if t in names]
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
        raise RecsysError(f"modules_to_save / --modules-to-save: {bad} are not modules of this model (e.g. embed_tokens, lm_head)")
    emb = _module_name(model, model.get_input_embeddings())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    heads = {emb, _module_name(model, head)} if tied else {emb}
    return list(wanted), bool(heads & set(wanted)), tied


def attach_lora(model, new_token_ids: list[int], rank: int = 8, alpha: int = 16, dropout: float = 0.05, targets=None, modules_to_save=None):
    """Wrap with peft LoRA; the new tokens' embedding rows are trainable via trainable_token_indices,
    unless `modules_to_save` trains the whole embedding (then those rows train with it, and peft's
    ensure_weight_tying keeps a tied output head the same matrix, in training and after loading)."""
    from peft import LoraConfig, get_peft_model

    full, embedding_in_full, tied = full_modules(model, modules_to_save)
    lora = lora_targets(model, targets)
    both = sorted(set(full) & set(lora))
    if both:
        raise RecsysError(f"{both} are both LoRA targets and modules_to_save; a module is either adapted or trained in full")
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


def _new_rows(lm):
    """The current embedding rows of the new tokens.  -> [n_new, H]"""
    import torch

    emb = lm.base.get_input_embeddings()
    with torch.no_grad():
        return emb(torch.tensor(lm.new_token_ids, dtype=torch.long)).float().contiguous()


def save_checkpoint(lm, tokenizer, out: Path, meta: dict[str, Any]) -> None:
    """Write adapter/, tokenizer/, extras.safetensors and recsys_checkpoint.json into `out`
    (each replaced atomically; the json is written last and marks a complete checkpoint)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = lm.base
    with atomic_dir(out / schemas.CKPT_ADAPTER) as tmp:
        # new rows live in trainable_token_indices (or in a modules_to_save embedding, which peft
        # saves whole); the resize is deterministic -> no other embedding copy
        base.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    with atomic_dir(out / schemas.CKPT_TOKENIZER) as tmp:
        tokenizer.save_pretrained(str(tmp))
    tensors = {"intra_embed.weight": lm.intra_embed.weight.detach().float().contiguous().cpu()}
    if getattr(lm, "new_token_ids", None):
        tensors["new_token_rows"] = _new_rows(lm).cpu()
    fd, tmpf = tempfile.mkstemp(prefix=".extras.", suffix=".tmp", dir=out)
    os.close(fd)
    save_file(tensors, tmpf)
    os.replace(tmpf, out / schemas.CKPT_EXTRAS)
    cfg = dict(meta)
    cfg.update(
        format=CHECKPOINT_FORMAT,
        positions=lm.positions,
        max_intra=lm.max_intra,
        vocab_size=len(tokenizer),
        new_token_ids=list(getattr(lm, "new_token_ids", [])),
    )
    write_json(cfg, out / schemas.CKPT_CONFIG)


def read_checkpoint_config(path: Path) -> dict[str, Any]:
    f = Path(path) / schemas.CKPT_CONFIG
    if not f.is_file():
        raise RecsysError(f"{path}: not a recsys checkpoint (no {schemas.CKPT_CONFIG}; run `recsys pretrain --out {path}`)")
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise RecsysError(f"{f}, line {exc.lineno}: invalid JSON ({exc.msg})")


def load_checkpoint(path, base_model: str | None = None, device: str = "cpu", merge: bool = False, dtype=None, trust_remote_code: bool = False):
    """-> (RecsysLM, tokenizer, ckpt_config). Base from the registry (or `base_model`), embeddings
    resized to the saved tokenizer, `PeftModel.from_pretrained(C/adapter)`, intra table from
    extras. `merge=True` folds LoRA into the weights (inference)."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from recsys_cli.models.registry import load_base_model, resolve_model

    from .wrapper import RecsysLM

    path = Path(path)
    cfg = read_checkpoint_config(path)
    spec = resolve_model(base_model if base_model is not None else cfg.get("base_model"))
    if cfg.get("base_fingerprint") and spec.fingerprint != cfg["base_fingerprint"]:
        raise RecsysError(
            f"{path / schemas.CKPT_CONFIG}: checkpoint was trained on base model {cfg.get('base_model')!r} "
            f"(fingerprint {cfg['base_fingerprint']}), but {spec.name!r} has fingerprint {spec.fingerprint}"
        )
    tok = AutoTokenizer.from_pretrained(str(path / schemas.CKPT_TOKENIZER))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if len(tok) != cfg.get("vocab_size"):
        raise RecsysError(f"{path / schemas.CKPT_TOKENIZER}: vocabulary has {len(tok)} tokens, checkpoint expects {cfg.get('vocab_size')}")
    base = load_base_model(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    if base.get_input_embeddings().weight.shape[0] > len(tok):
        raise RecsysError(f"{path / schemas.CKPT_TOKENIZER}: vocabulary ({len(tok)}) is smaller than the base model's ({base.get_input_embeddings().weight.shape[0]})")
    resize_for_tokens(base, tok)
    model = PeftModel.from_pretrained(base, str(path / schemas.CKPT_ADAPTER), is_trainable=not merge)
    if merge:
        model = model.merge_and_unload()
    lm = RecsysLM(model, positions=cfg.get("positions", "glm"), max_intra=int(cfg.get("max_intra", 64)))
    lm.new_token_ids = list(cfg.get("new_token_ids", []))
    extras = load_file(str(path / schemas.CKPT_EXTRAS))
    w = extras["intra_embed.weight"]
    if tuple(w.shape) != tuple(lm.intra_embed.weight.shape):
        raise RecsysError(f"{path / schemas.CKPT_EXTRAS}: intra_embed.weight has shape {tuple(w.shape)}, expected {tuple(lm.intra_embed.weight.shape)}")
    with torch.no_grad():
        lm.intra_embed.weight.copy_(w.to(lm.intra_embed.weight.dtype))
    lm.to(device)
    if merge:
        lm.eval()
    return lm, tok, cfg


def load_base_for_inference(model_name: str | None, device: str = "cpu", positions: str = "glm", dtype=None, trust_remote_code: bool = False):
    """`infer --checkpoint none`: the bare base model + special tokens, zero intra table.
    -> (RecsysLM, tokenizer, config dict shaped like a checkpoint's)."""
    from .wrapper import DEFAULT_MAX_INTRA, RecsysLM

    model, tok, spec, special = prepare_base(model_name, dtype=dtype, trust_remote_code=trust_remote_code)
    lm = RecsysLM(model, positions=positions, max_intra=DEFAULT_MAX_INTRA)
    lm.new_token_ids = sorted(special.values())
    lm.to(device).eval()
    cfg = {
        "base_model": spec.name,
        "base_fingerprint": spec.fingerprint,
        "positions": positions,
        "max_intra": DEFAULT_MAX_INTRA,
        "vocab_size": len(tok),
        "special_tokens": special,
        "new_token_ids": lm.new_token_ids,
        "step": 0,
    }
    return lm, tok, cfg
