"""What `recsys baseline sasrec` does around SASRec's training (baselines/sasrec_train.py): the run with a
progress bar and its summary, the producer config of its predictions, the item-embeddings file RSLLM reads,
and the validation predictions of `--valid-out`.

    recsys baseline sasrec --data runs/toys --seed 0 --top-k 100 --valid-out runs/toys/predictions/valid/sasrec.parquet
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from recsys_cli import console
from recsys_cli.artifacts import item_embeddings, outputs, provenance, schemas
from recsys_cli.artifacts.io import data_fingerprint
from recsys_cli.artifacts.predictions import write_predictions
from recsys_cli.baselines.context import load_context, make_provenance, rank_prompts
from recsys_cli.baselines.sasrec import protocol, shifted
from recsys_cli.baselines.sasrec_encoder import to_item_embeddings
from recsys_cli.baselines.sasrec_train import best_epoch, fit, scorer


def facts(summary: dict) -> dict:
    """The summary's reproducible facts (not seconds or paths), for the provenance's `extra` (a SASRec
    file's training protocol is in its producer config, which names the retriever)."""
    return {k: v for k, v in summary.items() if k not in ("train_seconds", "embeddings", "valid_out", "protocol")}


def fit_with_progress(ctx, cfg, split: str):
    """Train (and refit) SASRec for `split` with a progress bar: (Fitted, the run's summary)."""
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
    summary = {
        "protocol": protocol(split, cfg.refit),
        "epochs": len(fitted.history),
        "best_epoch": best.get("epoch", 0),
        "refit_epochs": len(fitted.refit_history),
        "train_seconds": round(seconds, 1),
        **{k: round(v, 4) for k, v in best.items() if k.startswith("valid_") and not k.endswith("@1")},
    }
    return fitted, summary


def producer_config(cfg, split: str) -> dict:
    """The producer config of a SASRec predictions file: the settings and the training protocol of its split."""
    return {**cfg.as_dict(), "protocol": protocol(split, cfg.refit)}


def saves_embeddings(split: str, refit: bool) -> bool:
    """The embeddings file holds the early-stopped items[:-2] model: test runs and --no-refit valid runs train it."""
    return not shifted(split, refit)


def write_valid(data: Path, path: Path, ctx, fitted, cfg, top_k: int, exclude: bool, summary: dict) -> Path:
    """The validation predictions with the provenance a `--split valid` run of the same settings writes: with
    --refit from their own run (early stopping on items[-3], refit on items[:-2]); without, from the test run's
    early-stopped model (valid and test train it on the same items[:-2], so it is the same model)."""
    vctx = load_context(data, "valid")
    if cfg.refit:
        valid_fit, valid_summary = fit_with_progress(vctx, cfg, "valid")
        score, known = valid_fit.score, facts(valid_summary)
    else:
        score, known = scorer(ctx, fitted.selected, cfg), facts(summary)
    df = rank_prompts(vctx, score, k=top_k, exclude_history=exclude)
    prov = make_provenance(data, "sasrec", producer_config(cfg, "valid"), "valid", top_k, exclude, extra=known)
    write_predictions(path, df, metadata=provenance.encode(prov), kind=outputs.baseline_predictions("sasrec"))
    return path


def save_embeddings(data: Path, path: Optional[Path], model, item_ids: list, cfg) -> Path:
    """R/baselines/sasrec.safetensors (artifacts/item_embeddings.py) of the items[:-2] model (never the refit,
    which has learned the valid targets that RSLLM's validation must not see)."""
    path = embeddings_path(data, path)
    item_embeddings.save(path, to_item_embeddings(model, cfg, item_ids, data_fingerprint(Path(data))))
    return path


def embeddings_path(data: Path, path: Optional[Path]) -> Path:
    return Path(path) if path is not None else Path(data) / schemas.BASELINE_MODELS_DIR / "sasrec.safetensors"
