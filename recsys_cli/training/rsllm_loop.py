"""RSLLM inside the `pretrain` loop (docs/rsllm.md): the SASRec file, the hybrid modules, the
continuation from a stage-1 checkpoint and the stage-2 step.

    recsys pretrain --data R --config recipes/pretrain/rsllm-cpu.yaml --out C_rsllm   # both stages
    recsys pretrain --data R --config recipes/pretrain/tiny-cpu.yaml --out C_rsllm \\
        --set hybrid.embeddings=R/baselines/sasrec.safetensors --set hybrid.stage1_steps=20

`HybridRun(trainer)` is built by training/loop.Trainer after the model and before the
optimizer (so the projector and user head are optimised): it loads the embeddings (refused
when trained on other data), continues from `hybrid.init_checkpoint` (its adapter and intra
table; never its optimizer state), attaches `lm.hybrid` (seeded) and the frozen SASRec user
encoder, and gives ExampleStream its HybridSpec. Stage-2 micro-batches go through
`loss(model, examples)`: training/rsllm.collate_hybrid + hybrid_step.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from recsys_cli.artifacts import item_embeddings, schemas
from recsys_cli.artifacts.checkpoint import CheckpointConfig, verify_files
from recsys_cli.artifacts.io import data_fingerprint
from recsys_cli.baselines.sasrec_encoder import UserEncoder, sasrec_config
from recsys_cli.data.rsllm import item_rows
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.checkpoint import _read_extras
from recsys_cli.modeling.rsllm import build_hybrid
from recsys_cli.training.data import HybridSpec
from recsys_cli.training.rsllm import collate_hybrid, hybrid_step

ADAPTER_WEIGHTS = "adapter_model.safetensors"
DATA_DIR = "{data}"  # hybrid.embeddings may start with it: the run's --data directory


def _refuse(ckpt: Path, what: str) -> RecsysError:
    return RecsysError(f"hybrid.init_checkpoint {ckpt}: {what}", exit_code=2)


def load_init_checkpoint(lm, ckpt: Path, spec, r, vocab_size: int) -> None:
    """Copy a (stage-1, text-only) checkpoint's adapter weights and intra table into `lm`
    (checked: same base, positions, intra table, vocabulary and LoRA settings)."""

    ckpt = Path(ckpt)
    cfg = CheckpointConfig.read(ckpt)
    verify_files(ckpt, cfg)  # present and as saved (sha256), before any weight is read
    lo = r.lora
    checks = [
        (cfg.base_fingerprint == spec.fingerprint, f"base model {cfg.base_model} differs from this run's"),
        (cfg.positions == lm.positions, f"positions {cfg.positions} (this run: {lm.positions})"),
        (cfg.max_intra == lm.max_intra, f"intra table of {cfg.max_intra} rows (this run: {lm.max_intra}; other data?)"),
        (cfg.vocab_size == vocab_size, f"vocabulary of {cfg.vocab_size} tokens (this run: {vocab_size})"),
        (
            cfg.lora is not None
            and (cfg.lora.rank, cfg.lora.alpha, cfg.lora.targets, cfg.lora.modules_to_save)
            == (lo.rank, lo.alpha, lo.targets, lo.modules_to_save),
            "other LoRA settings (rank, alpha, targets, modules_to_save)",
        ),
    ]
    for ok, what in checks:
        if not ok:
            raise _refuse(ckpt, what)
    f = ckpt / schemas.CKPT_ADAPTER / ADAPTER_WEIGHTS
    if not f.is_file():
        raise _refuse(ckpt, f"{f.name} not found in {schemas.CKPT_ADAPTER}/ (incomplete checkpoint)")
    res = set_peft_model_state_dict(lm.base, load_file(str(f)))
    unexpected = list(getattr(res, "unexpected_keys", []) or [])
    if unexpected:
        raise _refuse(ckpt, f"adapter tensors that do not fit this model (e.g. {unexpected[0]})")
    w = _read_extras(ckpt).get("intra_embed.weight")
    if w is None or tuple(w.shape) != tuple(lm.intra_embed.weight.shape):
        raise _refuse(ckpt, "intra_embed.weight missing or of another shape")
    with torch.no_grad():
        lm.intra_embed.weight.copy_(w.to(lm.intra_embed.weight.dtype))


def embeddings_path(value: str, data_dir: Path) -> Path:
    """hybrid.embeddings as a path: a leading DATA_DIR is the run's --data directory, so a recipe
    can name `{data}/baselines/sasrec.safetensors` (where `recsys baseline sasrec` writes it)."""
    if value.startswith(DATA_DIR):
        return (Path(data_dir) / value[len(DATA_DIR) :].lstrip("/\\")).resolve()
    return Path(value).resolve()


class HybridRun:
    def __init__(self, trainer):
        r = trainer.r
        self.h = h = r.hybrid
        self.path = embeddings_path(h.embeddings, trainer.data_dir)
        emb = item_embeddings.load(self.path)
        want = data_fingerprint(trainer.data_dir)
        if emb.data_fingerprint != want:
            raise RecsysError(
                f"hybrid.embeddings {self.path}: trained on other data than {trainer.data_dir} (manifest sha256 "
                f"{str(emb.data_fingerprint)[:12]}, expected {str(want)[:12]}); re-run `recsys baseline sasrec "
                f"--data {trainer.data_dir}`",
                exit_code=2,
            )
        if h.init_checkpoint:
            load_init_checkpoint(trainer.lm, Path(h.init_checkpoint), trainer.spec, r, len(trainer.tok))
        self.mods = build_hybrid(trainer.lm, emb, h, seed=r.train.seed)
        self.item_ids = list(emb.item_ids)
        self.history_len = int(sasrec_config(emb.config).max_len)
        self.encoder = None
        if h.user_loss_weight > 0:
            # building SASRec draws an init: leave the run's RNG (dropout) as it was, so that
            # stage 1 is exactly the text-only run of the same recipe
            with torch.random.fork_rng(devices=[]):
                self.encoder = UserEncoder(emb, trainer.device)
        self.spec = HybridSpec(item_rows(emb.item_ids), int(trainer.tok.pad_token_id), h.id_tokens)
        self.trainer = trainer

    def describe(self) -> dict:
        """CheckpointConfig.hybrid."""
        return self.mods.describe(str(self.path), self.item_ids)

    def batch(self, examples, title_rows: bool = True) -> dict:
        """Collated stage-2 batch on the device; the titles' own rows only when the item loss
        reads hidden states (training/rsllm.pack_titles)."""

        t, h = self.trainer, self.h
        packed = title_rows and h.item_loss_weight > 0 and h.item_text == "hidden"
        b = collate_hybrid(examples, t.tok.pad_token_id, torch.float32, history_len=self.history_len, title_rows=packed)
        return {k: v.to(t.device) for k, v in b.items()}

    def loss(self, model, examples) -> tuple[dict, dict]:
        """Stage-2 losses of one micro-batch -> (hybrid_step's dict, the batch)."""

        t = self.trainer
        b = self.batch(examples)
        with torch.autocast(t.device_type, dtype=torch.bfloat16, enabled=t.bf16 and t.engine is None):
            parts = hybrid_step(model, t.lm, b, self.h, self.encoder)
        return parts, b

    def lm_loss(self, model, examples):
        """LM loss only (the validation loss of stage 2), soft tokens in place."""
        t = self.trainer
        b = self.batch(examples, title_rows=False)
        soft = (b["soft_b"], b["soft_pos"], b["soft_row"]) if len(b["soft_b"]) else None
        with torch.autocast(t.device_type, dtype=torch.bfloat16, enabled=t.bf16 and t.engine is None):
            return model(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], labels=b["labels"], soft=soft).loss
