"""Resumable predictions output of `recsys infer`: the `--out` file and its unfinished chunks
are claimed before any work, rows are written in atomic chunk files as they are decoded, and the
chunks are folded into `--out` at the end (artifacts/predictions.py is the file contract).

    recsys infer --data runs/toys --checkpoint runs/ckpt --limit 50   # interrupt, rerun: it resumes
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recsys_cli.artifacts import outputs
from recsys_cli.artifacts.predictions import read_predictions, write_predictions


def parts_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.parts"


def claim_outputs(out: Path, inputs: list[Path]) -> None:
    """Before any work: `out` and each unfinished chunk beside it must be missing or recsys's own
    predictions (artifacts/outputs.py), and none of them an input; else one line lists them all."""
    chunks = parts_dir(out)
    targets = [outputs.Target(out, outputs.PREDICTIONS, "--out")]
    if chunks.is_dir():
        targets += [
            outputs.Target(f, outputs.PREDICTIONS, "chunk of --out") for f in sorted(chunks.glob("part-*.parquet"))
        ]
    elif chunks.exists() or chunks.is_symlink():
        targets.append(outputs.Target(chunks, outputs.PREDICTIONS, "chunk folder of --out"))  # a file: never ours
    outputs.claim(targets, inputs)


def done_prompt_ids(out: Path) -> set[str]:
    """prompt_ids already written by an earlier (possibly interrupted) run."""
    done: set[str] = set()
    files = ([out] if out.is_file() else []) + sorted(parts_dir(out).glob("part-*.parquet"))
    for f in files:
        done.update(read_predictions(f, None)["prompt_id"].to_list())
    return done


def merge_parts(out: Path, order: list[str], metadata: dict[str, str] | None = None) -> int:
    """Fold the chunk files into `out` (atomic), rows in prompt order, with `metadata` (the
    provenance); returns the row count."""
    chunks = sorted(parts_dir(out).glob("part-*.parquet"))
    files = ([out] if out.is_file() else []) + chunks
    if not files:
        return 0
    df = pl.concat([read_predictions(f, None) for f in files])
    df = df.unique("prompt_id", keep="first", maintain_order=True)
    rank = pl.DataFrame({"prompt_id": order, "_o": list(range(len(order)))})
    df = df.join(rank, on="prompt_id", how="left").sort("_o", "prompt_id", nulls_last=True).drop("_o")
    write_predictions(out, df, metadata=metadata)
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
        write_predictions(self.dir / f"part-{self.n:06d}.parquet", self.rows, metadata=self.metadata)
        self.n += 1
        self.rows = []
