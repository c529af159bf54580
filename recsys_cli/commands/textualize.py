"""`recsys textualize`: raw interaction data -> items / users / interactions / sequences /
corpus / prompts (Parquet) + manifest.json, written atomically into --out.

    recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out runs/toys
    recsys textualize amazon --category Musical_Instruments --data-dir fixtures/amazon/musical_instruments --out runs/mi
    recsys textualize table --interactions fixtures/table/interactions.csv --items fixtures/table/items.csv \
        --users fixtures/table/users.csv --user-col reviewerID --item-col asin --out runs/table
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.options import AsJson, Quiet, Seed

app = typer.Typer(help="Turn interaction data into the artifacts every later stage reads.", no_args_is_help=True)

Out = Annotated[Path, typer.Option("--out", "-o", help="Run directory: new, empty, or an earlier textualize output (only textualize's own files are replaced).")]
Force = Annotated[bool, typer.Option("--force", help="Write into a directory that also holds other files (they are never deleted).")]
DocsPerUser = Annotated[int, typer.Option("--docs-per-user", min=1, help="Corpus documents per user (10% long, 30% medium, 60% short).")]
PromptsPerUser = Annotated[int, typer.Option("--prompts-per-user", min=0, help="Training positions per user for sequential and direct prompts.")]
MinUser = Annotated[int, typer.Option("--min-user-items", min=3, help="Drop users with fewer distinct items (5-core on users).")]
ReviewCap = Annotated[int, typer.Option("--review-prompts-per-user", min=0, help="At most this many reviews per user and split become rating/explanation/review prompts (0: all).")]
MinItem = Annotated[int, typer.Option("--min-item-users", min=0, help="Also drop items with fewer users, iterated (0: off).")]


def _run(command: str, load, out: Path, options: dict, seed: int, docs: int, per_user: int, cap: int, quiet: bool,
         as_json: bool, force: bool = False) -> None:
    from recsys_cli import console
    from recsys_cli.artifacts import layout, schemas
    from recsys_cli.artifacts.io import data_fingerprint, manifest, write_json, write_parquet
    from recsys_cli.data.textualize import textualize

    console.set_quiet(quiet)
    steps = ["sequences", "items and users", "interactions", "corpus", "prompts", "write"]
    console.log("textualize: reading input")
    src = load()  # input errors surface here, before anything is written
    mode = layout.claim_run_dir(out, src.inputs, force)
    old_fp = data_fingerprint(out) if mode != "new" else None
    with console.progress() as bar:
        task = bar.add_task("textualize", total=len(steps))

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"textualize: {name}")

        frames, summary = textualize(src, seed=seed, docs_per_user=docs, prompts_per_user=per_user, review_cap=cap, progress=step)
        bar.update(task, description="textualize: write")
        for name in schemas.TEXTUALIZE_FILES:  # each file replaced atomically; only textualize's own
            write_parquet(frames[name], out / name)
        rows = {name: frames[name].height for name in schemas.TEXTUALIZE_FILES}
        write_json(manifest(command, options | {"seed": seed}, src.inputs, rows) | {"summary": summary}, out / schemas.MANIFEST)
        bar.update(task, advance=1)
    moved = layout.retire_downstream(out, old_fp, data_fingerprint(out))
    if moved:
        summary["notes"].append(f"the data changed: outputs computed from the old data were moved aside: {', '.join(moved)}")
    if mode == "forced":
        summary["notes"].append(f"--force: {out} also holds files recsys did not write; they were left untouched")
    summary["out"] = str(out)
    console.emit(summary, as_json=as_json, title="textualize", tables=[summary_table(summary)], notes=summary["notes"])


def summary_table(summary: dict):
    from rich.table import Table

    t = Table(title=f"textualize ({summary['source']}) -> {summary['out']}")
    t.add_column("what")
    t.add_column("split")
    t.add_column("seen")
    t.add_column("count", justify="right")
    for key in ("users", "items", "interactions", "documents"):
        t.add_row(key, "", "", f"{summary[key]:,}")
    for period, n in summary["documents_by_period"].items():
        t.add_row(f"  documents {period}", "", "", f"{n:,}")
    for row in summary["prompts_by_family"]:
        t.add_row(f"prompts {row['family']}", row["split"], "yes" if row["seen"] else "no", f"{row['prompts']:,}")
    if not summary["has_reviews"]:
        t.add_row("prompts rating/explanation/review", "-", "-", "0 (no reviews in source)")
    return t


@app.command("amazon")
def amazon(
    category: Annotated[str, typer.Option("--category", "-c", help="toys, beauty, sports or an Amazon category (Musical_Instruments).")],
    out: Out,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Directory with P5 files or raw reviews; default data/amazon/<category>.")] = None,
    seed: Seed = 0,
    docs_per_user: DocsPerUser = 10,
    prompts_per_user: PromptsPerUser = 3,
    review_prompts_per_user: ReviewCap = 10,
    min_user_items: MinUser = 5,
    min_item_users: MinItem = 0,
    force: Force = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Amazon reviews: P5-processed (sequential_data.txt + datamaps.json + meta) or raw 2014/2018 5-core files."""
    from recsys_cli.data.sources.amazon import load_amazon

    data_dir = data_dir if data_dir is not None else Path("data/amazon") / category
    options = {"category": category, "data_dir": data_dir, "docs_per_user": docs_per_user,
               "prompts_per_user": prompts_per_user, "review_prompts_per_user": review_prompts_per_user,
               "min_user_items": min_user_items, "min_item_users": min_item_users}
    _run("textualize amazon", lambda: load_amazon(category, data_dir, min_user_items, min_item_users), out, options,
         seed, docs_per_user, prompts_per_user, review_prompts_per_user, quiet, as_json, force)


