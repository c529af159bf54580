"""`recsys baseline`: reference recommenders on the same leave-one-out split, writing
predictions files that `recsys score` reads like the model's.

    recsys baseline popularity --data runs/toys
    recsys baseline itemknn --data runs/toys --out runs/toys/predictions/test/itemknn.parquet
    recsys baseline sasrec --data runs/toys --seed 0 --top-k 100      # + R/baselines/sasrec.safetensors
    recsys baseline sasrec --data runs/toys --split train --top-k 50   # rerank hard negatives
    recsys baseline mf --data runs/musical --seed 0
    recsys score --data runs/toys --compare runs/toys/predictions/test/popularity.parquet \
        runs/toys/predictions/test/sasrec.parquet
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from recsys_cli import console
from recsys_cli.artifacts import layout, outputs, provenance, schemas
from recsys_cli.artifacts.predictions import write_predictions
from recsys_cli.baselines import itemknn as knn
from recsys_cli.baselines import popularity as pop
from recsys_cli.baselines import sasrec_run
from recsys_cli.baselines.context import load_context, make_provenance, per_user, rank_prompts
from recsys_cli.baselines.mf import MFConfig, check_ratings, fit_predict
from recsys_cli.baselines.sasrec import SASRecConfig
from recsys_cli.baselines.text_baselines import mean_ratings, retrieval_texts
from recsys_cli.errors import RecsysError
from recsys_cli.options import (
    ABOVE_0,
    AT_LEAST_0,
    AT_LEAST_1,
    DROPOUT,
    AsJson,
    DataDir,
    Quiet,
    Range,
    Seed,
    ranged,
    with_options,
)

app = typer.Typer(
    help="Reference baselines: popularity, itemknn, sasrec (sequential/direct), mf and mean (rating), "
    "retrieval (explanation/review)."
)

Out = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="Predictions file (default R/predictions/<split>/<name>.parquet).")
]
Split = Annotated[str, typer.Option("--split", help="Prompts to answer: test or valid.")]
SasSplit = Annotated[
    str,
    typer.Option(
        "--split",
        help="Prompts to answer: test, valid, or train (the train sequential/direct prompts, from a model trained on "
        "items[:-3] and stopped early on items[-3]: no valid or test target; its top-K are rerank hard negatives).",
    ),
]
TopK = Annotated[
    int,
    ranged(
        "--top-k",
        rule=Range(low=1, high=200),
        help="Length of the full-ranking lists, with scores (sequential prompts).",
    ),
]
ExcludeHistory = Annotated[
    bool,
    typer.Option(
        "--exclude-history/--include-history",
        help="Leave the user's own history items out of the full ranking (default; in P5-style data the next item is "
        "always new), or rank every item as P5 and the paper do. Direct prompts' candidates are ranked as given.",
    ),
]


def _out_path(data: Path, out: Optional[Path], split: str, name: str) -> Path:
    return out if out is not None else Path(data) / schemas.PREDICTIONS_DIR / split / f"{name}.parquet"


def _claim(data: Path, name: str, out: Path, *more) -> None:
    """Refuse, before any work, outputs that would replace a file recsys did not write, another
    command's file or an input (artifacts/outputs.py); `more`: further outputs.Target."""
    inputs = [Path(data) / n for n in (*layout.RUN_OWNERS["textualize"], *layout.RUN_OWNERS["build-entities"])]
    outputs.claim([outputs.Target(out, outputs.baseline_predictions(name), "--out"), *more], inputs)


def _finish(name: str, df, path: Path, summary: dict, as_json: bool, started: float, prov: dict | None = None) -> None:
    meta = provenance.encode(prov) if prov is not None else None  # it replaces only this baseline's own file
    write_predictions(path, df, metadata=meta, kind=outputs.baseline_predictions(name))
    summary = {
        "baseline": name,
        "out": str(path),
        "rows": df.height,
        "seconds": round(time.perf_counter() - started, 2),
        **summary,
    }
    console.emit(summary, as_json=as_json, title=f"baseline {name}")


def _ranking(
    name: str,
    data: Path,
    out,
    split: str,
    top_k: int,
    exclude: bool,
    as_json: bool,
    quiet: bool,
    make_scorer,
    more_outputs=(),
) -> None:
    """`make_scorer(ctx)` -> (score for rank_prompts, producer config, summary). The summary's
    reproducible facts (not seconds or paths) go into the provenance's `extra`. `more_outputs`:
    the other files the scorer writes (outputs.Target), claimed with --out before any work."""
    console.set_quiet(quiet)
    _claim(data, name, _out_path(data, out, split, name), *more_outputs)
    started = time.perf_counter()
    ctx = load_context(data, split)
    score, config, summary = make_scorer(ctx)
    df = rank_prompts(ctx, score, k=top_k, exclude_history=exclude)
    prov = make_provenance(data, name, config, split, top_k, exclude, extra=sasrec_run.facts(summary))
    summary = {"items": len(ctx.items), "exclude_history": exclude, **summary}
    _finish(name, df, _out_path(data, out, split, name), summary, as_json, started, prov)


