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

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_cli import console
from recsys_cli.errors import RecsysError
from recsys_cli.options import (
    AT_LEAST_0,
    RECIPE_RANGES,
    AsJson,
    DataDir,
    ModelOpt,
    Quiet,
    TrustRemoteCode,
    ranged,
    recipe_flag,
    with_options,
)
from recsys_cli.training import dist
from recsys_cli.training.recipe import choices_of, key_type, load_recipe, parse_set

# The shortcut flags, each declared here only: flag -> (recipe key, help). The option's type, range
# (options.RECIPE_RANGES) and choices (the key's Literal) come from the recipe key; everything else: --set.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "model": ("model.name", ""),  # the shared --model option (options.ModelOpt)
    "positions": ("model.positions", "2D GLM positions (inter + intra) or linear (the ablation)."),
    "lora_rank": ("lora.rank", "LoRA rank (the paper: 8)."),
    "lora_alpha": ("lora.alpha", ""),
    "lora_dropout": ("lora.dropout", ""),
    "lora_targets": ("lora.targets", "module names (default: every attention and MLP projection)."),
    "modules_to_save": (
        "lora.modules_to_save",
        "modules trained in full next to LoRA (e.g. embed_tokens for a random model).",
    ),
    "max_steps": ("train.max_steps", "optimizer steps."),
    "lr": ("train.lr", "peak learning rate."),
    "batch_size": ("train.batch_size", "sequences per device per micro-step."),
    "grad_accum": ("train.grad_accum", ""),
    "max_length": ("train.max_length", "tokens per sequence (Part A + Part B)."),
    "save_every": ("train.save_every", "checkpoint every N steps."),
    "eval_every": ("eval.eval_every", "validation loss every N steps."),
    "gradient_checkpointing": ("train.gradient_checkpointing", "less memory, ~30% slower."),
    "precision": ("train.precision", "auto: bf16 where the GPU or CPU computes it natively."),
    "deepspeed": ("train.deepspeed", "DeepSpeed JSON config (recipes/deepspeed/zero2.json, zero3.json)."),
    "seed": ("train.seed", "data order, masking, init."),
    "trust_remote_code": ("model.trust_remote_code", ""),  # the shared --trust-remote-code flag
}
FLAG_KEYS = {flag: key for flag, (key, _) in SHORTCUTS.items()}
_SHARED = {"model": (ModelOpt, None), "trust_remote_code": (TrustRemoteCode, False)}


def _is_list(key: str) -> bool:
    return list in (typing.get_origin(a) for a in (key_type(key), *typing.get_args(key_type(key))))


def _option(flag: str, key: str, help: str) -> tuple[Any, Any]:
    """(Annotated type, default) of the shortcut `flag` for the recipe key `key`."""
    if flag in _SHARED:
        return _SHARED[flag]
    name, text = "--" + flag.replace("_", "-"), f"{key}: {help}".rstrip(": ")
    tp = key_type(key)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if key in RECIPE_RANGES:
        return Annotated[Optional[tp], recipe_flag(name, key, help=text)], None
    if tp is bool:
        return Annotated[Optional[bool], typer.Option(f"{name}/--no-{flag.replace('_', '-')}", help=text)], None
    choices = choices_of(tp)
    if choices is not None:
        text += f" One of: {', '.join(choices)}."
    elif _is_list(key):
        text += " Comma-separated; 'none' clears the recipe's."
    return Annotated[Optional[str], typer.Option(name, help=text)], None


def _names(value: Optional[str]) -> Optional[list[str]]:
    """'a, b' -> ['a', 'b']; 'none' -> [] (clears the recipe's list); unset -> None (keeps it)."""
    if value is None:
        return None
    if value.strip().lower() == "none":
        return []
    return [t.strip() for t in value.split(",") if t.strip()]


def _overrides(given: dict[str, Any]) -> list[tuple[str, Any]]:
    """(recipe key, value) of each shortcut flag; a flag at its default (not given) gives None (skipped)."""
    out = []
    for flag, value in given.items():
        key = FLAG_KEYS[flag]
        if value == _SHARED.get(flag, (None, None))[1]:
            value = None
        out.append((key, _names(value) if _is_list(key) else value))
    return out


def command(
    data: DataDir,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Checkpoint directory (read by `recsys infer --checkpoint`).")
    ] = Path("runs/checkpoint"),
    config: Annotated[
        Optional[Path],
        typer.Option("--config", help="Recipe YAML (recipes/pretrain/*.yaml); --set and flags override it."),
    ] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override any recipe key: --set train.lr=1e-4 (repeatable).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from OUT/train_state exactly (data, base model and recipe must match)."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the checkpoint in OUT (only the files pretrain writes).")
    ] = False,
    allow_changed: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allow-changed",
            help="With --resume: accept a changed recipe key (e.g. train.max_steps) or 'data' (repeatable).",
        ),
    ] = None,
    local_rank: Annotated[
        Optional[int],
        ranged(
            "--local_rank",
            "--local-rank",
            rule=AT_LEAST_0,
            hidden=True,
            help="Set by the deepspeed launcher; the rank comes from LOCAL_RANK.",
        ),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    **shortcuts: Any,  # the SHORTCUTS flags (with_options below)
) -> None:
    """Fine-tune a causal LM with entity-aware GLM blank infilling + LoRA; writes a checkpoint."""
    console.set_quiet(quiet or not dist.is_main())  # rank 0 logs for every rank
    recipe = load_recipe(config, parse_set(set_) + _overrides(shortcuts))
    from recsys_cli.training.loop import Trainer  # torch: not at import, so `recsys --help` stays light

    console.log(
        f"pretrain: model={recipe.model.name or 'embedded'} positions={recipe.model.positions} "
        f"lora.rank={recipe.lora.rank} out={out}"
    )
    try:
        trainer = Trainer(
            recipe, data, out, resume=resume, overwrite=overwrite, allow_changed=list(allow_changed or [])
        )
        summary = trainer.train(resume=resume)
    except RecsysError as exc:
        if dist.is_main():
            raise
        raise typer.Exit(exc.exit_code)  # rank 0 reports it once
    if dist.is_main():
        console.emit(summary, as_json=as_json, title="pretrain")
    if summary["interrupted"]:
        raise typer.Exit(130)


with_options(command, {flag: _option(flag, key, help) for flag, (key, help) in SHORTCUTS.items()})
