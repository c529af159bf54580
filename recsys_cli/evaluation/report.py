"""Join predictions files to `R/prompts.parquet` and compute one metrics row per
(method, family, seen/unseen): the rows of the paper's tables.

    rows = score_files(Path("runs/toys"), [Path("runs/toys/sasrec.parquet")], task="all")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import polars as pl

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.data import templates
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.evaluation import metrics

TASKS = ("all",) + schemas.FAMILIES
# family -> BLEU order (explanation BLEU-4, review summarization BLEU-2, as in the paper)
BLEU_ORDER = {"explanation": 4, "review": 2}


def method_names(paths: Sequence[Path]) -> list[str]:
    """A label per file: the file stem, or parent/stem where stems repeat (predictions/test)."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def join_prompts(preds: pl.DataFrame, prompts: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Attach family, template, seen, ground truth and candidates; unknown prompt ids are an error."""
    joined = preds.select("prompt_id", "output", "ranked").join(prompts, on="prompt_id", how="left")
    unknown = joined["family"].is_null()
    if unknown.any():
        row = int(unknown.arg_true()[0])
        raise InputError.at(path, f"row {row}", f"prompt_id {joined['prompt_id'][row]!r} is not in {schemas.PROMPTS}")
    return joined


def score_frame(df: pl.DataFrame, items: pl.Series, task: str = "all", p5: bool = False) -> list[dict]:
    """Metric rows for one method's joined predictions, per family and seen flag."""
    rows = []
    families = schemas.FAMILIES if task == "all" else (task,)
    for family in families:
        fam = df.filter(pl.col("family") == family)
        if fam.height == 0:
            continue
        for seen in (True, False):
            part = fam.filter(pl.col("seen") == seen)
            if part.height == 0:
                continue
            rows.extend(_score_part(family, seen, part, items, p5))
    return rows


METRIC_OF_ANSWER = {  # the template's answer type -> how it is scored
    templates.ITEM: "ranking",
    templates.YES_NO_ANSWER: "binary",
    templates.RATING: "rating",
    templates.TEXT: "text",
}


def metric_kinds(part: pl.DataFrame, where: str = schemas.PROMPTS) -> pl.Series:
    """ranking | binary | rating | text per prompt: from its template's answer type (data/templates.py)."""
    answers = templates.answer_types(part["template_id"], where)
    return answers.replace_strict(METRIC_OF_ANSWER, return_dtype=pl.Utf8)


ROW_LABEL = {  # (family, metric kind) -> table name, where it differs from the family
    ("rating", "binary"): "rating yes/no",
    ("direct", "binary"): "direct yes/no",
    ("sequential", "binary"): "sequential yes/no",
    ("review", "rating"): "review rating",
    ("explanation", "rating"): "explanation rating",
}


def _score_part(family: str, seen: bool, part: pl.DataFrame, items: pl.Series, p5: bool) -> list[dict]:
    out = []
    kinds = metric_kinds(part)
    for kind in ("rating", "ranking", "binary", "text"):
        sub = part.filter(kinds == kind)
        if sub.height == 0:
            continue
        if kind == "rating":
            m = metrics.rating_metrics(sub["output"], sub["target"])
        elif kind == "ranking":
            m = metrics.ranking_metrics(sub["ranked"], sub["item_id"], items)
        elif kind == "binary":
            m = metrics.binary_accuracy(sub["output"], sub["target"])
        else:
            m = metrics.text_metrics(sub["output"], sub["target"], BLEU_ORDER.get(family, 4), p5=p5)
        label = ROW_LABEL.get((family, kind), family)
        out.append({"family": label, "seen": seen, "kind": kind, "metrics": m})
    return out


def score_files(
    data: Path, paths: Sequence[Path], task: str = "all", p5: bool = False, common: bool = False
) -> list[dict]:
    """All rows for all files, in the order given (methods keep the user's order).
    `common`: score only the prompts present in every file, so methods are compared on the
    same prompts (e.g. a model run with `infer --limit` against full baseline files)."""
    if task not in TASKS:
        raise RecsysError(f"--task {task!r}: expected one of {', '.join(TASKS)}", 2)
    prompts = read_artifact(
        data,
        schemas.PROMPTS,
        ["prompt_id", "family", "template_id", "seen", "split", "item_id", "target", "candidates"],
    )
    items = read_artifact(data, schemas.ITEMS, ["item_id"])["item_id"]
    # unknown ranked ids are not refused here: `validity` counts them
    preds = [read_predictions(path, data, strict_lists=False) for path in paths]
    if common:
        shared = set(preds[0]["prompt_id"].to_list())
        for frame in preds[1:]:
            shared &= set(frame["prompt_id"].to_list())
        preds = [frame.filter(pl.col("prompt_id").is_in(sorted(shared))) for frame in preds]
    rows = []
    for name, path, frame in zip(method_names(paths), paths, preds):
        joined = join_prompts(frame, prompts, Path(path))
        for row in score_frame(joined, items, task, p5):
            rows.append({"method": name, "file": str(path), **row})
    return rows
