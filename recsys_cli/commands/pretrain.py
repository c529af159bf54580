"""`recsys pretrain`: GLM blank-infilling LoRA fine-tuning of a causal LM on textualized data.

    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt
    recsys pretrain --data runs/toys --out runs/ckpt --max-steps 20          # embedded SmolLM2
    recsys pretrain --data runs/toys --out runs/ckpt --resume                 # continue exactly
    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --set train.lr=1e-4 --set lora.rank=16
    torchrun --nproc_per_node 8 -m recsys_cli.main pretrain --data runs/toys \\
        --config recipes/pretrain/paper-multi-gpu.yaml --out runs/ckpt    # ZeRO-2 (the recipe's)
    torchrun --nproc_per_node 2 -m recsys_cli.main pretrain --data runs/toys \\
        --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt           # no DeepSpeed: DDP

The deepspeed launcher works too (`deepspeed --num_gpus 8 --module recsys_cli.main pretrain
...`). Rank 0 prints the summary and errors; the other ranks exit with the same code.
Every recipe setting can be overridden with `--set section.key=value` (training/recipe.py);
the flags below are shortcuts for the common ones and win over `--set`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import AT_LEAST_0, AsJson, DataDir, ModelOpt, Quiet, TrustRemoteCode, ranged, recipe_flag

# flag name -> recipe key (the shortcuts; everything else goes through --set)
FLAG_KEYS = {
    "model": "model.name", "positions": "model.positions", "lora_rank": "lora.rank", "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout", "lora_targets": "lora.targets", "modules_to_save": "lora.modules_to_save",
    "max_steps": "train.max_steps", "lr": "train.lr", "batch_size": "train.batch_size", "grad_accum": "train.grad_accum",
    "max_length": "train.max_length", "save_every": "train.save_every", "eval_every": "eval.eval_every",
    "gradient_checkpointing": "train.gradient_checkpointing", "precision": "train.precision",
    "deepspeed": "train.deepspeed", "seed": "train.seed", "trust_remote_code": "model.trust_remote_code",
}


def _names(value: Optional[str]) -> Optional[list[str]]:
    """'a, b' -> ['a', 'b']; 'none' -> [] (clears the recipe's list); unset -> None (keeps it)."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def command(
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint directory (read by `recsys infer --checkpoint`).")] = Path("runs/checkpoint"),
    config: Annotated[Optional[Path], typer.Option("--config", help="Recipe YAML (recipes/pretrain/*.yaml); --set and flags override it.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any recipe key: --set train.lr=1e-4 (repeatable).")] = None,
    model: ModelOpt = None,
    max_steps: Annotated[Optional[int], recipe_flag("--max-steps", "train.max_steps", help="train.max_steps: optimizer steps.")] = None,
    lora_rank: Annotated[Optional[int], recipe_flag("--lora-rank", "lora.rank", help="lora.rank (the paper: 8).")] = None,
    lora_alpha: Annotated[Optional[int], recipe_flag("--lora-alpha", "lora.alpha", help="lora.alpha.")] = None,
    lora_dropout: Annotated[Optional[float], recipe_flag("--lora-dropout", "lora.dropout", help="lora.dropout.")] = None,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets", help="lora.targets: comma-separated module names (default: every attention and MLP projection).")] = None,
    modules_to_save: Annotated[Optional[str], typer.Option("--modules-to-save", help="lora.modules_to_save: modules trained in full next to LoRA (e.g. embed_tokens for a random model); 'none' clears the recipe's.")] = None,
    positions: Annotated[Optional[str], typer.Option("--positions", help="model.positions: glm (2D: inter + intra) or linear (the ablation).")] = None,
    lr: Annotated[Optional[float], recipe_flag("--lr", "train.lr", help="train.lr: peak learning rate.")] = None,
    batch_size: Annotated[Optional[int], recipe_flag("--batch-size", "train.batch_size", help="train.batch_size: sequences per device per micro-step.")] = None,
    grad_accum: Annotated[Optional[int], recipe_flag("--grad-accum", "train.grad_accum", help="train.grad_accum.")] = None,
    max_length: Annotated[Optional[int], recipe_flag("--max-length", "train.max_length", help="train.max_length: tokens per sequence (Part A + Part B).")] = None,
    save_every: Annotated[Optional[int], recipe_flag("--save-every", "train.save_every", help="train.save_every: checkpoint every N steps.")] = None,
    eval_every: Annotated[Optional[int], recipe_flag("--eval-every", "eval.eval_every", help="eval.eval_every: validation loss every N steps.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="train.gradient_checkpointing (less memory, ~30% slower).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="train.precision: auto (bf16 where the GPU or CPU computes it natively), fp32 or bf16.")] = None,
    deepspeed: Annotated[Optional[Path], typer.Option("--deepspeed", help="train.deepspeed: DeepSpeed JSON config (recipes/deepspeed/zero2.json, zero3.json).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/train_state exactly (data, base model and recipe must match).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the checkpoint in OUT (only the files pretrain writes).")] = False,
    allow_changed: Annotated[Optional[list[str]], typer.Option("--allow-changed", help="With --resume: accept a changed recipe key (e.g. train.max_steps) or 'data' (repeatable).")] = None,
    seed: Annotated[Optional[int], recipe_flag("--seed", "train.seed", help="train.seed: data order, masking, init.")] = None,
    trust_remote_code: TrustRemoteCode = False,
    local_rank: Annotated[Optional[int], ranged("--local_rank", "--local-rank", rule=AT_LEAST_0, hidden=True, help="Set by the deepspeed launcher; the rank comes from LOCAL_RANK.")] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Fine-tune a causal LM with entity-aware GLM blank infilling + LoRA; writes a checkpoint."""
    from recsys_cli.training import dist

    console.set_quiet(quiet or not dist.is_main())  # rank 0 logs for every rank
    from recsys_cli.training.recipe import load_recipe, parse_set

    flags = {
        "model": model, "max_steps": max_steps, "lora_rank": lora_rank, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
        "lora_targets": _names(lora_targets), "modules_to_save": _names(modules_to_save), "positions": positions, "lr": lr,
        "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length, "save_every": save_every,
        "eval_every": eval_every, "gradient_checkpointing": gradient_checkpointing, "precision": precision,
        "deepspeed": str(deepspeed) if deepspeed else None, "seed": seed, "trust_remote_code": trust_remote_code or None,
    }
    overrides = parse_set(set_) + [(FLAG_KEYS[k], v) for k, v in flags.items()]
    recipe = load_recipe(config, overrides)
    from recsys_cli.training.loop import Trainer

    from recsys_cli.errors import RecsysError

    console.log(f"pretrain: model={recipe.model.name or 'embedded'} positions={recipe.model.positions} lora.rank={recipe.lora.rank} out={out}")
    try:
        trainer = Trainer(recipe, data, out, resume=resume, overwrite=overwrite, allow_changed=list(allow_changed or []))
        summary = trainer.train(resume=resume)
    except RecsysError as exc:
        if dist.is_main():
            raise
        raise typer.Exit(exc.exit_code)  # rank 0 reports it once
    if dist.is_main():
        console.emit(summary, as_json=as_json, title="pretrain")
    if summary["interrupted"]:
        raise typer.Exit(130)
