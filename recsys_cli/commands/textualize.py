"""`recsys textualize`: raw interaction data -> items / users / interactions / sequences /
corpus / prompts (Parquet) + manifest.json, written atomically into --out.

    recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out runs/toys
    recsys textualize amazon --category Musical_Instruments --data-dir fixtures/amazon/musical_instruments --out runs/mi
    recsys textualize table --interactions fixtures/table/interactions.csv --items fixtures/table/items.csv \
        --users fixtures/table/users.csv --user-col reviewerID --item-col asin --out runs/table
    recsys textualize recbole --dataset-dir fixtures/recbole/ml-100k --out runs/ml100k

Each subcommand only reads its input (recsys_cli/data/sources/); the shared `_run` locks and
claims --out (artifacts/layout.py: only files recsys's ledger proves are textualize's own are
replaced), textualizes, runs the data-quality checks (--strict: an error before anything is
written), writes the run into a stage inside --out and swaps it in whole (artifacts/runswap.py):
Ctrl-C leaves the old run or the new one, never a mix. docs/data.md has the details.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.options import AT_LEAST_0, AT_LEAST_1, AsJson, Quiet, Range, Seed, ranged

app = typer.Typer(help="Turn interaction data into the artifacts every later stage reads.", no_args_is_help=True)

Out = Annotated[
    Path,
    typer.Option(
        "--out",
        "-o",
        help="Run directory: new, empty, or an earlier textualize output (only textualize's own files are replaced).",
    ),
]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Write into a directory that also holds other files (left "
        "untouched; a file with an artifact's name that recsys did not write is never replaced).",
    ),
]
DocsPerUser = Annotated[
    int, ranged("--docs-per-user", rule=AT_LEAST_1, help="Corpus documents per user (10% long, 30% medium, 60% short).")
]
PromptsPerUser = Annotated[
    int,
    ranged(
        "--prompts-per-user", rule=AT_LEAST_0, help="Training positions per user for sequential and direct prompts."
    ),
]
MinUser = Annotated[
    int, ranged("--min-user-items", rule=Range(low=3), help="Drop users with fewer distinct items (5-core on users).")
]
ReviewCap = Annotated[
    int,
    ranged(
        "--review-prompts-per-user",
        rule=AT_LEAST_0,
        help="At most this many reviews per user and split become rating/explanation/review prompts (0: all).",
    ),
]
MinItem = Annotated[
    int, ranged("--min-item-users", rule=AT_LEAST_0, help="Also drop items with fewer users, iterated (0: off).")
]
MinItemAuto = Annotated[
    Optional[int],
    ranged(
        "--min-item-users",
        rule=AT_LEAST_0,
        help=(
            "Also drop items with fewer users, iterated "
            "(0: off; default 0 for the 5-core 2014/2018 files, 5 for raw 2023 files)."
        ),
    ),
]
TimeUnit = Annotated[
    str, typer.Option("--time-unit", help="Timestamps: auto (milliseconds when the median is above 1e11), s or ms.")
]
Strict = Annotated[
    bool,
    typer.Option(
        "--strict", help="Fail (writing nothing) when a data-quality check is above its threshold (docs/data.md)."
    ),
]


def _run(
    command: str,
    load,
    out: Path,
    options: dict,
    seed: int,
    quiet: bool,
    as_json: bool,
    force: bool = False,
    strict: bool = False,
) -> None:
    """Read the input, then, holding R's lock, claim R, textualize and swap the whole run in
    (artifacts/runswap.py): Ctrl-C or SIGTERM at any point leaves the old run or the new one.
    `options` (recorded in manifest.json) holds docs_per_user, prompts_per_user and review_prompts_per_user."""
    from recsys_cli import console
    from recsys_cli.artifacts import layout, runswap
    from recsys_cli.artifacts.io import data_fingerprint

    console.set_quiet(quiet)
    unit = options.get("time_unit", "auto")
    if unit not in ("auto", "s", "ms"):
        from recsys_cli.errors import RecsysError

        raise RecsysError(f"--time-unit {unit!r}: expected auto, s or ms", exit_code=2)
    console.log("textualize: reading input")
    src = load()  # input errors surface here, before anything is written
    layout.claim_run_dir(out, src.inputs, force)  # refused here, nothing is written, not even the lock file
    with runswap.terminate_as_exit(), runswap.locked_run_dir(out):
        mode = layout.claim_run_dir(out, src.inputs, force)  # again, now that no other writer can change R
        old_fp = data_fingerprint(out)
        with console.progress() as bar:
            task = bar.add_task("textualize", total=6)  # 5 steps + write
            frames, summary = _textualize(
                src, seed, options, lambda name: bar.update(task, advance=1, description=f"textualize: {name}")
            )
            if strict:
                from recsys_cli.data import quality

                quality.enforce(summary["quality"])
            bar.update(task, description="textualize: write")
            moved = _write_run(out, frames, summary, command, options | {"seed": seed}, src.inputs, old_fp)
            bar.update(task, advance=1)
    if moved:
        summary["notes"].append(
            f"the data changed: outputs computed from the old data were moved aside: {', '.join(moved)}"
        )
    if mode == "forced":
        summary["notes"].append(f"--force: {out} also holds files recsys did not write; they were left untouched")
    summary["out"] = str(out)
    console.emit(summary, as_json=as_json, title="textualize", tables=[summary_table(summary)], notes=summary["notes"])


def _textualize(src, seed: int, options: dict, step):
    from recsys_cli.data.textualize import textualize

    docs, per_user, cap = options["docs_per_user"], options["prompts_per_user"], options["review_prompts_per_user"]
    return textualize(src, seed=seed, docs_per_user=docs, prompts_per_user=per_user, review_cap=cap, progress=step)


def _write_run(out: Path, frames: dict, summary: dict, command: str, options: dict, inputs: list, old_fp) -> list[str]:
    """Write the run into a stage inside R, the manifest (with every file's size and sha256) last,
    then swap it in; returns the outputs of the old data moved into stale/."""
    from recsys_cli.artifacts import layout, runswap, schemas
    from recsys_cli.artifacts.io import file_records, file_sha256, manifest, write_json, write_parquet

    with runswap.staged(out) as stage:
        for name in schemas.TEXTUALIZE_FILES:
            write_parquet(frames[name], stage / name)
        files = file_records(stage, schemas.TEXTUALIZE_FILES)
        rows = {name: frames[name].height for name in schemas.TEXTUALIZE_FILES}
        run_manifest = manifest(command, options, inputs, rows) | {"files": files, "summary": summary}
        write_json(run_manifest, stage / schemas.MANIFEST)
        new_fp = file_sha256(stage / schemas.MANIFEST)
        hashes = {name: f["sha256"] for name, f in files.items()} | {schemas.MANIFEST: new_fp}
        return runswap.commit(out, stage, hashes, then=lambda: layout.retire_downstream(out, old_fp, new_fp))


def summary_table(summary: dict):
    from rich.table import Table

    t = Table(title=f"textualize ({summary['source']}) -> {summary['out']}")
    t.add_column("what")
    t.add_column("split")
    t.add_column("seen")
    t.add_column("count", justify="right")
    for key in ("users", "items", "interactions", "documents"):
        t.add_row(key, "", "", f"{summary[key]:,}")
    t.add_row("  copies not written", "", "", f"{summary['corpus']['dropped_copies']:,}")
    for period, n in summary["documents_by_period"].items():
        t.add_row(f"  documents {period}", "", "", f"{n:,}")
    for row in summary["prompts_by_family"]:
        t.add_row(f"prompts {row['family']}", row["split"], "yes" if row["seen"] else "no", f"{row['prompts']:,}")
    if not summary["has_reviews"]:
        t.add_row("prompts rating/explanation/review", "-", "-", "0 (no reviews in source)")
    return t


@app.command("amazon")
def amazon(
    category: Annotated[
        str, typer.Option("--category", "-c", help="toys, beauty, sports or an Amazon category (Musical_Instruments).")
    ],
    out: Out,
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", help="Directory with P5 files or raw reviews; default data/amazon/<category>."),
    ] = None,
    seed: Seed = 0,
    docs_per_user: DocsPerUser = 10,
    prompts_per_user: PromptsPerUser = 3,
    review_prompts_per_user: ReviewCap = 10,
    min_user_items: MinUser = 5,
    min_item_users: MinItemAuto = None,
    time_unit: TimeUnit = "auto",
    strict: Strict = False,
    force: Force = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Amazon reviews: P5-processed (sequential_data.txt + datamaps.json + meta), raw 2014/2018 5-core files,
    or 2023 <Category>.jsonl + meta_<Category>.jsonl."""
    from recsys_cli.data.sources.amazon import load_amazon

    data_dir = data_dir if data_dir is not None else Path("data/amazon") / category
    options = {
        "category": category,
        "data_dir": data_dir,
        "docs_per_user": docs_per_user,
        "prompts_per_user": prompts_per_user,
        "review_prompts_per_user": review_prompts_per_user,
        "min_user_items": min_user_items,
        "min_item_users": min_item_users,
        "time_unit": time_unit,
    }
    load = partial(load_amazon, category, data_dir, min_user_items, min_item_users, time_unit)
    _run("textualize amazon", load, out, options, seed, quiet, as_json, force, strict)


def _col(flag: str, what: str):
    return typer.Option(
        flag, help=f"{what} (default: the conventional name, used only if the table has it; a name given must exist)."
    )


@app.command("table")
def table(
    interactions: Annotated[
        Path, typer.Option("--interactions", "-i", help="Interaction table (.csv, .tsv, .parquet, .jsonl).")
    ],
    out: Out,
    items: Annotated[
        Optional[Path], typer.Option("--items", help="Item table: id, title, categories, brand, price.")
    ] = None,
    users: Annotated[
        Optional[Path], typer.Option("--users", help="User table: id + feature columns (age, gender, ...).")
    ] = None,
    user_col: Annotated[str, typer.Option("--user-col", help="User id column (interactions and users).")] = "user_id",
    item_col: Annotated[str, typer.Option("--item-col", help="Item id column (interactions and items).")] = "item_id",
    time_col: Annotated[
        Optional[str], _col("--time-col", "Timestamp column, unix seconds/milliseconds or dates; 'timestamp'")
    ] = None,
    rating_col: Annotated[Optional[str], _col("--rating-col", "Rating column; 'rating'")] = None,
    review_col: Annotated[Optional[str], _col("--review-col", "Review text column; 'review'")] = None,
    summary_col: Annotated[Optional[str], _col("--summary-col", "Review summary column; 'summary'")] = None,
    title_col: Annotated[Optional[str], _col("--title-col", "Item title column; 'title'")] = None,
    category_col: Annotated[
        Optional[str], _col("--category-col", "Item categories, a list or text split on '|'; 'categories'")
    ] = None,
    brand_col: Annotated[Optional[str], _col("--brand-col", "Item brand column; 'brand'")] = None,
    price_col: Annotated[Optional[str], _col("--price-col", "Item price column; 'price'")] = None,
    user_features: Annotated[
        Optional[str],
        typer.Option(
            "--user-features", help="Comma-separated user feature columns (default: all but the id); each must exist."
        ),
    ] = None,
    seed: Seed = 0,
    docs_per_user: DocsPerUser = 10,
    prompts_per_user: PromptsPerUser = 3,
    review_prompts_per_user: ReviewCap = 10,
    min_user_items: MinUser = 5,
    min_item_users: MinItem = 0,
    time_unit: TimeUnit = "auto",
    strict: Strict = False,
    force: Force = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Any interaction table (+ optional item and user tables), e.g. MovieLens-style data."""
    from recsys_cli.data.sources.table import Columns, load_table

    cols = Columns(
        user_col,
        item_col,
        time_col,
        rating_col,
        review_col,
        summary_col,
        title_col,
        category_col,
        brand_col,
        price_col,
        [c.strip() for c in user_features.split(",") if c.strip()] if user_features is not None else None,
    )
    options = {
        "interactions": interactions,
        "items": items,
        "users": users,
        "columns": vars(cols),
        "docs_per_user": docs_per_user,
        "prompts_per_user": prompts_per_user,
        "time_unit": time_unit,
        "review_prompts_per_user": review_prompts_per_user,
        "min_user_items": min_user_items,
        "min_item_users": min_item_users,
    }
    load = partial(load_table, interactions, items, users, cols, min_user_items, min_item_users, time_unit)
    _run("textualize table", load, out, options, seed, quiet, as_json, force, strict)


@app.command("recbole")
def recbole(
    dataset_dir: Annotated[
        Path, typer.Option("--dataset-dir", help="Directory with RecBole atomic files <name>.inter (+ .item, .user).")
    ],
    out: Out,
    dataset: Annotated[
        Optional[str],
        typer.Option("--dataset", help="The <name> of the files (default: the only *.inter in --dataset-dir)."),
    ] = None,
    seed: Seed = 0,
    docs_per_user: DocsPerUser = 10,
    prompts_per_user: PromptsPerUser = 3,
    review_prompts_per_user: ReviewCap = 10,
    min_user_items: MinUser = 5,
    min_item_users: MinItem = 0,
    time_unit: TimeUnit = "auto",
    strict: Strict = False,
    force: Force = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """RecBole atomic files (.inter / .item / .user, typed headers such as user_id:token, class:token_seq)."""
    from recsys_cli.data.sources.recbole import load_recbole

    options = {
        "dataset_dir": dataset_dir,
        "dataset": dataset,
        "docs_per_user": docs_per_user,
        "prompts_per_user": prompts_per_user,
        "review_prompts_per_user": review_prompts_per_user,
        "min_user_items": min_user_items,
        "min_item_users": min_item_users,
        "time_unit": time_unit,
    }
    load = partial(load_recbole, dataset_dir, dataset, min_user_items, min_item_users, time_unit)
    _run("textualize recbole", load, out, options, seed, quiet, as_json, force, strict)
