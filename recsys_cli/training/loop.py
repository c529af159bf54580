"""The `pretrain` training loop: GLM blank infilling with LoRA on any causal LM.

    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt

AdamW, linear warmup then cosine decay, gradient accumulation, bf16 autocast when the GPU
supports it, optional activation checkpointing, validation loss on valid prompts, checkpoints
every `save_every` steps, exact `--resume`, Ctrl-C saves and exits, C/metrics.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

from recsys_cli import console
from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import manifest, require, write_json
from recsys_cli.training.data import ExampleStream, collate, load_sources
from recsys_cli.training.recipe import Recipe


def lr_at(step: int, r: Recipe, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based): warmup, then cosine to lr*min_lr_ratio."""
    if step < r.warmup_steps:
        return r.lr * (step + 1) / r.warmup_steps
    span = max(1, total - r.warmup_steps)
    t = min(1.0, (step - r.warmup_steps) / span)
    return r.lr * (r.min_lr_ratio + (1 - r.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_model(r: Recipe, device: str):
    """Base (+special tokens, resized) -> LoRA (+trainable new rows, + modules_to_save) -> RecsysLM."""
    import torch

    from recsys_cli.modeling import RecsysLM, attach_lora, prepare_base

    base, tok, spec, special = prepare_base(r.model, dtype=torch.float32, trust_remote_code=r.trust_remote_code)
    new_ids = sorted(special.values())
    if r.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    peft_model = attach_lora(base, new_ids, r.lora_rank, r.lora_alpha, r.lora_dropout, r.lora_targets, r.modules_to_save)
    lm = RecsysLM(peft_model, positions=r.positions, max_intra=r.max_intra)
    lm.new_token_ids = new_ids
    # from_pretrained leaves the HF model in eval mode while RecsysLM starts in train mode;
    # HF only checkpoints layers when `self.training`, so set the whole tree to train mode.
    lm.train()
    return lm.to(device), tok, spec, special



def _use_bf16(r: Recipe, device: str) -> bool:
    import torch

    if r.precision == "bf16":
        return True
    return r.precision == "auto" and device == "cuda" and torch.cuda.is_bf16_supported()


class Trainer:
    def __init__(self, r: Recipe, data_dir: Path, out: Path, command: str = "pretrain"):
        import torch

        self.r, self.data_dir, self.out = r, Path(data_dir), Path(out)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.bf16 = _use_bf16(r, self.device)
        require(self.data_dir, schemas.CORPUS, schemas.PROMPTS)  # before the (slow) model load
        torch.manual_seed(r.seed)
        self.lm, self.tok, self.spec, self.special_map = build_model(r, self.device)
        from recsys_cli.data.masking import SpecialIds

        self.special = SpecialIds.from_tokenizer(self.tok)
        self.sources = load_sources(self.data_dir, self.tok, r.eval_prompts)
        self.stream = ExampleStream(self.sources, r, self.special)
        per_step = r.batch_size * r.grad_accum * self._world()
        self.total = int(r.max_steps) if r.max_steps is not None else max(1, math.ceil(r.epochs * self.sources.n_train / per_step))
        params = [p for p in self.lm.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=r.weight_decay)
        self.engine = None
        if r.deepspeed:
            from recsys_cli.training import ds

            self.ds_config = ds.read_config(r.deepspeed, r, self.bf16)
            self.engine = ds.initialize(self.lm, self.opt, self.ds_config, self.device)
        self.command = command

    def _world(self) -> int:
        import os

        return int(os.environ.get("WORLD_SIZE", "1"))

    def _rank(self) -> int:
        import os

        return int(os.environ.get("RANK", "0"))

    def batch(self, step: int, micro: int) -> dict:
        import torch

        r = self.r
        first = ((step * r.grad_accum + micro) * self._world() + self._rank()) * r.batch_size
        exs = [self.stream.example(first + j) for j in range(r.batch_size)]
        b = collate(exs, self.tok.pad_token_id, torch.float32)
        return {k: v.to(self.device) for k, v in b.items()}

    def _loss(self, b: dict):
        import torch

        model = self.engine if self.engine is not None else self.lm
        with torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.bf16 and self.engine is None):
            out = model(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], labels=b["labels"])
        return out.loss

    def evaluate(self) -> float | None:
        """Token-weighted loss on the answers of the valid prompts."""
        import torch

        if not self.sources.valid:
            return None
        self.lm.eval()
        tot, n = 0.0, 0
        bs = self.r.batch_size
        with torch.no_grad():
            for i in range(0, len(self.sources.valid), bs):
                exs = [self.stream.prompt(s, t) for s, t in self.sources.valid[i : i + bs]]
                b = {k: v.to(self.device) for k, v in collate(exs, self.tok.pad_token_id, torch.float32).items()}
                k = int((b["labels"] != -100).sum())
                tot += float(self._loss(b)) * k
                n += k
        self.lm.train()
        return tot / max(n, 1)

    def save(self, step: int, rng_state) -> None:
        from recsys_cli.modeling import save_checkpoint
        from recsys_cli.training import state

        if self._rank() != 0 and self.engine is None:
            return
        meta = {
            "base_model": self.spec.name,
            "base_fingerprint": self.spec.fingerprint,
            "special_tokens": self.special_map,
            "lora": {
                "rank": self.r.lora_rank, "alpha": self.r.lora_alpha, "dropout": self.r.lora_dropout,
                "targets": self.r.lora_targets, "modules_to_save": self.r.modules_to_save,
            },
            "step": step,
            "recipe": self.r.to_dict(),
        }
        ctx = contextlib.nullcontext()
        if self.engine is not None:
            from recsys_cli.training import ds

            ctx = ds.gathered(self.lm, self.ds_config)
        with ctx:
            if self._rank() == 0:
                save_checkpoint(self.lm, self.tok, self.out, meta)
        state.save_state(self.out, self.lm, self.opt, step, rng_state, engine=self.engine)
        if self._rank() == 0:
            inputs = [self.data_dir / schemas.CORPUS, self.data_dir / schemas.PROMPTS]
            rows = {"steps": step, "train_examples": self.sources.n_train}
            write_json(manifest(self.command, self.r.to_dict(), inputs, rows), self.out / schemas.MANIFEST)

    def train(self, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
        """Run to the recipe's total; `stop_at` stops early like Ctrl-C (save, resumable)."""
        import torch

        from recsys_cli.training import state

        r, out = self.r, self.out
        out.mkdir(parents=True, exist_ok=True)
        metrics = out / schemas.CKPT_METRICS
        start = 0
        if resume:
            start = state.load_state(out, self.lm, self.opt, engine=self.engine)
            kept = [ln for ln in metrics.read_text().splitlines() if json.loads(ln)["step"] <= start] if metrics.exists() else []
            metrics.write_text("".join(ln + "\n" for ln in kept))
        elif metrics.exists():
            metrics.unlink()
        self.lm.train()
        rng_state = torch.get_rng_state()
        t0 = time.perf_counter()
        last_loss, val = float("nan"), None
        step = start
        interrupted = False
        from rich.progress import TextColumn

        with console.progress(TextColumn("loss {task.fields[loss]}")) as prog, open(metrics, "a") as mf:
            task = prog.add_task("pretrain", total=self.total, completed=start, loss="-")
            try:
                while step < self.total:
                    ts = time.perf_counter()
                    lr = lr_at(step, r, self.total)
                    for g in self.opt.param_groups:
                        g["lr"] = lr
                    losses, tokens = [], 0
                    for micro in range(r.grad_accum):
                        b = self.batch(step, micro)
                        tokens += int(b["lengths"].sum())
                        loss = self._loss(b)
                        if self.engine is not None:
                            self.engine.backward(loss)
                            self.engine.step()
                        else:
                            (loss / r.grad_accum).backward()
                        losses.append(loss.detach().item())
                    if self.engine is None:
                        torch.nn.utils.clip_grad_norm_([p for p in self.lm.parameters() if p.requires_grad], r.max_grad_norm)
                        self.opt.step()
                        self.opt.zero_grad(set_to_none=True)
                    step += 1
                    rng_state = torch.get_rng_state()
                    last_loss = sum(losses) / len(losses)
                    dt = time.perf_counter() - ts
                    row = {"step": step, "loss": round(last_loss, 6), "lr": lr, "tokens_per_s": round(tokens / dt, 2), "elapsed": round(time.perf_counter() - t0, 3)}
                    if step % r.eval_every == 0 or step == self.total:
                        val = self.evaluate()
                        if val is not None:
                            row["val_loss"] = round(val, 6)
                    if self._rank() == 0:
                        mf.write(json.dumps(row) + "\n")
                        mf.flush()
                    prog.update(task, advance=1, loss=f"{last_loss:.4f}")
                    if step % r.save_every == 0 and step < self.total:
                        self.save(step, rng_state)
                    if stop_at is not None and step >= stop_at:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                interrupted = True
                console.log(f"interrupted: saving the checkpoint at step {step} to {out} (continue with --resume)")
        self.save(step, rng_state)
        return {
            "out": str(out),
            "steps": step,
            "total_steps": self.total,
            "loss": last_loss,
            "val_loss": val,
            "interrupted": interrupted,
            "elapsed_s": round(time.perf_counter() - t0, 2),
            "device": self.device,
            "bf16": self.bf16,
        }
