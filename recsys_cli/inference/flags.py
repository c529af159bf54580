"""`recsys infer`'s flags resolved into the request: the prompt selection, a `recsys tune` file
applied, the usage rules that span several options (each a one-line error naming the flag), the
rating calibration, and the InferOptions one run decodes with (inference/options.py).

    recsys infer --data runs/toys --checkpoint runs/ckpt --candidates-from runs/toys/predictions/valid/sasrec.parquet \
        --tuning runs/toys/tuning.json
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import typer

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.artifacts.tuning import parse_scorer, tuned_settings
from recsys_cli.data.listwise import MAX_K
from recsys_cli.errors import RecsysError
from recsys_cli.inference import selection
from recsys_cli.inference.candidates import ITEM_SCORINGS
from recsys_cli.inference.options import InferOptions
from recsys_cli.inference.rating import SCORINGS, calibration_from_predictions
from recsys_cli.inference.textgen import resolve
from recsys_cli.modeling.precision import PRECISIONS


def select_prompts(data: Path, split, family, template, seen, kind, users, prompt_ids, limit):
    everything = read_artifact(data, schemas.PROMPTS)
    df = selection.filter_prompts(everything, split, family, template, seen, kind)
    if users is not None:  # the first N users in prompt order: a fixed evaluation subset
        df = selection.first_users(df, users)
    if prompt_ids is not None:
        df = selection.pick_ids(df, everything, prompt_ids)
    if limit is not None:
        df = df.head(limit)
    if df.height == 0:
        what = ", ".join(
            f"{k}={v}"
            for k, v in (("split", split), ("family", family), ("template", template), ("seen", seen), ("kind", kind))
            if v is not None
        )
        raise RecsysError(f"{data / schemas.PROMPTS}: no prompts match {what}", exit_code=2)
    return df


def _tuned(tuning: Path, data: Path, candidates_from: Optional[Path], rerank_k, fusion, item_scoring):
    """--tuning: (K, W, scorer, what the provenance records) from a `recsys tune` file (artifacts/tuning.py)."""
    if candidates_from is None:
        raise typer.BadParameter(
            "needs --candidates-from (the retriever whose lists are reranked)", param_hint="--tuning"
        )
    return tuned_settings(tuning, data, candidates_from, rerank_k, fusion, item_scoring)


def _check_listwise(
    item_scoring: str, orders: int, rerank_k: Optional[int], candidate_ids: Optional[bool] = None
) -> None:
    if orders > 1 and item_scoring != "listwise":
        raise typer.BadParameter("only with --item-scoring listwise", param_hint="--listwise-orders")
    if candidate_ids and item_scoring != "listwise":
        raise typer.BadParameter("only with --item-scoring listwise", param_hint="--listwise-candidate-ids")
    if item_scoring == "listwise" and rerank_k is not None and rerank_k > MAX_K:
        raise typer.BadParameter(
            f"at most {MAX_K} with --item-scoring listwise (one-token labels), got {rerank_k}", param_hint="--rerank-k"
        )


def apply_tuning(f: SimpleNamespace) -> dict | None:
    """--tuning: K, W, scorer, orders and candidate ids from a `recsys tune` file (artifacts/tuning.py);
    returns what the provenance records. Then the defaults of --item-scoring and --fusion."""
    tuned = None
    if f.tuning is not None:
        f.rerank_k, f.fusion, scorer, tuned = _tuned(
            f.tuning, f.data, f.candidates_from, f.rerank_k, f.fusion, f.item_scoring
        )
        f.item_scoring, f.listwise_orders, ids = parse_scorer(scorer)
        f.listwise_candidate_ids = ids if f.item_scoring == "listwise" else f.listwise_candidate_ids
    f.item_scoring = "constrained" if f.item_scoring is None else f.item_scoring
    f.fusion = 1.0 if f.fusion is None else f.fusion
    return tuned


def check_flags(f: SimpleNamespace) -> None:
    """Choices and the rules that span several options, each a one-line usage error."""
    for value, choices, hint in ((f.precision, PRECISIONS, "--precision"),
                                 (f.item_scoring, ITEM_SCORINGS, "--item-scoring"),
                                 (f.rating_scoring, SCORINGS, "--rating-scoring")):  # fmt: skip
        if value not in choices:
            raise typer.BadParameter(f"expected one of {', '.join(choices)}, got {value!r}", param_hint=hint)
    _check_listwise(f.item_scoring, f.listwise_orders, f.rerank_k, f.listwise_candidate_ids)
    f.beams = f.beams or f.top_k
    if f.beams < f.top_k:
        raise typer.BadParameter(f"must be >= --top-k ({f.top_k})", param_hint="--beams")
    if (f.candidates_from is None) != (f.rerank_k is None):
        raise typer.BadParameter(
            "--candidates-from and --rerank-k go together", param_hint="--candidates-from/--rerank-k"
        )
    if f.candidates_from is not None and f.unconstrained:
        raise typer.BadParameter(
            "reranks the retriever's items; it cannot be combined with --unconstrained", param_hint="--candidates-from"
        )
    if f.users is not None and f.prompt_ids is not None:
        raise typer.BadParameter("choose one of --users and --prompt-ids", param_hint="--prompt-ids")
    if f.checkpoint.lower() != "none" and not Path(f.checkpoint).is_dir():
        raise RecsysError(
            f"{f.checkpoint}: checkpoint directory not found (run `recsys pretrain --out {f.checkpoint}`, "
            "or pass --checkpoint none)",
            exit_code=2,
        )


def rating_calibration(f: SimpleNamespace):
    """--rating-calibration: the temperature and star biases fitted on a validation run."""
    if f.rating_calibration is None:
        return None
    if f.rating_scoring == "generate":
        raise typer.BadParameter(
            "calibrates the star distribution; not with --rating-scoring generate", param_hint="--rating-calibration"
        )
    return calibration_from_predictions(f.data, f.rating_calibration)


def infer_options(f: SimpleNamespace, calibration):
    text_cfg = resolve(
        f.text_decoding,
        f.text_beams,
        f.no_repeat_ngram,
        f.min_new_tokens,
        f.length_penalty,
        f.repetition_penalty,
        f.text_adapter_scale,
    )
    if text_cfg.problem() is not None:
        raise typer.BadParameter(text_cfg.problem()[1], param_hint=text_cfg.problem()[0])
    return InferOptions(
        top_k=f.top_k, beams=f.beams, exclude_history=f.exclude_history, unconstrained=f.unconstrained,
        max_new_tokens=f.max_new_tokens, text_beams=text_cfg.beams, text_decoding=text_cfg, batch_size=f.batch_size,
        dynamic=f.dynamic_positions, item_scoring=f.item_scoring, rerank_k=f.rerank_k, fusion=f.fusion,
        precision=f.precision, listwise_orders=f.listwise_orders, seed=f.seed,
        listwise_candidate_ids=f.listwise_candidate_ids, rating_scoring=f.rating_scoring,
        rating_calibration=calibration,
    )  # fmt: skip
