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
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.evaluation import metrics

TASKS = ("all",) + schemas.FAMILIES
# family -> BLEU order (explanation BLEU-4, review summarization BLEU-2, as in the paper)
BLEU_ORDER = {"explanation": 4, "review": 2}
YES_NO = ("yes", "no")


def method_names(paths: Sequence[Path]) -> list[str]:
    """A label per file: the file stem, or parent/stem where stems repeat (predictions/test)."""
    stems = [p.stem for p in paths]
    return [f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths]


def load_predictions(path: Path, data: Path | None = None) -> pl.DataFrame:
    """Read a predictions file and check it against PREDICTIONS_SCHEMA. With `data`, a file
    that carries provenance must have been made on that textualize output (same manifest
    hash); files without provenance (other tools) are accepted."""
    from recsys_cli.artifacts import provenance

    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: predictions file not found (write it with `recsys infer` or `recsys baseline`)", 2)
    if data is not None:
        provenance.check_data(path, data)
    try:
        df = pl.read_parquet(path)
    except Exception as exc:
        raise InputError.at(path, None, f"not a readable Parquet file ({type(exc).__name__})")
    missing = [c for c in ("prompt_id", "output", "ranked") if c not in df.columns]
    if missing:
        raise InputError.at(path, None, f"missing columns {missing}; expected {list(schemas.PREDICTIONS_SCHEMA)}")
    if df.schema["prompt_id"] != pl.Utf8:
        raise InputError.at(path, "column prompt_id", f"expected str prompt ids, found {df.schema['prompt_id']}")
    if df.schema["ranked"] != pl.List(pl.Utf8):
        raise InputError.at(path, "column ranked", f"expected list[str] of item ids, found {df.schema['ranked']}")
    nulls = df["prompt_id"].is_null()
    if nulls.any():
        raise InputError.at(path, f"row {int(nulls.arg_true()[0])}", "prompt_id is null; expected a prompt id")
    dup = df["prompt_id"].is_duplicated()
    if dup.any():
        row = int(dup.arg_true()[0])
        raise InputError.at(path, f"row {row}", f"prompt_id {df['prompt_id'][row]!r} repeated; expected one row per prompt")
    return df.select("prompt_id", pl.col("output").cast(pl.Utf8), "ranked")


def join_prompts(preds: pl.DataFrame, prompts: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Attach family, template, seen, ground truth and candidates; unknown prompt ids are an error."""
    joined = preds.join(prompts, on="prompt_id", how="left")
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


KIND_GROUP = {
    "next": "ranking", "rank": "ranking", "yesno": "binary", "like": "binary",
    "rating": "rating", "review_rating": "rating", "explain": "text", "explain_feature": "text", "summary": "text",
}
_NUMBER = r"^\s*[-+]?\d+(\.\d+)?\s*$"


def metric_kinds(part: pl.DataFrame) -> pl.Series:
    """ranking | binary | rating | text per prompt: from the template's kind when the template
    is one of ours (recsys_cli.data.templates), else from the family and the target's form."""
    from recsys_cli.data.templates import TEMPLATES

    known = {t.template_id: KIND_GROUP.get(t.kind) for t in TEMPLATES}
    target = part["target"].fill_null("").str.to_lowercase().str.strip_chars()
    family = part["family"]
    guess = (
        pl.select(
            pl.when(target.is_in(YES_NO))
            .then(pl.lit("binary"))
            .when(family.is_in(schemas.RANKING_FAMILIES))
            .then(pl.lit("ranking"))
            .when(target.str.contains(_NUMBER) & family.is_in(["rating", "review"]))
            .then(pl.lit("rating"))
            .otherwise(pl.lit("text"))
        )
        .to_series()
    )
    mapped = part["template_id"].replace_strict(known, default=None, return_dtype=pl.Utf8)
    return mapped.fill_null(guess)


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


def score_files(data: Path, paths: Sequence[Path], task: str = "all", p5: bool = False, common: bool = False) -> list[dict]:
    """All rows for all files, in the order given (methods keep the user's order).
    `common`: score only the prompts present in every file, so methods are compared on the
    same prompts (e.g. a model run with `infer --limit` against full baseline files)."""
    if task not in TASKS:
        raise RecsysError(f"--task {task!r}: expected one of {', '.join(TASKS)}", 2)
    prompts = read_artifact(
        data, schemas.PROMPTS, ["prompt_id", "family", "template_id", "seen", "split", "item_id", "target", "candidates"]
    )
    items = read_artifact(data, schemas.ITEMS, ["item_id"])["item_id"]
    preds = [load_predictions(path, data) for path in paths]
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
