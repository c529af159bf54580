"""`recsys infer`: predictions for prompts.parquet with a pretrained checkpoint.

    recsys infer --data runs/toys --checkpoint runs/ckpt --split test --limit 100
    recsys infer --data runs/toys --checkpoint runs/ckpt --family direct --kind rank --users 300
    recsys infer --data runs/toys --checkpoint none --model embedded --out runs/zero-shot.parquet
    recsys infer --data runs/toys --checkpoint runs/ckpt --family sequential --unconstrained
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.errors import RecsysError
from recsys_cli.options import AsJson, DataDir, ModelOpt, Quiet, Seed, TrustRemoteCode


def _select(data: Path, split: str, family, template, seen, limit, users=None, kind=None):
    import polars as pl

    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact

    if split not in schemas.SPLITS:
        raise typer.BadParameter(f"expected one of {', '.join(schemas.SPLITS)}", param_hint="--split")
    if family is not None and family not in schemas.FAMILIES:
        raise typer.BadParameter(f"expected one of {', '.join(schemas.FAMILIES)}", param_hint="--family")
    df = read_artifact(data, schemas.PROMPTS)
    df = df.filter(pl.col("split") == split)
    if family is not None:
        df = df.filter(pl.col("family") == family)
    if template is not None:
        df = df.filter(pl.col("template_id") == template)
    if seen is not None:
        df = df.filter(pl.col("seen") == seen)
    if kind is not None:
        from recsys_cli.data.templates import TEMPLATES

        kinds = sorted({t.kind for t in TEMPLATES})
        if kind not in kinds:
            raise typer.BadParameter(f"expected one of {', '.join(kinds)}", param_hint="--kind")
        df = df.filter(pl.col("template_id").is_in([t.template_id for t in TEMPLATES if t.kind == kind]))
    if users is not None:  # the first N users in prompt order: a fixed evaluation subset
        first = df["user_id"].unique(maintain_order=True).head(users)
        df = df.filter(pl.col("user_id").is_in(first.implode()))
    if limit is not None:
        df = df.head(limit)
    if df.height == 0:
        what = ", ".join(f"{k}={v}" for k, v in (("split", split), ("family", family), ("template", template), ("seen", seen)) if v is not None)
        raise RecsysError(f"{data / schemas.PROMPTS}: no prompts match {what}", exit_code=2)
    return df


def command(
    data: DataDir,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint directory from `recsys pretrain`, or 'none' for the bare base model (zero-shot).")],
    model: ModelOpt = None,
    split: Annotated[str, typer.Option("--split", help="train | valid | test.")] = "test",
    family: Annotated[Optional[str], typer.Option("--family", help="Only this task family.")] = None,
    template: Annotated[Optional[str], typer.Option("--template", help="Only this template id.")] = None,
    seen: Annotated[Optional[bool], typer.Option("--seen/--unseen", help="Only seen (trained) or unseen (zero-shot) templates.")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only templates of this kind, e.g. rank (direct, 100 candidates) or yesno.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most N prompts (after filtering).")] = None,
    users: Annotated[Optional[int], typer.Option("--users", min=1, help="Only the prompts of the first N users (in prompt order): a fixed evaluation subset.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")] = 8,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Predictions file (default C/predictions/<split>.parquet).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Items in each ranked list.")] = 10,
    beams: Annotated[Optional[int], typer.Option("--beams", min=1, help="Beams for item generation (>= top-k; default top-k).")] = None,
    exclude_history: Annotated[bool, typer.Option("--exclude-history", help="Drop items the user already interacted with.")] = False,
    unconstrained: Annotated[bool, typer.Option("--unconstrained", help="Free-text item generation grounded by MinHash (comparison mode).")] = False,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", min=1, help="Length limit for explanation / review outputs (default: the recipe's max_new_tokens, else 64).")] = None,
    text_beams: Annotated[int, typer.Option("--text-beams", min=1, help="Beams for explanation / review (1 = greedy).")] = 1,
    item_scoring: Annotated[str, typer.Option("--item-scoring", help="How ranked items are scored: 'constrained' = log P under decoding restricted to the catalogue (or candidate) titles, a hypothesis ends once its prefix is unique (fast); 'full' = summed full-vocabulary log-probs of every title token (P5-style, slower).")] = "constrained",
    dynamic_positions: Annotated[bool, typer.Option("--dynamic-positions/--no-dynamic-positions", help="Trie-driven intra positions while generating (the paper's mechanism).")] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over instead of resuming an existing predictions file.")] = False,
    trust_remote_code: TrustRemoteCode = False,
    seed: Seed = 0,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Rank items, score candidates, predict ratings and write explanations for each prompt."""
    console.set_quiet(quiet)
    from recsys_cli.inference.session import run_inference

    prompts = _select(data, split, family, template, seen, limit, users, kind)
    beams = beams or top_k
    if item_scoring not in ("constrained", "full"):
        raise typer.BadParameter(f"expected 'constrained' or 'full', got {item_scoring!r}", param_hint="--item-scoring")
    if beams < top_k:
        raise typer.BadParameter(f"must be >= --top-k ({top_k})", param_hint="--beams")
    if checkpoint.lower() != "none" and not Path(checkpoint).is_dir():
        raise RecsysError(f"{checkpoint}: checkpoint directory not found (run `recsys pretrain --out {checkpoint}`, or pass --checkpoint none)", exit_code=2)
    from recsys_cli.inference.runner import InferOptions

    opts = InferOptions(top_k=top_k, beams=beams, exclude_history=exclude_history, unconstrained=unconstrained,
                        max_new_tokens=max_new_tokens, text_beams=text_beams, batch_size=batch_size,
                        dynamic=dynamic_positions, item_scoring=item_scoring)
    t0 = time.perf_counter()
    summary = run_inference(data=data, checkpoint=checkpoint, model_name=model, prompts=prompts, split=split, out=out,
                            opts=opts, overwrite=overwrite, seed=seed, trust_remote_code=trust_remote_code)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    from rich.table import Table

    table = Table(title=f"recsys infer -> {summary['out']}")
    for col in ("mode", "prompts", "valid", "prompts/s"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    for mode, m in sorted(summary["modes"].items()):
        table.add_row(mode, str(m["prompts"]), str(m["valid"]), f"{m['prompts_per_s']:.2f}")
    table.add_row("skipped (already written)", str(summary["skipped"]), "", "")
    console.emit(summary, as_json=as_json, title="infer", tables=[table])
