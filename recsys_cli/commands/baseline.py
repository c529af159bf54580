"""`recsys baseline`: reference recommenders on the same leave-one-out split, writing
predictions files that `recsys score` reads like the model's.

    recsys baseline popularity --data runs/toys
    recsys baseline itemknn --data runs/toys --out runs/toys/predictions/test/itemknn.parquet
    recsys baseline sasrec --data runs/toys --seed 0 --max-epochs 200
    recsys baseline mf --data runs/musical --seed 0
    recsys score --data runs/toys --compare runs/toys/predictions/test/popularity.parquet \
        runs/toys/predictions/test/sasrec.parquet
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import AsJson, DataDir, Quiet, Seed

app = typer.Typer(help="Reference baselines: popularity, itemknn, sasrec (sequential/direct), mf (rating).")

Out = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Predictions file (default R/predictions/<split>/<name>.parquet).")
]
Split = Annotated[str, typer.Option("--split", help="Prompts to answer: test or valid.")]
TopK = Annotated[int, typer.Option("--top-k", help="Length of the full-ranking lists (sequential prompts).")]


def _out_path(data: Path, out: Optional[Path], split: str, name: str) -> Path:
    from recsys_cli.artifacts import schemas

    return out if out is not None else Path(data) / schemas.PREDICTIONS_DIR / split / f"{name}.parquet"


def _finish(name: str, df, path: Path, summary: dict, as_json: bool, started: float) -> None:
    from recsys_cli.baselines.context import write_predictions

    write_predictions(df, path)
    summary = {"baseline": name, "out": str(path), "rows": df.height, "seconds": round(time.perf_counter() - started, 2), **summary}
    console.emit(summary, as_json=as_json, title=f"baseline {name}")


def _ranking(name: str, data: Path, out, split: str, top_k: int, as_json: bool, quiet: bool, make_scorer) -> None:
    from recsys_cli.baselines.context import load_context, rank_prompts

    console.set_quiet(quiet)
    started = time.perf_counter()
    ctx = load_context(data, split)
    score, summary = make_scorer(ctx)
    df = rank_prompts(ctx, score, k=top_k)
    _finish(name, df, _out_path(data, out, split, name), {"items": len(ctx.items), **summary}, as_json, started)


@app.command("popularity")
def popularity(
    data: DataDir, out: Out = None, split: Split = "test", top_k: TopK = 20, as_json: AsJson = False, quiet: Quiet = False
) -> None:
    """Most-bought items first (the sanity floor)."""
    from recsys_cli.baselines import popularity as pop

    _ranking("popularity", data, out, split, top_k, as_json, quiet, lambda ctx: (pop.scorer(ctx), {}))


@app.command("itemknn")
def itemknn(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    top_k: TopK = 20,
    window: Annotated[int, typer.Option("--window", help="Last history items that vote.")] = 20,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Item-to-item co-occurrence (cosine) from the user's last items."""
    from recsys_cli.baselines import itemknn as knn

    _ranking("itemknn", data, out, split, top_k, as_json, quiet, lambda ctx: (knn.scorer(ctx, window), {"window": window}))


@app.command("sasrec")
def sasrec(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    top_k: TopK = 20,
    seed: Seed = 0,
    max_epochs: Annotated[int, typer.Option("--max-epochs")] = 200,
    patience: Annotated[int, typer.Option("--patience", help="Epochs without valid NDCG@10 gain before stopping.")] = 5,
    hidden: Annotated[int, typer.Option("--hidden")] = 64,
    blocks: Annotated[int, typer.Option("--blocks")] = 2,
    heads: Annotated[int, typer.Option("--heads")] = 1,
    max_len: Annotated[int, typer.Option("--max-len")] = 50,
    dropout: Annotated[float, typer.Option("--dropout")] = 0.3,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 128,
    negatives: Annotated[
        int, typer.Option("--negatives", help="0 = full softmax over all items; K = sampled softmax with K shared negatives (the benched default).")
    ] = 1024,
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads (1 is faster on a busy machine).")] = 2,
    max_minutes: Annotated[float, typer.Option("--max-minutes", help="Training time cap (best weights kept).")] = 18.0,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """SASRec: causal self-attention over the item sequence, full softmax, early stopping on items[-2]."""
    from recsys_cli.baselines.sasrec import SASRecConfig, fit_scorer

    if hidden % heads:
        raise typer.BadParameter(f"--hidden {hidden} must be divisible by --heads {heads}")
    cfg = SASRecConfig(
        max_len=max_len, hidden=hidden, blocks=blocks, heads=heads, dropout=dropout, lr=lr, batch_size=batch_size,
        max_epochs=max_epochs, patience=patience, seed=seed, threads=threads, max_minutes=max_minutes, negatives=negatives,
    )

    def make(ctx):
        with console.progress() as prog:
            task = prog.add_task("sasrec epochs", total=max_epochs)

            def on_epoch(epoch: int, loss: float, row: dict) -> None:
                prog.update(task, completed=epoch, description=f"sasrec loss {loss:.3f} valid NDCG@10 {row.get('valid_NDCG@10', 0):.4f}")

            score, history = fit_scorer(ctx, cfg, on_epoch=on_epoch)
        best = max(history, key=lambda r: r.get("valid_NDCG@10", -1.0))
        return score, {"epochs": len(history), "best_epoch": best["epoch"], "valid_NDCG@10": best.get("valid_NDCG@10", 0.0)}

    _ranking("sasrec", data, out, split, top_k, as_json, quiet, make)


@app.command("mf")
def mf(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    seed: Seed = 0,
    dim: Annotated[int, typer.Option("--dim")] = 32,
    max_epochs: Annotated[int, typer.Option("--max-epochs", help="Full-batch Adam steps.")] = 300,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Biased matrix factorisation for the rating prompts."""
    from recsys_cli.errors import RecsysError
    from recsys_cli.baselines.mf import MFConfig, check_ratings, fit_predict

    console.set_quiet(quiet)
    if split not in ("test", "valid"):
        raise RecsysError(f"--split {split!r}: expected test or valid", 2)
    started = time.perf_counter()
    check_ratings(data)
    cfg = MFConfig(dim=dim, max_epochs=max_epochs, seed=seed)
    with console.progress() as prog:
        task = prog.add_task("mf steps", total=max_epochs)

        def on_epoch(epoch: int, loss: float, valid_rmse: float) -> None:
            prog.update(task, completed=epoch, description=f"mf loss {loss:.3f} valid RMSE {valid_rmse:.4f}")

        df, summary = fit_predict(data, split, cfg, on_epoch=on_epoch)
    if df.height == 0:
        raise RecsysError(f"{data}: no rating prompts in split {split!r}; expected data with ratings (reviews)", 1)
    _finish("mf", df, _out_path(data, out, split, "mf"), summary, as_json, started)
