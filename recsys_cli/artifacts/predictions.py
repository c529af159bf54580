"""The predictions contract: the one file every stage shares (infer, baselines, merge, score, tune, the
two-stage retriever, rerank/listwise training), written and read only here.

    from recsys_cli.artifacts.predictions import Prediction, read_predictions, write_predictions
    write_predictions(out, [Prediction.answer(prompt, "Lego City Bus", ["B01", "B07"], [-0.4, -2.1])], metadata=meta)
    df = read_predictions(out, data, need_scores=True)     # checked; one-line InputError otherwise

One row per answered prompt (columns: `schemas.PREDICTIONS_SCHEMA`, registered as
`schemas.SCHEMAS[schemas.PREDICTIONS]`):

* `prompt_id`, `family`, `template_id`, `seen`: the prompts.parquet row answered (copied from it).
* `output`: always the answer as text a person reads, never an id. Ranking prompts: the title of the
  first ranked item ("" when nothing is ranked); yes/no prompts: "yes" or "no"; rating prompts: the
  rating ("3.87"); text prompts: the generated sentence.
* `ranked`: ranking prompts only, the item ids best first; the ONLY column that holds item ids.
  Null for the other kinds.
* `scores`: ranking rows: one entry per `ranked` item, higher is better (null entries for items the
  producer did not score, e.g. a reranked list's tail after its first K); other rows: what the
  producer measured (yes/no: [P(yes), P(no)]; rating: the star distribution or [rating]), or null.
* `valid`: the answer parsed / names a real item.

`read_predictions` checks, each failure one line naming the file, the row and what was expected: the
file exists and is Parquet; it carries no provenance of other data than `data`; the columns prompt_id,
output, ranked (and scores with `need_scores`) exist with the contract's types; prompt ids are set and
distinct; every ranked list holds distinct ids of `data`'s items.parquet (`score` measures list
quality instead of refusing it, `strict_lists=False`); with `need_scores` every ranked list has one
score per item. Checks only a reader needs (its split, a list per prompt it selected, finite scores
on the first K) stay with that reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import polars as pl

from recsys_cli.artifacts import outputs, provenance, schemas
from recsys_cli.artifacts.io import read_artifact, write_parquet
from recsys_cli.errors import InputError, RecsysError

SCHEMA = schemas.SCHEMAS[schemas.PREDICTIONS]
REQUIRED = ("prompt_id", "output", "ranked")  # every reader needs these; `scores` too with need_scores


@dataclass(frozen=True)
class Prediction:
    """One row of a predictions file (see the module docstring for what each field holds)."""

    prompt_id: str
    family: str
    template_id: str
    seen: bool
    output: str
    ranked: list[str] | None = None
    scores: list[float | None] | None = None
    valid: bool = True

    @classmethod
    def answer(
        cls,
        prompt: Mapping[str, Any],
        output: str,
        ranked: Sequence[str] | None = None,
        scores: Sequence[float] | None = None,
        valid: bool = True,
    ) -> "Prediction":
        """The row answering `prompt` (a prompts.parquet row: prompt_id, family, template_id, seen)."""
        return cls(
            prompt["prompt_id"],
            prompt["family"],
            prompt["template_id"],
            bool(prompt["seen"]),
            output or "",
            None if ranked is None else [str(i) for i in ranked],
            None if scores is None else [None if s is None else float(s) for s in scores],
            bool(valid),
        )

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


def frame(rows: pl.DataFrame | Sequence[Prediction | Mapping[str, Any]]) -> pl.DataFrame:
    """The rows as a frame with exactly the contract's columns, in order."""
    if isinstance(rows, pl.DataFrame):
        df = rows
    else:
        df = pl.DataFrame([r.as_row() if isinstance(r, Prediction) else dict(r) for r in rows], schema=SCHEMA)
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise RecsysError(f"internal: predictions frame lacks columns {missing}; expected {list(SCHEMA)}")
    return df.select([pl.col(c).cast(t) for c, t in SCHEMA.items()])


def write_predictions(
    path: Path,
    rows: pl.DataFrame | Sequence[Prediction | Mapping[str, Any]],
    metadata: dict[str, str] | None = None,
    kind: str = outputs.PREDICTIONS,
) -> int:
    """Write a predictions file atomically, owned as `kind` (artifacts/outputs.py: it replaces only recsys's
    own file of that kind); `metadata`: `provenance.encode(...)`. The rows are checked first (a bad row is
    a bug in the writer). Returns the row count."""
    df = frame(rows)
    bad = _first_bad_row(df.with_row_index("_row"), need_scores=False)  # strict: recsys writes clean lists
    if bad is not None:
        raise RecsysError(f"internal: {path}, row {bad[0]}: {bad[1]}")
    write_parquet(df, Path(path), SCHEMA, metadata=metadata, kind=kind)
    return df.height


