"""Building, saving and loading RecsysLM checkpoints (docs/ARCHITECTURE.md "Checkpoint directory").

C/adapter/                 peft adapter (LoRA + trainable rows of the new tokens, or the whole
                           embedding when the recipe lists it in modules_to_save)
C/tokenizer/               tokenizer with [M] [sM] [gM] [START] [END]
C/extras.safetensors       intra_embed.weight + new_token_rows (a copy, for inspection)
C/recsys_checkpoint.json   base model + fingerprint, vocab size, positions, max_intra, ...

python -c "from recsys_cli.modeling.checkpoint import load_checkpoint; m,t,c=load_checkpoint('runs/ckpt'); print(c)"
"""

from __future__ import annotations

from pathlib import Path

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.artifacts.checkpoint import CheckpointConfig, hash_files, verify_files
from recsys_cli.errors import InputError, RecsysError


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


def prepare_base(model_name: str | None, dtype=None, trust_remote_code: bool = False, tokenizer=None):
    """Resolve + load the base model and tokenizer (unless given), add the special tokens,
    resize. Returns (model, tokenizer, spec, special: token->id)."""
    from recsys_cli.data.special_tokens import add_special_tokens
    from recsys_cli.modeling.registry import load_base_model, load_tokenizer, resolve_model

    spec = resolve_model(model_name)
    tok = tokenizer if tokenizer is not None else load_tokenizer(spec, trust_remote_code=trust_remote_code)
    special = add_special_tokens(tok).as_dict()
    model = load_base_model(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    resize_for_tokens(model, tok)
    return model, tok, spec, special


def _new_rows(lm):
    """The current embedding rows of the new tokens.  -> [n_new, H]"""
    import torch

    emb = lm.base.get_input_embeddings()
    with torch.no_grad():  # the index lives where the embedding does (a CUDA model: cuda)
        return emb(torch.tensor(lm.new_token_ids, dtype=torch.long, device=emb.weight.device)).float().contiguous()


def save_checkpoint(lm, tokenizer, out: Path, cfg: CheckpointConfig) -> None:
    """Write adapter/, tokenizer/, extras.safetensors and recsys_checkpoint.json into `out`
    (each replaced atomically; the json is written last and marks a complete checkpoint).
    `cfg`'s model fields (positions, max_intra, vocab, new tokens) are taken from `lm`."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with outputs.write_dir(out / schemas.CKPT_ADAPTER, outputs.CHECKPOINT) as tmp:  # recorded in C's ledger
        # new rows live in trainable_token_indices (or in a modules_to_save embedding, which peft
        # saves whole); the resize is deterministic -> no other embedding copy
        lm.base.save_pretrained(str(tmp), safe_serialization=True, save_embedding_layers=False)
    with outputs.write_dir(out / schemas.CKPT_TOKENIZER, outputs.CHECKPOINT) as tmp:
        tokenizer.save_pretrained(str(tmp))
    tensors = {"intra_embed.weight": lm.intra_embed.weight.detach().float().contiguous().cpu()}
    if getattr(lm, "new_token_ids", None):
        tensors["new_token_rows"] = _new_rows(lm).cpu()
    tensors.update(getattr(lm, "extra_tensors", dict)())  # e.g. the RSLLM projector
    with outputs.write_file(out / schemas.CKPT_EXTRAS, outputs.CHECKPOINT) as tmpf:
        save_file(tensors, str(tmpf))
    cfg.positions, cfg.max_intra, cfg.vocab_size = lm.positions, lm.max_intra, len(tokenizer)
    cfg.new_token_ids = list(getattr(lm, "new_token_ids", []))
    cfg.files_sha256 = hash_files(out)  # checked by load_checkpoint (artifacts/checkpoint.verify_files)
    cfg.write(out)


def _read_extras(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = path / schemas.CKPT_EXTRAS
    if not f.is_file():
        raise RecsysError(f"{f}: file not found; the checkpoint is incomplete (re-run `recsys pretrain`)", exit_code=2)
    try:
        return load_file(str(f))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError.at(f, None, f"a readable safetensors file ({' '.join(str(exc).split())[:120]})")


def lora_deltas(model) -> dict[str, tuple]:
    """Every LoRA layer of a peft model, named as after merge_and_unload -> (A [r, in], B [out, r],
    scaling): what `set_merged_scale` needs to move a merged model to another adapter scale."""
    out = {}
    for name, module in model.named_modules():
        scaling = getattr(module, "scaling", None)
        if not isinstance(scaling, dict) or not hasattr(module, "lora_A"):
            continue
        for adapter, factor in scaling.items():
            if adapter in module.lora_A:
                a, b = module.lora_A[adapter].weight, module.lora_B[adapter].weight
                out[name.removeprefix("base_model.model.")] = (a.detach().clone(), b.detach().clone(), factor)
    return out


def set_merged_scale(lm, scale: float) -> None:
    """Move a merged checkpoint (load_checkpoint(merge=True)) to `scale` times each LoRA delta:
    W = W0 + scale * scaling * B @ A (`infer --text-adapter-scale`; 1 = as trained). A model
    without LoRA (`--checkpoint none`) is left alone."""
    import torch

    deltas, now = getattr(lm, "lora_deltas", None), getattr(lm, "lora_scale", 1.0)
    if not deltas or scale == now:
        return
    modules = dict(lm.base.named_modules())
    with torch.no_grad():
        for name, (a, b, factor) in deltas.items():
            w = modules[name].weight  # [out, in]
            w += ((scale - now) * factor * (b.float() @ a.float())).to(device=w.device, dtype=w.dtype)
    lm.lora_scale = scale


def load_checkpoint(
    path,
    base_model: str | None = None,
    device: str = "cpu",
    merge: bool = False,
    dtype=None,
    trust_remote_code: bool = False,
):
    """-> (RecsysLM, tokenizer, CheckpointConfig). Base from the registry (or `base_model`),
    embeddings resized to the saved tokenizer, `PeftModel.from_pretrained(C/adapter)`, intra
    table from extras. `merge=True` folds LoRA into the weights (inference) and keeps each
    layer's A and B as `lm.lora_deltas` (for `set_merged_scale`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from recsys_cli.modeling.registry import check_fingerprint, go_offline, load_base_model, resolve_model

    from .wrapper import RecsysLM

    go_offline()  # local files only: a missing file is an error, never a download
    path = Path(path)
    cfg = CheckpointConfig.read(path)
    verify_files(path, cfg)  # every file present and, where recorded, with its saved sha256
    spec = resolve_model(base_model if base_model is not None else cfg.base_model)
    check_fingerprint(cfg, spec, path / schemas.CKPT_CONFIG)
    adapter = path / schemas.CKPT_ADAPTER
    tok = AutoTokenizer.from_pretrained(str(path / schemas.CKPT_TOKENIZER), local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if len(tok) != cfg.vocab_size:
        raise RecsysError(
            f"{path / schemas.CKPT_TOKENIZER}: vocabulary has {len(tok)} tokens, checkpoint expects {cfg.vocab_size}"
        )
    base = load_base_model(spec, dtype=dtype, trust_remote_code=trust_remote_code)
    if base.get_input_embeddings().weight.shape[0] > len(tok):
        raise RecsysError(
            f"{path / schemas.CKPT_TOKENIZER}: vocabulary ({len(tok)}) is smaller than the base model's "
            f"({base.get_input_embeddings().weight.shape[0]})"
        )
    resize_for_tokens(base, tok)
    try:
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=not merge, local_files_only=True)
    except Exception as exc:  # corrupt weights, a config of another model, ...
        raise InputError.at(
            adapter,
            None,
            f"a peft adapter for this base model ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})",
        )
    deltas = lora_deltas(model) if merge else None
    if merge:
        model = model.merge_and_unload()
    lm = RecsysLM(model, positions=cfg.positions, max_intra=cfg.max_intra)
    lm.new_token_ids = list(cfg.new_token_ids)
    extras = _read_extras(path)
    w = extras.get("intra_embed.weight")
    if w is None or tuple(w.shape) != tuple(lm.intra_embed.weight.shape):
        got = None if w is None else tuple(w.shape)
        raise InputError.at(
            path / schemas.CKPT_EXTRAS,
            "tensor intra_embed.weight",
            f"shape {tuple(lm.intra_embed.weight.shape)}; found {got}",
        )
    with torch.no_grad():
        lm.intra_embed.weight.copy_(w.to(lm.intra_embed.weight.dtype))
    lm.extras = extras  # for modules stored beside the adapter (RSLLM projector)
    lm.lora_deltas = deltas  # merged: each LoRA layer's A, B and scaling (set_merged_scale)
    lm.to(device)
    if merge:
        lm.eval()
    return lm, tok, cfg


def load_base_for_inference(
    model_name: str | None, device: str = "cpu", positions: str = "glm", dtype=None, trust_remote_code: bool = False
):
    """`infer --checkpoint none`: the bare base model + special tokens, zero intra table.
    -> (RecsysLM, tokenizer, CheckpointConfig with lora=None)."""
    from .wrapper import DEFAULT_MAX_INTRA, RecsysLM

    model, tok, spec, special = prepare_base(model_name, dtype=dtype, trust_remote_code=trust_remote_code)
    lm = RecsysLM(model, positions=positions, max_intra=DEFAULT_MAX_INTRA)
    lm.new_token_ids = sorted(special.values())
    lm.to(device).eval()
    cfg = CheckpointConfig(
        base_model=spec.stored_name,
        base_fingerprint=spec.fingerprint,
        positions=positions,
        max_intra=DEFAULT_MAX_INTRA,
        vocab_size=len(tok),
        special_tokens=special,
        new_token_ids=lm.new_token_ids,
        lora=None,
    )
    return lm, tok, cfg
