"""`recsys merge-predictions`: one predictions file from the shards of `recsys infer --shard i/n`.

recsys infer --data R --checkpoint C --shard 0/2 --out P.parquet     # writes P.shard-0-of-2.parquet
recsys infer --data R --checkpoint C --shard 1/2 --out P.parquet     # writes P.shard-1-of-2.parquet
recsys merge-predictions --out P.parquet P.shard-0-of-2.parquet P.shard-1-of-2.parquet
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys_cli import console
from recsys_cli.options import AsJson, Quiet


def command(
    shards: Annotated[list[Path], typer.Argument(help="The shard files (every shard 0..n-1 of one run, any order).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged predictions file.")],
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace --out (only a file written by `recsys infer` or merge-predictions)."),
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Check that the shards belong to one run and cover disjoint prompts; interleave them back
    into the order one unsharded `recsys infer` writes."""
    from recsys_cli.inference.merge import merge

    console.set_quiet(quiet)
    summary = merge(shards, out, overwrite=overwrite)
    console.emit(summary, as_json=as_json, title="merge-predictions")
