"""`recsys build-entities`: the entity pool with in-context token ids, MinHash signatures
and near-duplicate title clusters.

    recsys build-entities --data runs/toys
    recsys build-entities --data runs/toys --model fixtures/tiny-model --json

Writes R/entities.parquet, R/entities.minhash.parquet, R/entities.near_duplicates.parquet
and R/entities.manifest.json. The token trie is rebuilt from entities.parquet when loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recsys_cli import console
from recsys_cli.options import AsJson, DataDir, ModelOpt, Quiet, Range, TrustRemoteCode, ranged


def command(
    data: DataDir,
    model: ModelOpt = None,
    threshold: Annotated[
        float, ranged("--threshold", rule=Range(low=0.1, high=1.0), help="Jaccard similarity at which two titles are near-duplicates.")
    ] = 0.8,
    num_perm: Annotated[int, ranged("--num-perm", rule=Range(low=16, high=1024), help="MinHash permutations per title.")] = 64,
    trust_remote_code: TrustRemoteCode = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Build the entity pool (items, categories, brands, features) from a textualized directory."""
    import polars as pl
    from rich.table import Table

    from recsys_cli.artifacts import outputs, schemas
    from recsys_cli.artifacts.io import manifest, require, write_json, write_parquet
    from recsys_cli.data import entities as ent
    from recsys_cli.errors import RecsysError
    from recsys_cli.modeling.registry import resolve_model

    console.set_quiet(quiet)
    data = Path(data)
    if not data.is_dir():
        raise RecsysError(f"{data}: not a directory (run `recsys textualize ... --out {data}` first)", exit_code=2)
    require(data, schemas.ITEMS, schemas.CORPUS, schemas.PROMPTS)  # a complete run, not a mix of two
    _claim(data)
    spec = resolve_model(model)
    with console.progress() as bar:
        task = bar.add_task("build-entities", total=5)
        rows = ent.build_pool(data)
        if not rows:
            raise RecsysError(f"{data / schemas.ITEMS}: no items with a title, category or brand; nothing to build")
        bar.advance(task)
        tokenizer = ent.load_text_tokenizer(spec, trust_remote_code=trust_remote_code)
        ids = ent.in_context_ids([r["text"] for r in rows], tokenizer)
        for r, t in zip(rows, ids):
            r["token_ids"] = t
        bar.advance(task)
        items = [r for r in rows if r["kind"] == "item"]
        hasher = ent.MinHasher(num_perm=num_perm)
        sigs = hasher.signatures([r["text"] for r in items])
        bar.advance(task)
        clusters = ent.near_duplicate_clusters(sigs, threshold, num_perm)
        bar.advance(task)
        agreement = ent.in_context_agreement(data, {r["entity_id"]: r["token_ids"] for r in rows}, tokenizer)
        bar.advance(task)

    write_parquet(pl.DataFrame(rows, schema=schemas.ENTITIES_SCHEMA), data / schemas.ENTITIES, kind=outputs.ENTITIES)
    mh = pl.DataFrame(
        {
            "entity_id": [r["entity_id"] for r in items],
            "item_id": [r["item_ids"][0] for r in items],
            "text": [r["text"] for r in items],
            "signature": [s.tolist() for s in sigs],
        },
        schema=schemas.ENTITIES_MINHASH_SCHEMA,
    )
    write_parquet(mh, data / schemas.ENTITIES_MINHASH, kind=outputs.ENTITIES)
    dup_rows = [
        {"cluster": c, "entity_id": items[i]["entity_id"], "item_id": items[i]["item_ids"][0], "text": items[i]["text"]}
        for c, members in enumerate(clusters)
        for i in members
    ]
    write_parquet(pl.DataFrame(dup_rows, schema=schemas.NEAR_DUPLICATES_SCHEMA), data / schemas.NEAR_DUPLICATES, kind=outputs.ENTITIES)

    counts = {k: sum(r["kind"] == k for r in rows) for k in schemas.ENTITY_KINDS}
    summary = {
        "entities": len(rows),
        "by_kind": counts,
        "near_duplicate_clusters": len(clusters),
        "near_duplicate_items": len(dup_rows),
        "in_context_spans_checked": agreement["spans"],
        "in_context_match": agreement["match"],
        "token_rule": "token_ids = tokenizer(' ' + text, add_special_tokens=False)",
    }
    inputs = [data / n for n in (schemas.ITEMS, schemas.CORPUS, schemas.PROMPTS) if (data / n).is_file()]
    opts = {"data": data, "model": spec.name, "threshold": threshold, "num_perm": num_perm, "minhash_seed": ent.MINHASH_SEED}
    rows_out = {schemas.ENTITIES: len(rows), schemas.ENTITIES_MINHASH: len(items), schemas.NEAR_DUPLICATES: len(dup_rows)}
    write_json({**manifest("build-entities", opts, inputs, rows_out), "summary": summary}, data / schemas.ENTITIES_MANIFEST,
               kind=outputs.ENTITIES)

    table = Table(title=f"entities in {data}")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for k, v in counts.items():
        table.add_row(k, str(v))
    table.add_row("near-duplicate clusters", str(len(clusters)))
    checked = agreement["spans"]
    share = f"{agreement['match']}/{checked}" if checked else "n/a"
    table.add_row("in-context ids match corpus spans", share)
    console.emit(summary, as_json=as_json, title="build-entities", tables=[table])


def _claim(data: Path) -> None:
    """Before any work: R's entity files may be replaced only when build-entities wrote them
    (artifacts/outputs.py); a user's file of that name is listed and left alone."""
    from recsys_cli.artifacts import layout, outputs

    targets = [outputs.Target(data / n, outputs.ENTITIES, "output") for n in layout.RUN_OWNERS["build-entities"]]
    outputs.claim(targets, [data / n for n in layout.RUN_OWNERS["textualize"]], hint="move them away first")
