"""`recsys tune`: choose the rerank scorer, K and fusion weight W on the validation split.

    recsys tune --data R --rerank R/rerank-valid-k20.parquet R/rerank-valid-k50.parquet \
        --retriever R/predictions/valid/sasrec.parquet --out R/tuning.json
    recsys infer --data R --checkpoint C --split test \
        --candidates-from R/predictions/test/sasrec.parquet --tuning R/tuning.json

Each --rerank file is one `recsys infer --split valid --candidates-from RET --rerank-k K --fusion 1`
run (one per scorer and K); every W of the grid is evaluated from it without the LLM. The rule
(evaluation/tune.py): keep W = 0 unless the paired 95% interval of the best setting's NDCG@10 gain
over the retriever on validation excludes 0. Test-split files are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import AsJson, DataDir, Quiet, Seed

TABLE_COLUMNS = ("recall@K", "HR@5", "NDCG@5", "HR@10", "NDCG@10")


def _grid(text: Optional[str]) -> list[float]:
    from recsys_cli.evaluation.tune import W_GRID

    if text is None:
        return list(W_GRID)
    try:
        ws = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint="--ws")
    if not ws or not all(0.0 <= w <= 1.0 for w in ws):
        raise typer.BadParameter(f"expected weights between 0 and 1, got {text!r}", param_hint="--ws")
    return sorted(set(ws) | {0.0})  # W = 0, the retriever alone, is what the rule compares against


def command(
    data: DataDir,
    rerank: Annotated[
        list[Path],
        typer.Option(
            "--rerank",
            help="A validation W = 1 rerank file (`recsys infer --split valid "
            "--candidates-from RET --rerank-k K --fusion 1`); repeatable, or list more files after it.",
        ),
    ],
    retriever_file: Annotated[Path, typer.Option("--retriever", help="The validation retriever RET they reranked.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The tuning file to write (JSON; never replaces a user's).")],
    files: Annotated[Optional[list[Path]], typer.Argument(help="More W = 1 rerank files.", show_default=False)] = None,
    ws: Annotated[
        Optional[str],
        typer.Option("--ws", help="W grid, comma-separated (default 0, .02, .05, .1, .15, .2, then .1 steps to 1)."),
    ] = None,
    seed: Seed = 0,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Evaluate every (scorer, K, W) on validation and write the chosen one with the whole table."""
    from recsys_cli.artifacts import outputs
    from recsys_cli.evaluation.tune import tune

    console.set_quiet(quiet)
    reranks = list(rerank) + list(files or [])
    grid = _grid(ws)
    outputs.claim([outputs.Target(out, outputs.TUNING, "--out")], inputs=[*reranks, retriever_file])
    result = tune(data, reranks, retriever_file, grid, seed=seed)
    outputs.write_json(result, out, outputs.TUNING)
    console.emit(
        {"out": str(out), **result}, as_json=as_json, title="tune", tables=[_table(result)], notes=_notes(result, out)
    )


def _table(result: dict):
    from rich.table import Table

    from recsys_cli.evaluation.bootstrap import format_interval

    table = Table(title=f"validation: {result['prompts']} prompts, every (scorer, K, W)")
    for col in ("scorer", "K", "W", *TABLE_COLUMNS, "chosen"):
        table.add_column(col, justify="left" if col in ("scorer", "chosen") else "right", no_wrap=True)
    best, chosen = result["best"], result["chosen"]
    for row in result["rows"]:
        key = (row["scorer"], row["k"], row["w"])
        mark = "best" if key == (best["scorer"], best["k"], best["w"]) else ""
        if key == (chosen["scorer"], chosen["k"], chosen["w"]):
            mark = (mark + ", " if mark else "") + "chosen"
        cells = [row["scorer"], str(row["k"]), f"{row['w']:g}", *(f"{row[c]:.4f}" for c in TABLE_COLUMNS), mark]
        table.add_row(*cells, style="bold" if "chosen" in mark else None)
    table.caption = f"best - retriever, NDCG@10, paired 95% CI: {format_interval(result['gain'])}"
    return table


def _notes(result: dict, out: Path) -> list[str]:
    chosen = result["chosen"]
    return [
        f"rule: {result['rule']}",
        f"outcome: {result['outcome']}",
        f"wrote {out}: use it with `recsys infer --candidates-from TEST_RETRIEVER --tuning {out}` "
        f"(--rerank-k {chosen['k']} --fusion {chosen['w']:g} --item-scoring {chosen['scorer']})",
    ]
