"""The `pretrain` training loop: GLM blank infilling with LoRA on any causal LM.

    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt

    torchrun --nproc_per_node 2 -m recsys_cli.main pretrain --data runs/toys \\
        --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt

AdamW, linear warmup then cosine decay, gradient accumulation, bf16 autocast when the GPU
supports it, optional activation checkpointing, validation loss on valid prompts, checkpoints
every `save_every` steps, exact `--resume`, Ctrl-C saves and exits, C/metrics.jsonl.

Several processes (torchrun: DDP; --deepspeed: ZeRO) train one model on one global batch:
step s uses examples [s*G, (s+1)*G) with G = batch_size * grad_accum * world, micro-step m of
rank r the slice starting at ((s*grad_accum + m)*world + r)*batch_size, and the loss is the
token mean over the whole global batch; so any split of G over processes and micro-steps
follows the same curve. Rank 0 logs, writes metrics and the exported checkpoint; the resume
state is written by every rank (training/state.py).
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import TextColumn

from recsys_cli import console
from recsys_cli.artifacts import outputs, schemas
from recsys_cli.artifacts.checkpoint import CheckpointConfig, LoraSettings, data_summary
from recsys_cli.artifacts.io import data_fingerprint, manifest, write_json
from recsys_cli.data.special_tokens import add_special_tokens
from recsys_cli.modeling.checkpoint import prepare_base, save_checkpoint
from recsys_cli.modeling.lora import attach_lora
from recsys_cli.modeling.precision import use_bf16
from recsys_cli.modeling.registry import load_tokenizer, resolve_model
from recsys_cli.modeling.wrapper import RecsysLM
from recsys_cli.training import dist, ds, packing, speed, state
from recsys_cli.training.data import ExampleStream, load_sources
from recsys_cli.training.listwise import load_listwise
from recsys_cli.training.profile import NO_TIMER
from recsys_cli.training.recipe import Recipe
from recsys_cli.training.rerank import load_rerank_prompts
from recsys_cli.training.rsllm import schedule_step, stage_of
from recsys_cli.training.rsllm_loop import HybridRun
from recsys_cli.training.speed import LossParts


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
    base, tok, spec, special = prepare_base(r.model.name, torch.float32, r.model.trust_remote_code, tokenizer)
    new_ids = sorted(special.values())
    if r.train.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    lo = r.lora
    peft_model = attach_lora(base, new_ids, lo.rank, lo.alpha, lo.dropout, lo.targets, lo.modules_to_save)
    lm = RecsysLM(peft_model, r.model.positions, max_intra, pointer_temperature=r.listwise.temperature)
    lm.new_token_ids = new_ids
    if r.model.positions == "linear":  # the intra table is unused: keep it out of the optimizer (and DDP)
        lm.intra_embed.weight.requires_grad_(False)
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
        console.log(
            f"[yellow]model.max_intra={r.model.max_intra} is below the longest entity + 2 ({need}): larger intra ids "
            "are clipped"
        )
    return r.model.max_intra, r.model.max_intra < need


def _targets(examples) -> int:
    """Label tokens (the loss's denominator) of a list of examples."""
    return sum(sum(1 for t in e.labels if t != -100) for e in examples)


class Trainer:
    def __init__(
        self,
        r: Recipe,
        data_dir: Path,
        out: Path,
        command: str = "pretrain",
        resume: bool = False,
        overwrite: bool = False,
        allow_changed: list[str] | None = None,
    ):
        self.r, self.data_dir, self.out = r, Path(data_dir), Path(out)
        self.world, self.rank, self.main = dist.world(), dist.rank(), dist.is_main()
        if not self.main:
            console.set_quiet(True)  # rank 0 logs for everyone
        self.moved = state.claim_output(self.out, r, self.data_dir, resume, overwrite, allow_changed or [], self.main)
        self.device = dist.device()  # cpu | cuda | cuda:<local rank>
        self.device_type = self.device.split(":")[0]
        self.bf16 = use_bf16(r.train.precision, self.device)
        if r.train.deepspeed:
            self.ds_config = ds.read_config(r.train.deepspeed, r, self.bf16)
        else:
            dist.init(self.device)  # a torchrun world: gloo on CPU, nccl on GPUs
        torch.manual_seed(r.train.seed)
        tok = load_tokenizer(resolve_model(r.model.name), trust_remote_code=r.model.trust_remote_code)
        self.special = add_special_tokens(tok)  # the one place: sources are tokenized with them, build_model reuses tok
        self.sources = load_sources(self.data_dir, tok, r.eval.eval_prompts)
        if r.rerank.candidates and r.rerank.weight > 0:
            self.sources.rerank = load_rerank_prompts(self.data_dir, Path(r.rerank.candidates), r.rerank.k, tok)
        if r.listwise.candidates and r.listwise.weight > 0:
            lw, seqs = r.listwise, self.sources.sequences
            self.sources.listwise = load_listwise(
                self.data_dir, Path(lw.candidates), lw.k, tok, lw.max_length, seqs, lw.candidate_ids, lw.head
            )
        self.max_intra, self.intra_clipped = intra_table_size(r, self.sources.trie)
        self.lm, self.tok, self.spec, self.special_map = build_model(r, self.device, self.max_intra, tok)
        self.hyb = None  # RSLLM (training/rsllm_loop.py): before the optimizer, which must see the projector
        if r.hybrid.embeddings:
            self.hyb = HybridRun(self)
        self.stream = ExampleStream(self.sources, r, self.special, self.hyb.spec if self.hyb else None)
        t = r.train
        per_step = t.batch_size * t.grad_accum * self.world
        self.total = (
            int(t.max_steps)
            if t.max_steps is not None
            else max(1, math.ceil(t.epochs * self.sources.n_train / per_step))
        )
        speed.prepare(self.lm, t)  # attention kernel, compiled layers
        params = [p for p in self.lm.parameters() if p.requires_grad]
        self.opt = speed.make_optimizer(params, t.lr, t.weight_decay, self.device, fused_ok=not t.deepspeed)
        # self.model runs the training forward: lm itself, DDP(lm) or the DeepSpeed engine
        self.engine, self.model, self.kind = None, self.lm, "torch"
        if t.deepspeed:
            self.engine = self.model = ds.initialize(self.lm, self.opt, self.ds_config, self.device)
            self.kind = f"deepspeed-zero{ds.zero_stage(self.ds_config)}"
        elif self.world > 1:
            self.model, self.kind = dist.wrap_ddp(self.lm, self.device, find_unused=self.hyb is not None), "ddp"
        self.command = command
        self.timer = NO_TIMER  # training/profile.StepTimer while a profile runs

    def examples(self, step: int, micro: int) -> list:
        """This rank's examples for micro-step `micro` of optimizer step `step`."""
        t = self.r.train
        first = ((step * t.grad_accum + micro) * self.world + self.rank) * t.batch_size
        stage = self.stage(step)
        with self.timer.phase("examples"):
            return [self.stream.example(first + j, stage) for j in range(t.batch_size)]

    def stage(self, step: int) -> int:
        """RSLLM stage of optimizer step `step` (1 = text only; always 1 without hybrid)."""
        return stage_of(step, self.r.hybrid) if self.hyb is not None else 1

    def collate(self, examples) -> dict:
        """The batch on the device, `lengths` on the host (training/packing.py; packed rows with train.packing)."""
        with self.timer.phase("collate"):
            capacity = self.r.train.max_length if self.r.train.packing else None  # None: one example per row
            b = packing.collate_rows(examples, self.tok.pad_token_id, capacity)
            self.timer.count(b["input_ids"].numel())
        with self.timer.phase("h2d"):
            return packing.to_device(b, self.device, torch.float32)

    def _loss(self, model, b: dict):
        """Token mean of the cross-entropy over `b`'s targets."""
        bf16 = self.bf16 and self.engine is None
        with self.timer.phase("forward"), torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=bf16):
            out = model(
                b["input_ids"],
                b["inter"],
                b["intra"],
                b["attn_mask_4d"],
                labels=b["labels"],
                allowed=(b["allowed"], b["allowed_ids"], b.get("allowed_spans")) if "allowed" in b else None,
                keep=b.get("keep"),
            )
        return out.loss

    def _backward(self, loss, last_micro: bool) -> None:
        """Accumulate gradients; DDP synchronises on the last micro-step only, DeepSpeed
        reduces and steps at its accumulation boundary."""
        if self.engine is not None:
            self.engine.backward(loss, scale_wrt_gas=False)  # our loss already carries the scale
            self.engine.step()
        elif self.kind == "ddp" and not last_micro:
            with self.model.no_sync():
                loss.backward()
        else:
            loss.backward()

    def _optimizer_step(self) -> None:
        if self.engine is not None:
            return  # engine.step() on the last micro-step did it (clipping included)
        torch.nn.utils.clip_grad_norm_([p for p in self.lm.parameters() if p.requires_grad], self.r.train.max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def evaluate(self, stage: int = 1) -> float | None:
        """Token-weighted loss on the answers of the valid prompts; batches are dealt out to the
        ranks, and every rank runs the same number of forwards (ZeRO-3 gathers in each)."""
        bs = self.r.train.batch_size
        if not self.sources.valid:
            return None
        valid = self.stream.valid_examples(stage)
        hybrid = self.hyb is not None and stage == 2
        batches = [valid[i : i + bs] for i in range(0, len(valid), bs)]
        mine = batches[self.rank :: self.world]
        model = self.engine if self.engine is not None else self.lm  # not DDP: no collective per forward
        self.lm.eval()
        tot, n = 0.0, 0
        with torch.no_grad():
            for j in range(math.ceil(len(batches) / self.world)):
                exs = mine[j] if j < len(mine) else batches[0]
                loss = float(self.hyb.lm_loss(model, exs) if hybrid else self._loss(model, self.collate(exs)))
                if j < len(mine):  # else a spare forward that keeps the ranks in step
                    tot, n = tot + loss * _targets(exs), n + _targets(exs)
        self.lm.train()
        tot, n = dist.all_sum([tot, n], self.device)
        return tot / max(n, 1)

    def save(self, step: int) -> None:
        """Collective: rank 0 exports the checkpoint (adapter, extras, config) from whole
        tensors and every rank writes its part of the resume state."""
        lo = self.r.lora
        cfg = CheckpointConfig(
            base_model=self.spec.stored_name,
            base_fingerprint=self.spec.fingerprint,
            positions=self.lm.positions,
            max_intra=self.lm.max_intra,
            vocab_size=len(self.tok),
            special_tokens=self.special_map,
            new_token_ids=list(self.lm.new_token_ids),
            lora=LoraSettings(lo.rank, lo.alpha, lo.dropout, lo.targets, lo.modules_to_save),
            step=step,
            recipe=self.r.to_dict(),
            data_fingerprint=data_fingerprint(self.data_dir),
            hybrid=self.hyb.describe() if self.hyb is not None else None,
            data_summary=data_summary(self.data_dir),
        )
        weights = None
        with ds.gathered(self.lm, self.ds_config) if self.engine is not None else contextlib.nullcontext():
            if self.main:  # weights first: the module calls in save_checkpoint let ZeRO-3 re-partition
                weights = {
                    n: p.detach().float().cpu().clone() for n, p in self.lm.named_parameters() if p.requires_grad
                }
                save_checkpoint(self.lm, self.tok, self.out, cfg)
            elif self.kind == "deepspeed-zero3":  # the same export into scratch: the module calls
                with tempfile.TemporaryDirectory(prefix="recsys-rank-") as scratch:  # in it keep ZeRO-3 in step
                    save_checkpoint(self.lm, self.tok, Path(scratch), cfg)
        opt_state = ds.optimizer_state(self.engine) if self.engine is not None else self.opt.state_dict()
        state.save_state(self.out, step, weights, opt_state, self.kind)
        if self.main:
            inputs = [self.data_dir / schemas.CORPUS, self.data_dir / schemas.PROMPTS] + (
                [self.hyb.path] if self.hyb is not None else []
            )
            rows = {"steps": step, "train_examples": self.sources.n_train, "processes": self.world}
            write_json(
                manifest(self.command, self.r.to_dict(), inputs, rows),
                self.out / schemas.MANIFEST,
                kind=outputs.CHECKPOINT,
            )
        dist.barrier()

    def restore(self) -> int:
        """Load every rank's resume state in place; returns the step to continue from."""
        step, weights, opt_state = state.load_state(self.out, self.kind)  # and this rank's RNG
        state.apply_weights(self.lm, weights, self.out, partitioned=self.kind == "deepspeed-zero3")
        if self.engine is not None:
            ds.load_optimizer_state(self.engine, opt_state)  # under ZeRO-3 the weights too
        else:
            self.opt.load_state_dict(opt_state)
        return step

    @staticmethod
    def _open_metrics(metrics: Path, resume: bool, start: int):
        """C/metrics.jsonl for appending: cut back to `start` on resume, else begun afresh. C's files were
        claimed as recsys's (layout.claim_checkpoint_dir); the ledger records the file as it grows."""
        if resume and metrics.exists():
            kept = [ln for ln in metrics.read_text().splitlines() if json.loads(ln)["step"] <= start]
            outputs.write_text(metrics, "".join(ln + "\n" for ln in kept), outputs.CHECKPOINT)
        elif metrics.exists():
            outputs.remove(metrics, outputs.CHECKPOINT)
        fh = open(metrics, "a")
        outputs.record(metrics, outputs.CHECKPOINT)
        return fh

    def train(self, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
        """Run to the recipe's total; `stop_at` stops early like Ctrl-C (save, resumable)."""
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        start = self.restore() if resume else 0
        self.lm.train()
        t0 = time.perf_counter()
        last_loss, val, step, interrupted = float("nan"), None, start, False
        window = speed.LossWindow(self.r.train.log_every, self.device)  # loss values read back every log_every steps
        log = self._open_metrics(out / schemas.CKPT_METRICS, resume, start) if self.main else contextlib.nullcontext()
        with (
            console.progress(TextColumn("loss {task.fields[loss]}")) as prog,
            log as mf,
            dist.StopOnSignal() as signals,
        ):
            task = prog.add_task("pretrain", total=self.total, completed=start, loss="-")
            try:
                while step < self.total:
                    self.timer.start_step(step)
                    window.begin()
                    tokens = self._step(step, window, signals, t0)
                    step += 1
                    evaluate = step % self.r.eval.eval_every == 0 or step == self.total
                    save, stop = step % self.r.train.save_every == 0 and step < self.total, False
                    if window.due(step, evaluate or save or (stop_at is not None and step >= stop_at)):
                        last_loss, got, stop = speed.log_window(self, window, evaluate, LossParts.row, mf, prog, task)
                        val = got if evaluate else val
                    self.timer.end_step(tokens)
                    if save:
                        self.save(step)
                    if stop or (stop_at is not None and step >= stop_at):
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                if self.world == 1 and window.due(step, True):  # rows of the steps not read back yet
                    last_loss = speed.log_window(self, window, False, LossParts.row, mf, prog, task)[0]
                interrupted = True
                console.log(f"interrupted: saving the checkpoint at step {step} to {out} (continue with --resume)")
        self.save(step)
        return {
            "out": str(out),
            "steps": step,
            "total_steps": self.total,
            "loss": last_loss,
            "val_loss": val,
            "interrupted": interrupted,
            "elapsed_s": round(time.perf_counter() - t0, 2),
            "device": self.device,
            "processes": self.world,
            "engine": self.kind,
            "bf16": self.bf16,
            "max_intra": self.max_intra,
            "intra_clipped": self.intra_clipped,
        }

    def _step(self, step: int, window: speed.LossWindow, signals: dist.StopOnSignal, t0: float) -> int:
        """Optimizer step `step`: its micro-steps' forwards and backwards, then the update; its loss values
        go into `window` (read back later). -> the step's tokens (padding included)."""
        r = self.r
        stage = self.stage(step)
        at, span = schedule_step(step, r.hybrid, self.total)  # stage 2 may restart the schedule
        lr = lr_at(at, r, span)
        for g in self.opt.param_groups:
            g["lr"] = lr
        micro_examples = [self.examples(step, m) for m in range(r.train.grad_accum)]
        n_local = [_targets(exs) for exs in micro_examples]
        (n_global,) = dist.all_sum([sum(n_local)], self.device)
        loss_sum, tokens, parts = 0.0, 0, LossParts()
        for micro, exs in enumerate(micro_examples):
            if stage == 2:  # RSLLM: LM + weighted item / user InfoNCE (a mean over the micro-batch)
                terms, b = self.hyb.loss(self.model, exs)
                loss = terms["loss"]
                parts.add_terms(terms, n_local[micro])
            else:
                b = self.collate(exs)
                loss = self._loss(self.model, b)  # mean over this micro-batch's targets
                parts.lm = parts.lm + loss.detach().double() * n_local[micro]  # on the device
            tokens += int(b["lengths"].sum())
            # the gradient of the mean over the global batch: DDP and ZeRO average
            # over the ranks, hence the factor world (exactly 1.0 for one process)
            scale = n_local[micro] * self.world / max(n_global, 1)
            with self.timer.phase("backward"):
                self._backward(loss * scale, last_micro=micro == r.train.grad_accum - 1)
            loss_sum = loss_sum + loss.detach().double() * n_local[micro]  # on the device
        with self.timer.phase("optimizer"):
            self._optimizer_step()
        window.add(
            step + 1,
            [loss_sum, float(signals.requested), tokens, *parts.values()],
            lr=lr,
            stage=stage,
            n=n_global,
            elapsed=time.perf_counter() - t0,
        )
        return tokens
