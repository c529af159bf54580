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
from recsys_cli.artifacts.checkpoint import CheckpointConfig, LoraSettings
from recsys_cli.artifacts.io import data_fingerprint, manifest, require, write_json
from recsys_cli.training.data import ExampleStream, collate, load_sources
from recsys_cli.training.recipe import Recipe


def lr_at(step: int, r: Recipe, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based): warmup, then cosine to lr*min_lr_ratio."""
    t_ = r.train
    if step < t_.warmup_steps:
        return t_.lr * (step + 1) / t_.warmup_steps
    span = max(1, total - t_.warmup_steps)
    t = min(1.0, (step - t_.warmup_steps) / span)
    return t_.lr * (t_.min_lr_ratio + (1 - t_.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def build_model(r: Recipe, device: str, max_intra: int, tokenizer=None):
    """Base (+special tokens, resized) -> LoRA (+trainable new rows, + modules_to_save) -> RecsysLM."""
    import torch

    from recsys_cli.modeling.checkpoint import prepare_base
    from recsys_cli.modeling.lora import attach_lora
    from recsys_cli.modeling.wrapper import RecsysLM

    base, tok, spec, special = prepare_base(r.model.name, torch.float32, r.model.trust_remote_code, tokenizer)
    new_ids = sorted(special.values())
    if r.train.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    lo = r.lora
    peft_model = attach_lora(base, new_ids, lo.rank, lo.alpha, lo.dropout, lo.targets, lo.modules_to_save)
    lm = RecsysLM(peft_model, positions=r.model.positions, max_intra=max_intra)
    lm.new_token_ids = new_ids
    # from_pretrained leaves the HF model in eval mode while RecsysLM starts in train mode;
    # HF only checkpoints layers when `self.training`, so set the whole tree to train mode.
    lm.train()
    return lm.to(device), tok, spec, special



def intra_table_size(r: Recipe, trie) -> tuple[int, bool]:
    """(rows of the intra table, whether ids get clipped): the longest pool entity n gets intra
    ids up to n + 1 in Part B, so n + 2 rows hold every id; a recipe value below that clips."""
    need = (trie.max_depth if trie is not None and trie.num_nodes > 1 else 1) + 2
    if r.model.max_intra is None:
        return need, False
    if r.model.max_intra < need:
        console.log(f"[yellow]model.max_intra={r.model.max_intra} is below the longest entity + 2 ({need}): larger intra ids are clipped")
    return r.model.max_intra, r.model.max_intra < need


def claim_output(out: Path, r: Recipe, data_dir: Path, resume: bool, overwrite: bool, allow: list[str]) -> list[str]:
    """Checks on C before the (slow) model load: never replace a trained checkpoint without
    --overwrite, resume only the same run (training/state.check_resume). With --overwrite the
    old predictions under C are moved into C/stale/ (returned)."""
    from recsys_cli.artifacts import layout
    from recsys_cli.modeling.registry import resolve_model
    from recsys_cli.training import state

    require(data_dir, schemas.CORPUS, schemas.PROMPTS)
    mode = layout.claim_checkpoint_dir(out, resume, overwrite)
    if mode == "resume":
        state.check_resume(out, r, data_fingerprint(data_dir), resolve_model(r.model.name).fingerprint, allow)
    if mode == "overwrite":
        moved = layout.move_aside(out, layout.CKPT_OWNERS["infer"], "overwritten" + layout._step_of(out).replace(" (step ", "-step-").rstrip(")"))
        if moved:
            console.log(f"pretrain --overwrite: moved the old checkpoint's predictions aside: {', '.join(moved)}")
        return moved
    return []


def _use_bf16(r: Recipe, device: str) -> bool:
    import torch

    if r.train.precision == "bf16":
        return True
    return r.train.precision == "auto" and device == "cuda" and torch.cuda.is_bf16_supported()


class Trainer:
    def __init__(self, r: Recipe, data_dir: Path, out: Path, command: str = "pretrain", resume: bool = False,
                 overwrite: bool = False, allow_changed: list[str] | None = None):
        import torch

        self.r, self.data_dir, self.out = r, Path(data_dir), Path(out)
        self.moved = claim_output(self.out, r, self.data_dir, resume, overwrite, allow_changed or [])
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.bf16 = _use_bf16(r, self.device)
        torch.manual_seed(r.train.seed)
        from recsys_cli.data.special_tokens import SpecialIds, add_special_tokens
        from recsys_cli.modeling.registry import load_tokenizer, resolve_model

        tok = load_tokenizer(resolve_model(r.model.name), trust_remote_code=r.model.trust_remote_code)
        self.special = add_special_tokens(tok)
        self.sources = load_sources(self.data_dir, tok, r.eval.eval_prompts)
        self.max_intra, self.intra_clipped = intra_table_size(r, self.sources.trie)
        self.lm, self.tok, self.spec, self.special_map = build_model(r, self.device, self.max_intra, tok)
        self.special = SpecialIds.from_tokenizer(self.tok)
        self.stream = ExampleStream(self.sources, r, self.special)
        t = r.train
        per_step = t.batch_size * t.grad_accum * self._world()
        self.total = int(t.max_steps) if t.max_steps is not None else max(1, math.ceil(t.epochs * self.sources.n_train / per_step))
        params = [p for p in self.lm.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        self.engine = None
        if t.deepspeed:
            from recsys_cli.training import ds

            self.ds_config = ds.read_config(t.deepspeed, r, self.bf16)
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

        t = self.r.train
        first = ((step * t.grad_accum + micro) * self._world() + self._rank()) * t.batch_size
        exs = [self.stream.example(first + j) for j in range(t.batch_size)]
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
        bs = self.r.train.batch_size
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
        from recsys_cli.modeling.checkpoint import save_checkpoint
        from recsys_cli.training import state

        if self._rank() != 0 and self.engine is None:
            return
        lo = self.r.lora
        cfg = CheckpointConfig(
            base_model=self.spec.stored_name, base_fingerprint=self.spec.fingerprint, positions=self.lm.positions,
            max_intra=self.lm.max_intra, vocab_size=len(self.tok), special_tokens=self.special_map,
            new_token_ids=list(self.lm.new_token_ids), lora=LoraSettings(lo.rank, lo.alpha, lo.dropout, lo.targets, lo.modules_to_save),
            step=step, recipe=self.r.to_dict(), data_fingerprint=data_fingerprint(self.data_dir),
        )
        ctx = contextlib.nullcontext()
        if self.engine is not None:
            from recsys_cli.training import ds

            ctx = ds.gathered(self.lm, self.ds_config)
        with ctx:
            if self._rank() == 0:
                save_checkpoint(self.lm, self.tok, self.out, cfg)
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
                    for micro in range(r.train.grad_accum):
                        b = self.batch(step, micro)
                        tokens += int(b["lengths"].sum())
                        loss = self._loss(b)
                        if self.engine is not None:
                            self.engine.backward(loss)
                            self.engine.step()
                        else:
                            (loss / r.train.grad_accum).backward()
                        losses.append(loss.detach().item())
                    if self.engine is None:
                        torch.nn.utils.clip_grad_norm_([p for p in self.lm.parameters() if p.requires_grad], r.train.max_grad_norm)
                        self.opt.step()
                        self.opt.zero_grad(set_to_none=True)
                    step += 1
                    rng_state = torch.get_rng_state()
                    last_loss = sum(losses) / len(losses)
                    dt = time.perf_counter() - ts
                    row = {"step": step, "loss": round(last_loss, 6), "lr": lr, "tokens_per_s": round(tokens / dt, 2), "elapsed": round(time.perf_counter() - t0, 3)}
                    if step % r.eval.eval_every == 0 or step == self.total:
                        val = self.evaluate()
                        if val is not None:
                            row["val_loss"] = round(val, 6)
                    if self._rank() == 0:
                        mf.write(json.dumps(row) + "\n")
                        mf.flush()
                    prog.update(task, advance=1, loss=f"{last_loss:.4f}")
                    if step % r.train.save_every == 0 and step < self.total:
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
            "max_intra": self.max_intra,
            "intra_clipped": self.intra_clipped,
        }
