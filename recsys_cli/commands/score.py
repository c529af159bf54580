"""`recsys score`: the paper's tables from predictions files, seen and unseen templates apart.

recsys score --data runs/toys --predictions runs/ckpt/predictions/test.parquet
recsys score --data runs/toys --compare runs/pop.parquet runs/sasrec.parquet --task sequential
recsys score --data runs/toys --predictions a.parquet --p5-compatible --markdown table.md --plot table.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import AsJson, DataDir, Quiet

P5_NOTE = (
    "p5-compatible: BLEU = sacrebleu tokenize=none smooth=none; ROUGE on space tokens, unique n-grams, "
    "ROUGE-L beta=P/R, empty outputs skipped"
)
STD_NOTE = (
    "standard: BLEU = sacrebleu 13a + exp smoothing; ROUGE = rouge-score F1 (no stemmer), empty outputs score 0; "
    "ranking: one ground truth, log2 discount; rating clipped to [1, 5]"
)


def command(
    data: DataDir,
    predictions: Annotated[
        Optional[list[Path]], typer.Option("--predictions", "-p", help="Predictions file (repeatable).")
    ] = None,
    files: Annotated[
        Optional[list[Path]], typer.Argument(help="More predictions files (with --compare: one table, in this order).")
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Compare several predictions files: --compare A.parquet B.parquet ...; ranking rows of B, C, ... get "
            "the paired 95% interval of their NDCG@10 and HR@10 difference from A on the prompts both answered.",
        ),
    ] = False,
    task: Annotated[str, typer.Option("--task", help="rating|sequential|explanation|review|direct|all")] = "all",
    common: Annotated[
        bool, typer.Option("--common-prompts", help="Score only the prompts present in every file (fair comparison).")
    ] = False,
    p5_compatible: Annotated[
        bool, typer.Option("--p5-compatible", help="Reproduce P5's BLEU/ROUGE conventions.")
    ] = False,
    markdown_out: Annotated[
        Optional[Path], typer.Option("--markdown", help="Also write the tables as Markdown.")
    ] = None,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Also draw the comparison (matplotlib; the format from the extension: .png, .pdf, .svg, ...).",
        ),
    ] = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Score predictions against R/prompts.parquet: one table per task, seen/unseen rows."""
    from recsys_cli.errors import RecsysError
    from recsys_cli.evaluation import tables
    from recsys_cli.evaluation.report import score_files

    console.set_quiet(quiet)
    paths = list(predictions or []) + list(files or [])
    if not paths:
        raise typer.BadParameter("give --predictions FILE (repeatable) or --compare FILE FILE ...")
    if compare and len(paths) < 2:
        raise typer.BadParameter("--compare needs at least two predictions files")
    _claim(data, paths, markdown_out, plot)
    rows = score_files(data, paths, task=task, p5=p5_compatible, common=common)
    if compare:
        from recsys_cli.evaluation.compare import add_paired_intervals

        add_paired_intervals(data, paths, rows)
    if not rows:
        raise RecsysError(f"no predictions of task {task!r} found in {', '.join(map(str, paths))}", 1)
    note = P5_NOTE if p5_compatible else STD_NOTE
    if markdown_out is not None:
        from recsys_cli.artifacts import outputs

        outputs.write_text(markdown_out, tables.markdown(rows, note), outputs.REPORT)
    if plot is not None:
        from recsys_cli.evaluation.plot import plot_rows

        plot_rows(rows, plot)
    clean = [{**r, "metrics": {k: _finite(v) for k, v in r["metrics"].items()}} for r in rows]
    summary = {"convention": "p5" if p5_compatible else "standard", "note": note, "rows": clean}
    console.emit(summary, as_json=as_json, title="score", tables=tables.rich_tables(rows, note))


def _finite(value):
    """NaN (e.g. RMSE with every output unparsable) becomes null: JSON has no NaN."""
    return None if isinstance(value, float) and value != value else value


def _claim(data: Path, paths: list[Path], markdown_out: Optional[Path], plot: Optional[Path]) -> None:
    """Before scoring: --markdown and --plot may replace only recsys's own report / plot
    (artifacts/outputs.py), never an input, and --plot names a format matplotlib writes."""
    from recsys_cli.artifacts import layout, outputs

    targets = []
    if markdown_out is not None:
        targets.append(outputs.Target(markdown_out, outputs.REPORT, "--markdown"))
    if plot is not None:
        targets.append(outputs.Target(plot, outputs.PLOT, "--plot"))
    inputs = [Path(data) / n for n in (*layout.RUN_OWNERS["textualize"], *layout.RUN_OWNERS["build-entities"])]
    outputs.claim(targets, inputs + list(paths))
    if plot is not None:
        from recsys_cli.evaluation.plot import check_format

        check_format(plot)
