"""`recsys pretrain`: GLM blank-infilling LoRA fine-tuning of a causal LM on textualized data.

    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --out runs/ckpt
    recsys pretrain --data runs/toys --out runs/ckpt --max-steps 20          # embedded SmolLM2
    recsys pretrain --data runs/toys --out runs/ckpt --resume                 # continue exactly
    recsys pretrain --data runs/toys --config recipes/pretrain/tiny-cpu.yaml --modules-to-save none --out runs/lora-only
    deepspeed --num_gpus 8 -m recsys_cli.main pretrain --data runs/toys \\
        --config recipes/pretrain/paper-multi-gpu.yaml --out runs/ckpt
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import DataDir, Json, ModelOpt, Quiet, TrustRemoteCode


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
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (recipes/pretrain/*.yaml); flags override it.")] = None,
    model: ModelOpt = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help="Optimizer steps (overrides the recipe).")] = None,
    lora_rank: Annotated[Optional[int], typer.Option("--lora-rank", help="LoRA rank (recipe default 8, as the paper).")] = None,
    lora_alpha: Annotated[Optional[int], typer.Option("--lora-alpha", help="LoRA alpha.")] = None,
    lora_dropout: Annotated[Optional[float], typer.Option("--lora-dropout", help="LoRA dropout.")] = None,
    lora_targets: Annotated[Optional[str], typer.Option("--lora-targets", help="Comma-separated module names (default: every attention and MLP projection).")] = None,
    modules_to_save: Annotated[Optional[str], typer.Option("--modules-to-save", help="Comma-separated modules trained in full next to LoRA (e.g. embed_tokens for a random model); 'none' clears the recipe's.")] = None,
    positions: Annotated[Optional[str], typer.Option("--positions", help="glm (2D: inter + intra) or linear (plain positions, the ablation).")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Sequences per device per micro-step.")] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps.")] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="Tokens per sequence (Part A + Part B).")] = None,
    save_every: Annotated[Optional[int], typer.Option("--save-every", help="Checkpoint every N steps.")] = None,
    eval_every: Annotated[Optional[int], typer.Option("--eval-every", help="Validation loss every N steps.")] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Activation checkpointing (less memory, ~30% slower).")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="auto (bf16 on a GPU that supports it), fp32 or bf16.")] = None,
    deepspeed: Annotated[Optional[Path], typer.Option("--deepspeed", help="DeepSpeed JSON config (recipes/deepspeed/zero2.json, zero3.json).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/train_state exactly.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (data order, masking, init).")] = None,
    trust_remote_code: TrustRemoteCode = False,
    quiet: Quiet = False,
    json_out: Json = False,
) -> None:
    """Fine-tune a causal LM with entity-aware GLM blank infilling + LoRA; writes a checkpoint."""
    console.set_quiet(quiet)
    from recsys_cli.training.recipe import load_recipe

    overrides = {
        "model": model,
        "max_steps": max_steps,
        "lora_rank": lora_rank,
        "lora_alpha": lora_alpha,
        "lora_dropout": lora_dropout,
        "lora_targets": [t.strip() for t in lora_targets.split(",") if t.strip()] if lora_targets else None,
        "modules_to_save": _names(modules_to_save),
        "positions": positions,
        "lr": lr,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_length": max_length,
        "save_every": save_every,
        "eval_every": eval_every,
        "gradient_checkpointing": gradient_checkpointing,
        "precision": precision,
        "deepspeed": str(deepspeed) if deepspeed else None,
        "seed": seed,
        "trust_remote_code": trust_remote_code or None,
    }
    recipe = load_recipe(config, overrides)
    from recsys_cli.training.loop import Trainer

    console.log(f"pretrain: model={recipe.model or 'embedded'} positions={recipe.positions} lora_rank={recipe.lora_rank} out={out}")
    summary = Trainer(recipe, data, out).train(resume=resume)
    if json_out:
        console.print_json(summary)
    else:
        from rich.table import Table

        t = Table(title="pretrain")
        t.add_column("field")
        t.add_column("value")
        for k, v in summary.items():
            t.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
        console.print_table(t)
    if summary["interrupted"]:
        raise typer.Exit(130)