def _no_train_split(split: str) -> None:
    if split not in ("test", "valid"):
        raise RecsysError(
            f"--split {split!r}: expected test or valid (train prompts: `recsys baseline sasrec --split train`)", 2
        )


@app.command("popularity")
def popularity(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    top_k: TopK = 20,
    exclude_history: ExcludeHistory = True,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Most-bought items first (the sanity floor)."""
    _no_train_split(split)
    _ranking(
        "popularity",
        data,
        out,
        split,
        top_k,
        exclude_history,
        as_json,
        quiet,
        lambda ctx: (per_user(pop.scorer(ctx)), {}, {}),
    )


@app.command("itemknn")
def itemknn(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    top_k: TopK = 20,
    window: Annotated[int, ranged("--window", rule=AT_LEAST_1, help="Last history items that vote.")] = 20,
    exclude_history: ExcludeHistory = True,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Item-to-item co-occurrence (cosine) from the user's last items."""
    _no_train_split(split)
    _ranking(
        "itemknn",
        data,
        out,
        split,
        top_k,
        exclude_history,
        as_json,
        quiet,
        lambda ctx: (per_user(knn.scorer(ctx, window)), {"window": window}, {"window": window}),
    )


# The SASRec training flags, each declared here only: SASRecConfig field -> (range, help); the default is
# the field's (baselines/sasrec.py). --seed, --exclude-history and --refit are declared in `sasrec` itself.
SASREC_FLAGS: dict[str, tuple[Range, str]] = {
    "max_epochs": (AT_LEAST_1, "Epochs at most."),
    "patience": (AT_LEAST_1, "Epochs without valid NDCG@10 gain before stopping."),
    "hidden": (AT_LEAST_1, "Embedding size."),
    "blocks": (AT_LEAST_1, "Self-attention blocks."),
    "heads": (AT_LEAST_1, "Attention heads (must divide --hidden)."),
    "max_len": (AT_LEAST_1, "Last history items the model reads."),
    "dropout": (DROPOUT, "Dropout rate."),
    "lr": (ABOVE_0, "Adam learning rate."),
    "batch_size": (AT_LEAST_1, "Sequences per step."),
    "negatives": (
        AT_LEAST_0,
        "0 = full softmax over all items (the default); K = sampled softmax with K shared negatives.",
    ),
    "threads": (AT_LEAST_1, "torch CPU threads."),
    "max_minutes": (ABOVE_0, "Training time cap (best weights kept); the test refit gets it again."),
}
_SASREC_DEFAULTS = SASRecConfig()
EmbeddingsOut = Annotated[
    Optional[Path],
    typer.Option(
        "--embeddings-out",
        help="Item embeddings + encoder state (safetensors, with the data fingerprint) of "
        "the model trained on items[:-2]; default R/baselines/sasrec.safetensors. Written by test runs and "
        "--no-refit valid runs only.",
    ),
]
Refit = Annotated[
    bool,
    typer.Option(
        "--refit/--no-refit",
        help="Test prompts: retrain on items[:-1] for the epoch count early "
        "stopping on items[-2] chose. Valid prompts, the same one position earlier: early stopping on "
        "items[-3], retrain on items[:-2] (the valid target is never seen). --no-refit: the "
        "early-stopped items[:-2] model answers both.",
    ),
]
ValidOut = Annotated[
    Optional[Path],
    typer.Option(
        "--valid-out",
        help="With --split test: also write the validation prompts' predictions, the "
        "same file `--split valid` writes (with --refit its own early stopping and refit run; with "
        "--no-refit the early-stopped model, not trained a second time).",
    ),
]


def _sasrec_checks(
    data: Path, out, split: str, embeddings_out, valid_out, refit: bool, hidden: int, heads: int
) -> None:
    """Usage errors of `baseline sasrec`, before any work."""
    if hidden % heads:
        raise typer.BadParameter(f"--hidden {hidden} must be divisible by --heads {heads}")
    if valid_out is not None and (
        split != "test" or valid_out.resolve() == _out_path(data, out, split, "sasrec").resolve()
    ):
        raise typer.BadParameter(
            "--valid-out: only with --split test, and a path other than the test predictions' --out"
        )
    if embeddings_out is not None and not sasrec_run.saves_embeddings(split, refit):
        raise typer.BadParameter(
            "--embeddings-out: only the early-stopped items[:-2] model is saved (by --split "
            "test, or --split valid --no-refit); drop it here"
        )


def sasrec(
    data: DataDir,
    out: Out = None,
    split: SasSplit = "test",
    top_k: TopK = 20,
    exclude_history: ExcludeHistory = True,
    embeddings_out: EmbeddingsOut = None,
    seed: Seed = 0,
    refit: Refit = True,
    valid_out: ValidOut = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
    **flags: Any,  # SASREC_FLAGS (with_options below)
) -> None:
    """SASRec: causal self-attention over the item sequence, full-softmax cross-entropy (history items left out of the
    softmax with --exclude-history), early stopping on valid NDCG@10 of items[-2] (items[-3] for --split train and,
    with --refit, --split valid), then a refit up to the prompts' target (baselines/sasrec.py `protocol`)."""
    _sasrec_checks(data, out, split, embeddings_out, valid_out, refit, flags["hidden"], flags["heads"])
    cfg = SASRecConfig(**flags, seed=seed, exclude_history=exclude_history, refit=refit)

    def make(ctx):
        fitted, summary = sasrec_run.fit_with_progress(ctx, cfg, split)
        if sasrec_run.saves_embeddings(split, refit):
            summary["embeddings"] = str(
                sasrec_run.save_embeddings(data, embeddings_out, fitted.selected, fitted.item_ids, cfg)
            )
        if valid_out is not None:
            summary["valid_out"] = str(
                sasrec_run.write_valid(data, valid_out, ctx, fitted, cfg, top_k, exclude_history, summary)
            )
        return fitted.score, sasrec_run.producer_config(cfg, split), summary

    more = (
        [] if valid_out is None else [outputs.Target(valid_out, outputs.baseline_predictions("sasrec"), "--valid-out")]
    )
    if sasrec_run.saves_embeddings(split, refit):
        more.append(
            outputs.Target(sasrec_run.embeddings_path(data, embeddings_out), outputs.BASELINE_MODEL, "--embeddings-out")
        )
    _ranking("sasrec", data, out, split, top_k, exclude_history, as_json, quiet, make, more)


app.command("sasrec")(
    with_options(
        sasrec,
        {
            name: (
                Annotated[
                    type(getattr(_SASREC_DEFAULTS, name)), ranged("--" + name.replace("_", "-"), rule=rule, help=help)
                ],
                getattr(_SASREC_DEFAULTS, name),
            )
            for name, (rule, help) in SASREC_FLAGS.items()
        },
    )
)


@app.command("mf")
def mf(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    seed: Seed = 0,
    dim: Annotated[int, ranged("--dim", rule=AT_LEAST_1, help="Factor size.")] = 32,
    max_epochs: Annotated[int, ranged("--max-epochs", rule=AT_LEAST_1, help="Full-batch Adam steps.")] = 300,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Biased matrix factorisation for the rating prompts."""

    console.set_quiet(quiet)
    if split not in ("test", "valid"):
        raise RecsysError(f"--split {split!r}: expected test or valid", 2)
    _claim(data, "mf", _out_path(data, out, split, "mf"))
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
    prov = provenance.make(data, {"kind": "baseline", "name": "mf", "config": asdict(cfg)}, {"split": split})
    _finish("mf", df, _out_path(data, out, split, "mf"), summary, as_json, started, prov)


def _text_baseline(name: str, data: Path, out, split: str, as_json: bool, quiet: bool, run, config: dict) -> None:
    console.set_quiet(quiet)
    if split not in ("test", "valid"):
        raise RecsysError(f"--split {split!r}: expected test or valid", 2)
    _claim(data, name, _out_path(data, out, split, name))
    started = time.perf_counter()
    df, summary = run()
    prov = provenance.make(data, {"kind": "baseline", "name": name, "config": config}, {"split": split})
    _finish(name, df, _out_path(data, out, split, name), summary, as_json, started, prov)


@app.command("mean")
def mean(
    data: DataDir,
    out: Out = None,
    split: Split = "test",
    by: Annotated[
        str,
        typer.Option("--by", help="global: the training mean rating; user: the user's own mean (global when none)."),
    ] = "user",
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Mean-rating answers for the rating prompts (the floor MF must beat)."""
    name = f"{by}-mean"
    _text_baseline(name, data, out, split, as_json, quiet, lambda: mean_ratings(data, split, by), {"by": by})


@app.command("retrieval")
def retrieval(
    data: DataDir, out: Out = None, split: Split = "test", as_json: AsJson = False, quiet: Quiet = False
) -> None:
    """Explanation and review prompts answered with the user's most similar training text (TF-IDF cosine)."""
    _text_baseline(
        "retrieval",
        data,
        out,
        split,
        as_json,
        quiet,
        lambda: retrieval_texts(data, split),
        {"similarity": "tfidf-cosine"},
    )