def read_predictions(
    path: Path, data: Path | None, need_scores: bool = False, strict_lists: bool = True
) -> pl.DataFrame:
    """Read and check a predictions file (module docstring); returns the contract's columns (a column the
    file lacks and no reader needs, e.g. `valid`, is null). `data`: the textualize output the file must
    belong to (its provenance and items); None for files checked by their provenance alone (infer's chunks,
    merge's shards). `strict_lists=False`: ranked lists may repeat ids or name unknown ones (`score` measures
    them, in `validity`, instead of refusing them)."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"{path}: predictions file not found (write it with `recsys infer` or `recsys baseline`)", 2)
    if data is not None:
        provenance.check_data(path, data)
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # not Parquet, truncated
        raise InputError.at(path, None, f"not a readable Parquet predictions file ({type(exc).__name__})")
    required = REQUIRED + (("scores",) if need_scores else ())
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError.at(path, None, f"missing columns {missing}; expected a predictions file with {list(SCHEMA)}")
    df = _typed(path, df)
    bad = _first_bad_row(df.with_row_index("_row"), need_scores, strict_lists)
    if bad is not None:
        raise InputError.at(path, f"row {bad[0]}", bad[1])
    if data is not None and strict_lists:
        _check_items(path, df, read_artifact(Path(data), schemas.ITEMS, ["item_id"])["item_id"])
    return df


def _typed(path: Path, df: pl.DataFrame) -> pl.DataFrame:
    """The contract's columns with their types; a column of the wrong type is an error naming it."""
    for col in ("prompt_id", "ranked"):
        if df.schema[col] != SCHEMA[col]:
            what = "str prompt ids" if col == "prompt_id" else "list[str] of item ids"
            raise InputError.at(path, f"column {col}", f"expected {what}, found {df.schema[col]}")
    if "scores" in df.columns and df.schema["scores"] != pl.Null:
        dtype = df.schema["scores"]
        if not isinstance(dtype, pl.List) or not (dtype.inner.is_numeric() or dtype.inner == pl.Null):
            raise InputError.at(path, "column scores", f"expected a list of numbers per row, found {dtype}")
    cols = []
    for c, t in SCHEMA.items():
        if c not in df.columns:
            cols.append(pl.lit(None, dtype=t).alias(c))
            continue
        try:
            df.select(pl.col(c).cast(t))
        except Exception:
            raise InputError.at(path, f"column {c}", f"expected {t}, found {df.schema[c]}")
        cols.append(pl.col(c).cast(t))
    return df.select(cols)


def _first_bad_row(df: pl.DataFrame, need_scores: bool, strict_lists: bool = True) -> tuple[int, str] | None:
    """(row, what was expected) of the first row that breaks the contract's row rules; df has `_row`.
    Without `strict_lists` repeated ids are allowed (score counts them)."""
    ranked, scores = pl.col("ranked"), pl.col("scores")
    checks = [
        (pl.col("prompt_id").is_null(), lambda r: "prompt_id is null; expected a prompt id"),
        (
            pl.col("prompt_id").is_duplicated(),
            lambda r: f"prompt_id {r['prompt_id']!r} repeated; expected one row per prompt",
        ),
        (
            ranked.list.eval(pl.element().is_null()).list.any().fill_null(False),
            lambda r: f"item ids in the list of prompt {r['prompt_id']!r}; it holds a null",
        ),
        (
            (ranked.list.n_unique() != ranked.list.len()).fill_null(False) & strict_lists,
            lambda r: (
                f"distinct item ids; {_repeated(r['ranked'])!r} appears twice in the list of prompt {r['prompt_id']!r}"
            ),
        ),
        (
            (scores.is_not_null() & ranked.is_not_null() & (scores.list.len() != ranked.list.len())).fill_null(False),
            lambda r: (
                f"one score per ranked item for prompt {r['prompt_id']!r}; found {len(r['ranked'])} items and "
                f"{len(r['scores'])} scores"
            ),
        ),
    ]
    if need_scores:
        checks.append(
            (
                ranked.is_not_null() & ranked.list.len().gt(0) & scores.is_null(),
                lambda r: f"one score per ranked item for prompt {r['prompt_id']!r}; it has none",
            )
        )
    for cond, message in checks:
        hit = df.filter(cond)
        if hit.height:
            row = hit.row(0, named=True)
            return int(row["_row"]), message(row)
    return None


def _repeated(ranked: list[str]) -> str:
    return next(i for n, i in enumerate(ranked) if i in ranked[:n])


def _check_items(path: Path, df: pl.DataFrame, items: pl.Series) -> None:
    """Every ranked id names an item of items.parquet; else the first row that does not."""
    flat = (
        df.select("prompt_id", "ranked")
        .with_row_index("_row")
        .explode("ranked")
        .drop_nulls("ranked")
        .filter(~pl.col("ranked").is_in(items.implode()))
    )
    if flat.height:
        row, pid, item = flat.row(0)
        raise InputError.at(path, f"row {row}", f"item ids of items.parquet; prompt {pid!r} ranks {item!r}")
