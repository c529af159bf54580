"""`recsys infer` work loop: select prompts, route each to its decoding mode, batch by
length, write predictions in atomic chunks (resumable), merge at the end.

Modes: `candidates` (ranking prompts with a candidate list: log-likelihood, shared prompt
cache), `yesno` (answers yes/no: P(yes) vs P(no)), `items` (ranking prompts without
candidates: trie-constrained beam search, or free text grounded by MinHash with
--unconstrained), `rating` (numeric answers: the five star tokens' distribution at the answer
position, inference/rating.py; --rating-scoring generate: greedy text, parsed, clipped to [1, 5]),
`text` (explanation / review: greedy or beam search up to --max-new-tokens).

    recsys infer --data runs/toys --checkpoint runs/ckpt --split test --limit 50
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli.artifacts import outputs, schemas
from recsys_cli.artifacts.io import write_parquet
from recsys_cli.data.split import history as split_history

_NUMERIC = re.compile(r"^\s*[-+]?\d+(?:\.\d+)?\s*$")
YES_WORDS, NO_WORDS = ("yes", "Yes"), ("no", "No")


@dataclass
class InferOptions:
    top_k: int = 10
    beams: int = 10
    exclude_history: bool = False
    unconstrained: bool = False
    max_new_tokens: int | None = 64  # None: the recipe's max_new_tokens, else 64
    text_beams: int = 1
    batch_size: int = 8
    max_prompt_len: int = 1024
    dynamic: bool = True
    chunk_rows: int = 64
    item_scoring: str = "constrained"  # constrained | full (see decode.Constraint) | listwise (inference/listwise.py)
    rerank_k: int | None = None  # two-stage: rerank the retriever's first K (inference/rerank.py)
    fusion: float = 1.0  # W in W * llm + (1 - W) * retriever (inference/fusion.py)
    precision: str = "fp32"  # fp32 | bf16 | auto (modeling/precision.py)
    rating_scoring: str = "distribution"  # distribution | argmax | generate (inference/rating.py)
    listwise_orders: int = 1  # listwise: candidate orders averaged per prompt
    listwise_max_length: int = field(default_factory=lambda: _listwise_default())  # the recipe's listwise.max_length
    listwise_candidate_ids: bool | None = None  # RSLLM: soft ID tokens after candidate titles (None: the recipe's)
    seed: int = 0  # listwise: the candidate orders and templates


def _listwise_default() -> int:
    from recsys_cli.training.recipe import ListwiseArgs

    return ListwiseArgs().max_length


def mode_of(family: str, target: str | None, candidates: Any, rerank: bool = False) -> str:
    """`rerank` (with --candidates-from): every ranking prompt reranks the retriever's list."""
    t = (target or "").strip().lower()
    if t in ("yes", "no"):
        return "yesno"
    if family in schemas.RANKING_FAMILIES:
        if rerank:
            return "rerank"
        return "candidates" if candidates is not None and len(candidates) > 1 else "items"
    if _NUMERIC.match(target or ""):
        return "rating"
    return "text"


def history_of(items: list[str], split: str, target: str | None) -> set[str]:
    """Items the user saw before the prompt's target (the leave-one-out rule of data/split.py)."""
    return set(split_history(items, split, target))


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def claim_outputs(out: Path, inputs: list[Path]) -> None:
    """Before any work: `out` and each unfinished chunk beside it must be missing or recsys's own
    predictions (artifacts/outputs.py), and none of them an input; else one line lists them all."""
    chunks = parts_dir(out)
    targets = [outputs.Target(out, outputs.PREDICTIONS, "--out")]
    if chunks.is_dir():
        targets += [outputs.Target(f, outputs.PREDICTIONS, "chunk of --out")
                    for f in sorted(chunks.glob("part-*.parquet"))]
    elif chunks.exists() or chunks.is_symlink():
        targets.append(outputs.Target(chunks, outputs.PREDICTIONS, "chunk folder of --out"))  # a file: never ours
    outputs.claim(targets, inputs)


def done_prompt_ids(out: Path) -> set[str]:
    """prompt_ids already written by an earlier (possibly interrupted) run."""
    done: set[str] = set()
    files = ([out] if out.is_file() else []) + sorted(parts_dir(out).glob("part-*.parquet"))
    for f in files:
        done.update(pl.read_parquet(f, columns=["prompt_id"])["prompt_id"].to_list())
    return done


def merge_parts(out: Path, order: list[str], metadata: dict[str, str] | None = None) -> int:
    """Fold the chunk files into `out` (atomic), rows in prompt order, with `metadata` (the
    provenance); returns the row count."""
    chunks = sorted(parts_dir(out).glob("part-*.parquet"))
    files = ([out] if out.is_file() else []) + chunks
    if not files:
        return 0
    df = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed").unique("prompt_id", keep="first")
    rank = pl.DataFrame({"prompt_id": order, "_o": list(range(len(order)))})
    df = df.join(rank, on="prompt_id", how="left").sort("_o", "prompt_id", nulls_last=True).drop("_o")
    write_parquet(df, out, schemas.PREDICTIONS_SCHEMA, metadata=metadata, kind=outputs.PREDICTIONS)
    for f in chunks:
        outputs.remove(f, outputs.PREDICTIONS)
    outputs.remove_dir_if_bare(parts_dir(out))  # one holding files infer did not write is left alone
    return df.height


class ChunkWriter:
    """Buffers prediction rows and writes each full chunk as its own atomic Parquet file."""

    def __init__(self, out: Path, rows_per_chunk: int, metadata: dict[str, str] | None = None):
        self.dir = parts_dir(out)
        self.rows: list[dict] = []
        self.per = rows_per_chunk
        self.metadata = metadata  # the provenance: an interrupted run is checked before resuming
        self.n = len(list(self.dir.glob("part-*.parquet"))) if self.dir.exists() else 0

    def add(self, rows: list[dict]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.per:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        df = pl.DataFrame(self.rows, schema=schemas.PREDICTIONS_SCHEMA)
        write_parquet(df, self.dir / f"part-{self.n:06d}.parquet", schemas.PREDICTIONS_SCHEMA, metadata=self.metadata,
                      kind=outputs.PREDICTIONS)
        self.n += 1
        self.rows = []
