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
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.options import ABOVE_0, AT_LEAST_0, AT_LEAST_1, DROPOUT, AsJson, DataDir, Quiet, Range, Seed, ranged

app = typer.Typer(help="Reference baselines: popularity, itemknn, sasrec (sequential/direct), mf and mean (rating), retrieval (explanation/review).")

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
    int, ranged("--top-k", rule=Range(low=1, high=200), help="Length of the full-ranking lists, with scores (sequential prompts).")
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
    from recsys_cli.artifacts import schemas

    return out if out is not None else Path(data) / schemas.PREDICTIONS_DIR / split / f"{name}.parquet"


def _claim(data: Path, name: str, out: Path, *more) -> None:
    """Refuse, before any work, outputs that would replace a file recsys did not write, another
    command's file or an input (artifacts/outputs.py); `more`: further outputs.Target."""
    from recsys_cli.artifacts import layout, outputs

    inputs = [Path(data) / n for n in (*layout.RUN_OWNERS["textualize"], *layout.RUN_OWNERS["build-entities"])]
    outputs.claim([outputs.Target(out, outputs.baseline_predictions(name), "--out"), *more], inputs)


def _finish(name: str, df, path: Path, summary: dict, as_json: bool, started: float, prov: dict | None = None) -> None:
    from recsys_cli.baselines.context import write_predictions

    write_predictions(df, path, prov, name)
    summary = {"baseline": name, "out": str(path), "rows": df.height, "seconds": round(time.perf_counter() - started, 2), **summary}
    console.emit(summary, as_json=as_json, title=f"baseline {name}")


def _ranking(name: str, data: Path, out, split: str, top_k: int, exclude: bool, as_json: bool, quiet: bool, make_scorer,
             more_outputs=()) -> None:
    """`make_scorer(ctx)` -> (score for rank_prompts, producer config, summary). The summary's
    reproducible facts (not seconds or paths) go into the provenance's `extra`. `more_outputs`:
    the other files the scorer writes (outputs.Target), claimed with --out before any work."""
    from recsys_cli.baselines.context import load_context, make_provenance, rank_prompts

    console.set_quiet(quiet)
    _claim(data, name, _out_path(data, out, split, name), *more_outputs)
    started = time.perf_counter()
    ctx = load_context(data, split)
    score, config, summary = make_scorer(ctx)
    df = rank_prompts(ctx, score, k=top_k, exclude_history=exclude)
    prov = make_provenance(data, name, config, split, top_k, exclude, extra=_facts(summary))
    summary = {"items": len(ctx.items), "exclude_history": exclude, **summary}
    _finish(name, df, _out_path(data, out, split, name), summary, as_json, started, prov)


def _facts(summary: dict) -> dict:
    """The summary's reproducible facts (not seconds or paths), for the provenance's `extra` (a SASRec
    file's training protocol is in its producer config, which names the retriever)."""
    return {k: v for k, v in summary.items() if k not in ("train_seconds", "embeddings", "valid_out", "protocol")}


def _no_train_split(split: str) -> None:
    from recsys_cli.errors import RecsysError

    if split not in ("test", "valid"):
        raise RecsysError(f"--split {split!r}: expected test or valid (train prompts: `recsys baseline sasrec --split train`)", 2)


@app.command("popularity")
def popularity(
    data: DataDir, out: Out = None, split: Split = "test", top_k: TopK = 20, exclude_history: ExcludeHistory = True,
    as_json: AsJson = False, quiet: Quiet = False,
) -> None:
    """Most-bought items first (the sanity floor)."""
    from recsys_cli.baselines import popularity as pop
    from recsys_cli.baselines.context import per_user

    _no_train_split(split)
    _ranking("popularity", data, out, split, top_k, exclude_history, as_json, quiet,
             lambda ctx: (per_user(pop.scorer(ctx)), {}, {}))


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
    from recsys_cli.baselines import itemknn as knn
    from recsys_cli.baselines.context import per_user

    _no_train_split(split)
    _ranking("itemknn", data, out, split, top_k, exclude_history, as_json, quiet,
             lambda ctx: (per_user(knn.scorer(ctx, window)), {"window": window}, {"window": window}))