@app.command("table")
def table(
    interactions: Annotated[Path, typer.Option("--interactions", "-i", help="Interaction table (.csv, .tsv, .parquet, .jsonl).")],
    out: Out,
    items: Annotated[Optional[Path], typer.Option("--items", help="Item table: id, title, categories, brand, price.")] = None,
    users: Annotated[Optional[Path], typer.Option("--users", help="User table: id + feature columns (age, gender, ...).")] = None,
    user_col: Annotated[str, typer.Option("--user-col", help="User id column (interactions and users).")] = "user_id",
    item_col: Annotated[str, typer.Option("--item-col", help="Item id column (interactions and items).")] = "item_id",
    time_col: Annotated[str, typer.Option("--time-col", help="Timestamp column (unix seconds or dates; optional).")] = "timestamp",
    rating_col: Annotated[str, typer.Option("--rating-col", help="Rating column (optional).")] = "rating",
    review_col: Annotated[str, typer.Option("--review-col", help="Review text column (optional).")] = "review",
    summary_col: Annotated[str, typer.Option("--summary-col", help="Review summary column (optional).")] = "summary",
    title_col: Annotated[str, typer.Option("--title-col", help="Item title column.")] = "title",
    category_col: Annotated[str, typer.Option("--category-col", help="Item categories (list, or text split on '|').")] = "categories",
    brand_col: Annotated[str, typer.Option("--brand-col", help="Item brand column.")] = "brand",
    price_col: Annotated[str, typer.Option("--price-col", help="Item price column.")] = "price",
    user_features: Annotated[Optional[str], typer.Option("--user-features", help="Comma-separated user feature columns (default: all but the id).")] = None,
    seed: Seed = 0,
    docs_per_user: DocsPerUser = 10,
    prompts_per_user: PromptsPerUser = 3,
    review_prompts_per_user: ReviewCap = 10,
    min_user_items: MinUser = 5,
    min_item_users: MinItem = 0,
    force: Force = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Any interaction table (+ optional item and user tables), e.g. MovieLens-style data."""
    from recsys_cli.data.sources.table import Columns, load_table

    cols = Columns(user_col, item_col, time_col, rating_col, review_col, summary_col, title_col, category_col, brand_col,
                   price_col, [c.strip() for c in user_features.split(",") if c.strip()] if user_features else None)
    options = {"interactions": interactions, "items": items, "users": users, "columns": vars(cols),
               "docs_per_user": docs_per_user, "prompts_per_user": prompts_per_user,
               "review_prompts_per_user": review_prompts_per_user, "min_user_items": min_user_items, "min_item_users": min_item_users}
    _run("textualize table", lambda: load_table(interactions, items, users, cols, min_user_items, min_item_users), out, options,
         seed, docs_per_user, prompts_per_user, review_prompts_per_user, quiet, as_json, force)
