"""`recsys build-entities`: the entity pool with in-context token ids, MinHash signatures
and near-duplicate title clusters.

    recsys build-entities --data runs/toys
    recsys build-entities --data runs/toys --model fixtures/tiny-model --json

Writes R/entities.parquet, R/entities.minhash.parquet, R/entities.near_duplicates.parquet
and R/entities.manifest.json. The token trie is rebuilt from entities.parquet when loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import polars as pl
from rich.table import Table

from recsys_cli import console
from recsys_cli.artifacts import layout, outputs, schemas
from recsys_cli.artifacts.io import manifest, require, write_json, write_parquet
from recsys_cli.data import entities as ent
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.registry import ModelSpec, load_text_tokenizer, resolve_model
from recsys_cli.options import AsJson, DataDir, ModelOpt, Quiet, Range, TrustRemoteCode, ranged

TOKEN_RULE = "token_ids = tokenizer(' ' + text, add_special_tokens=False)"


def command(
    data: DataDir,
    model: ModelOpt = None,
    threshold: Annotated[
        float,
        ranged(
            "--threshold",
            rule=Range(low=0.1, high=1.0),
            help="Jaccard similarity at which two titles are near-duplicates.",
        ),
    ] = 0.8,
    num_perm: Annotated[
        int, ranged("--num-perm", rule=Range(low=16, high=1024), help="MinHash permutations per title.")
    ] = 64,
    trust_remote_code: TrustRemoteCode = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Build the entity pool (items, categories, brands, features) from a textualized directory."""
    console.set_quiet(quiet)
    data = Path(data)
    if not data.is_dir():
        raise RecsysError(f"{data}: not a directory (run `recsys textualize ... --out {data}` first)", exit_code=2)
    require(data, schemas.ITEMS, schemas.CORPUS, schemas.PROMPTS)  # a complete run, not a mix of two
    _claim(data)
    spec = resolve_model(model)
    pool = _build(data, spec, threshold, num_perm, trust_remote_code)
    dup_rows = _write_tables(data, pool)
    counts = {k: sum(r["kind"] == k for r in pool["rows"]) for k in schemas.ENTITY_KINDS}
    agreement = pool["agreement"]
    summary = {
        "entities": len(pool["rows"]),
        "by_kind": counts,
        "near_duplicate_clusters": len(pool["clusters"]),
        "near_duplicate_items": len(dup_rows),
        "in_context_spans_checked": agreement["spans"],
        "in_context_match": agreement["match"],
        "token_rule": TOKEN_RULE,
    }
    inputs = [data / n for n in (schemas.ITEMS, schemas.CORPUS, schemas.PROMPTS) if (data / n).is_file()]
    opts = {
        "data": data,
        "model": spec.name,
        "threshold": threshold,
        "num_perm": num_perm,
        "minhash_seed": ent.MINHASH_SEED,
    }
    rows_out = {
        schemas.ENTITIES: len(pool["rows"]),
        schemas.ENTITIES_MINHASH: len(pool["items"]),
        schemas.NEAR_DUPLICATES: len(dup_rows),
    }
    write_json(
        {**manifest("build-entities", opts, inputs, rows_out), "summary": summary},
        data / schemas.ENTITIES_MANIFEST,
        kind=outputs.ENTITIES,
    )
    console.emit(summary, as_json=as_json, title="build-entities", tables=[_table(data, counts, summary)])


def _build(data: Path, spec: ModelSpec, threshold: float, num_perm: int, trust_remote_code: bool) -> dict[str, Any]:
    """The pool with in-context token ids, the items' MinHash signatures, their near-duplicate clusters
    and the ids' agreement with the corpus spans, under one progress bar."""
    with console.progress() as bar:
        task = bar.add_task("build-entities", total=5)
        rows = ent.build_pool(data)
        if not rows:
            raise RecsysError(f"{data / schemas.ITEMS}: no items with a title, category or brand; nothing to build")
        bar.advance(task)
        tokenizer = load_text_tokenizer(spec, trust_remote_code=trust_remote_code)
        for r, t in zip(rows, ent.in_context_ids([r["text"] for r in rows], tokenizer)):
            r["token_ids"] = t
        bar.advance(task)
        items = [r for r in rows if r["kind"] == "item"]
        sigs = ent.MinHasher(num_perm=num_perm).signatures([r["text"] for r in items])
        bar.advance(task)
        clusters = ent.near_duplicate_clusters(sigs, threshold, num_perm)
        bar.advance(task)
        agreement = ent.in_context_agreement(data, {r["entity_id"]: r["token_ids"] for r in rows}, tokenizer)
        bar.advance(task)
    return {"rows": rows, "items": items, "sigs": sigs, "clusters": clusters, "agreement": agreement}


def _write_tables(data: Path, pool: dict[str, Any]) -> list[dict]:
    """R/entities.parquet, R/entities.minhash.parquet and R/entities.near_duplicates.parquet; returns
    the near-duplicate rows."""
    rows, items = pool["rows"], pool["items"]
    write_parquet(pl.DataFrame(rows, schema=schemas.ENTITIES_SCHEMA), data / schemas.ENTITIES, kind=outputs.ENTITIES)
    mh = pl.DataFrame(
        {
            "entity_id": [r["entity_id"] for r in items],
            "item_id": [r["item_ids"][0] for r in items],
            "text": [r["text"] for r in items],
            "signature": [s.tolist() for s in pool["sigs"]],
        },
        schema=schemas.ENTITIES_MINHASH_SCHEMA,
    )
    write_parquet(mh, data / schemas.ENTITIES_MINHASH, kind=outputs.ENTITIES)
    dup_rows = [
        {"cluster": c, "entity_id": items[i]["entity_id"], "item_id": items[i]["item_ids"][0], "text": items[i]["text"]}
        for c, members in enumerate(pool["clusters"])
        for i in members
    ]
    write_parquet(
        pl.DataFrame(dup_rows, schema=schemas.NEAR_DUPLICATES_SCHEMA),
        data / schemas.NEAR_DUPLICATES,
        kind=outputs.ENTITIES,
    )
    return dup_rows


def _table(data: Path, counts: dict[str, int], summary: dict[str, Any]) -> Table:
    table = Table(title=f"entities in {data}")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for k, v in counts.items():
        table.add_row(k, str(v))
    table.add_row("near-duplicate clusters", str(summary["near_duplicate_clusters"]))
    checked = summary["in_context_spans_checked"]
    share = f"{summary['in_context_match']}/{checked}" if checked else "n/a"
    table.add_row("in-context ids match corpus spans", share)
    return table


def _claim(data: Path) -> None:
    """Before any work: R's entity files may be replaced only when build-entities wrote them
    (artifacts/outputs.py); a user's file of that name is listed and left alone."""
    targets = [outputs.Target(data / n, outputs.ENTITIES, "output") for n in layout.RUN_OWNERS["build-entities"]]
    outputs.claim(targets, [data / n for n in layout.RUN_OWNERS["textualize"]], hint="move them away first")