@app.command("sasrec")
def sasrec(
    data: DataDir,
    out: Out = None,
    split: SasSplit = "test",
    top_k: TopK = 20,
    exclude_history: ExcludeHistory = True,
    embeddings_out: Annotated[
        Optional[Path],
        typer.Option("--embeddings-out", help="Item embeddings + encoder state (safetensors, with the data fingerprint) of the "
                     "model trained on items[:-2]; default R/baselines/sasrec.safetensors. Written by test runs and "
                     "--no-refit valid runs only."),
    ] = None,
    seed: Seed = 0,
    max_epochs: Annotated[int, ranged("--max-epochs", rule=AT_LEAST_1, help="Epochs at most.")] = 200,
    patience: Annotated[int, ranged("--patience", rule=AT_LEAST_1, help="Epochs without valid NDCG@10 gain before stopping.")] = 8,
    hidden: Annotated[int, ranged("--hidden", rule=AT_LEAST_1, help="Embedding size.")] = 64,
    blocks: Annotated[int, ranged("--blocks", rule=AT_LEAST_1, help="Self-attention blocks.")] = 2,
    heads: Annotated[int, ranged("--heads", rule=AT_LEAST_1, help="Attention heads (must divide --hidden).")] = 1,
    max_len: Annotated[int, ranged("--max-len", rule=AT_LEAST_1, help="Last history items the model reads.")] = 50,
    dropout: Annotated[float, ranged("--dropout", rule=DROPOUT, help="Dropout rate.")] = 0.3,
    lr: Annotated[float, ranged("--lr", rule=ABOVE_0, help="Adam learning rate.")] = 2e-3,
    batch_size: Annotated[int, ranged("--batch-size", rule=AT_LEAST_1, help="Sequences per step.")] = 128,
    negatives: Annotated[
        int, ranged("--negatives", rule=AT_LEAST_0, help="0 = full softmax over all items (the default); K = sampled softmax with K shared negatives.")
    ] = 0,
    threads: Annotated[int, ranged("--threads", rule=AT_LEAST_1, help="torch CPU threads.")] = 2,
    max_minutes: Annotated[float, ranged("--max-minutes", rule=ABOVE_0, help="Training time cap (best weights kept); the test refit gets it again.")] = 18.0,
    refit: Annotated[
        bool,
        typer.Option("--refit/--no-refit", help="Test prompts: retrain on items[:-1] for the epoch count early "
                     "stopping on items[-2] chose. Valid prompts, the same one position earlier: early stopping on "
                     "items[-3], retrain on items[:-2] (the valid target is never seen). --no-refit: the "
                     "early-stopped items[:-2] model answers both.")
    ] = True,
    valid_out: Annotated[
        Optional[Path],
        typer.Option("--valid-out", help="With --split test: also write the validation prompts' predictions, the "
                     "same file `--split valid` writes (with --refit its own early stopping and refit run; with "
                     "--no-refit the early-stopped model, not trained a second time)."),
    ] = None,
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """SASRec: causal self-attention over the item sequence, full-softmax cross-entropy (history items left out of the
    softmax with --exclude-history), early stopping on valid NDCG@10 of items[-2] (items[-3] for --split train and,
    with --refit, --split valid), then a refit up to the prompts' target (baselines/sasrec.py `protocol`)."""
    from recsys_cli.baselines.sasrec import SASRecConfig

    if hidden % heads:
        raise typer.BadParameter(f"--hidden {hidden} must be divisible by --heads {heads}")
    if valid_out is not None and (split != "test" or valid_out.resolve() == _out_path(data, out, split, "sasrec").resolve()):
        raise typer.BadParameter("--valid-out: only with --split test, and a path other than the test predictions' --out")
    if embeddings_out is not None and not _saves_embeddings(split, refit):
        raise typer.BadParameter("--embeddings-out: only the early-stopped items[:-2] model is saved (by --split "
                                 "test, or --split valid --no-refit); drop it here")
    cfg = SASRecConfig(
        max_len=max_len, hidden=hidden, blocks=blocks, heads=heads, dropout=dropout, lr=lr, batch_size=batch_size,
        max_epochs=max_epochs, patience=patience, seed=seed, threads=threads, max_minutes=max_minutes, negatives=negatives,
        exclude_history=exclude_history, refit=refit,
    )

    def make(ctx):
        fitted, summary = _fit_sasrec(ctx, cfg, split)
        if _saves_embeddings(split, refit):
            summary["embeddings"] = str(_save_embeddings(data, embeddings_out, fitted.selected, fitted.item_ids, cfg))
        if valid_out is not None:
            summary["valid_out"] = str(_write_valid(data, valid_out, ctx, fitted, cfg, top_k, exclude_history, summary))
        return fitted.score, _sasrec_config(cfg, split), summary

    from recsys_cli.artifacts import outputs

    more = [] if valid_out is None else [outputs.Target(valid_out, outputs.baseline_predictions("sasrec"), "--valid-out")]
    if _saves_embeddings(split, refit):
        more.append(outputs.Target(_embeddings_path(data, embeddings_out), outputs.BASELINE_MODEL, "--embeddings-out"))
    _ranking("sasrec", data, out, split, top_k, exclude_history, as_json, quiet, make, more)


def _fit_sasrec(ctx, cfg, split: str):
    """Train (and refit) SASRec for `split` with a progress bar: (Fitted, the run's summary)."""
    from recsys_cli.baselines.sasrec import fit, protocol
    from recsys_cli.baselines.sasrec_train import best_epoch

    with console.progress() as prog:
        task = prog.add_task(f"sasrec epochs ({split})", total=cfg.max_epochs)
        history: list[dict] = []

        def on_epoch(epoch: int, loss: float, row: dict) -> None:
            history.append(row)
            ndcg = row.get("valid_NDCG@10", 0)
            prog.update(task, completed=epoch, description=f"sasrec loss {loss:.3f} valid NDCG@10 {ndcg:.4f}")

        def on_refit_epoch(epoch: int, loss: float, row: dict) -> None:
            total = best_epoch(history, cfg).get("epoch", epoch)
            prog.update(task, completed=epoch, total=total, description=f"sasrec refit ({split}) loss {loss:.3f}")

        fitted = fit(ctx, cfg, split, on_epoch=on_epoch, on_refit_epoch=on_refit_epoch)
    best = best_epoch(fitted.history, cfg)
    seconds = sum(rows[-1]["elapsed_s"] for rows in (fitted.history, fitted.refit_history) if rows)
    summary = {"protocol": protocol(split, cfg.refit), "epochs": len(fitted.history),
               "best_epoch": best.get("epoch", 0), "refit_epochs": len(fitted.refit_history),
               "train_seconds": round(seconds, 1),
               **{k: round(v, 4) for k, v in best.items() if k.startswith("valid_") and not k.endswith("@1")}}
    return fitted, summary


def _sasrec_config(cfg, split: str) -> dict:
    """The producer config of a SASRec predictions file: the settings and the training protocol of its split."""
    from recsys_cli.baselines.sasrec import protocol

    return {**cfg.as_dict(), "protocol": protocol(split, cfg.refit)}


def _saves_embeddings(split: str, refit: bool) -> bool:
    """The embeddings file holds the early-stopped items[:-2] model: test runs and --no-refit valid runs train it."""
    from recsys_cli.baselines.sasrec import shifted

    return not shifted(split, refit)


def _write_valid(data: Path, path: Path, ctx, fitted, cfg, top_k: int, exclude: bool, summary: dict) -> Path:
    """The validation predictions with the provenance a `--split valid` run of the same settings writes: with
    --refit from their own run (early stopping on items[-3], refit on items[:-2]); without, from the test run's
    early-stopped model (valid and test train it on the same items[:-2], so it is the same model)."""
    from recsys_cli.baselines.context import load_context, make_provenance, rank_prompts, write_predictions
    from recsys_cli.baselines.sasrec import scorer

    vctx = load_context(data, "valid")
    if cfg.refit:
        valid_fit, valid_summary = _fit_sasrec(vctx, cfg, "valid")
        score, facts = valid_fit.score, _facts(valid_summary)
    else:
        score, facts = scorer(ctx, fitted.selected, cfg), _facts(summary)
    df = rank_prompts(vctx, score, k=top_k, exclude_history=exclude)
    prov = make_provenance(data, "sasrec", _sasrec_config(cfg, "valid"), "valid", top_k, exclude, extra=facts)
    return write_predictions(df, path, prov, "sasrec")


def _save_embeddings(data: Path, path: Optional[Path], model, item_ids: list, cfg) -> Path:
    """R/baselines/sasrec.safetensors (artifacts/item_embeddings.py) of the items[:-2] model (never the refit,
    which has learned the valid targets that RSLLM's validation must not see)."""
    from recsys_cli.artifacts import item_embeddings
    from recsys_cli.artifacts.io import data_fingerprint
    from recsys_cli.baselines.sasrec_encoder import to_item_embeddings

    path = _embeddings_path(data, path)
    item_embeddings.save(path, to_item_embeddings(model, cfg, item_ids, data_fingerprint(Path(data))))
    return path


def _embeddings_path(data: Path, path: Optional[Path]) -> Path:
    from recsys_cli.artifacts import schemas

    return Path(path) if path is not None else Path(data) / schemas.BASELINE_MODELS_DIR / "sasrec.safetensors"


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
    from recsys_cli.errors import RecsysError
    from dataclasses import asdict

    from recsys_cli.artifacts import provenance
    from recsys_cli.baselines.mf import MFConfig, check_ratings, fit_predict

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
    from recsys_cli.artifacts import provenance

    console.set_quiet(quiet)
    if split not in ("test", "valid"):
        from recsys_cli.errors import RecsysError

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
    by: Annotated[str, typer.Option("--by", help="global: the training mean rating; user: the user's own mean (global when none).")] = "user",
    as_json: AsJson = False,
    quiet: Quiet = False,
) -> None:
    """Mean-rating answers for the rating prompts (the floor MF must beat)."""
    from recsys_cli.baselines.text_baselines import mean_ratings

    name = f"{by}-mean"
    _text_baseline(name, data, out, split, as_json, quiet, lambda: mean_ratings(data, split, by), {"by": by})


@app.command("retrieval")
def retrieval(data: DataDir, out: Out = None, split: Split = "test", as_json: AsJson = False, quiet: Quiet = False) -> None:
    """Explanation and review prompts answered with the user's most similar training text (TF-IDF cosine)."""
    from recsys_cli.baselines.text_baselines import retrieval_texts

    _text_baseline("retrieval", data, out, split, as_json, quiet, lambda: retrieval_texts(data, split), {"similarity": "tfidf-cosine"})
