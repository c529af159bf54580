"""Section `rerank` of bench/infer.py (`python bench/infer.py --section rerank`): full-catalogue
constrained beam search against two-stage reranking of a retriever's first K, on the same seeded
sample of test sequential prompts, in one process; and `cli`, the in-process `recsys ... --json`
call that bench/listwise_speed.py shares.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from common import RESULTS, loadavg, machine, prepared_run, write_json

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.predictions import read_predictions


def cli(*args: str) -> dict:
    """`recsys ARGS --quiet --json` in this process; the parsed summary (exits on an error)."""
    import contextlib
    import io

    from recsys_cli.main import main as recsys

    buf, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        try:
            recsys([*args, "--quiet", "--json"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    if code:
        sys.exit(f"recsys {' '.join(args)} failed: {err.getvalue().strip()}")
    return json.loads(buf.getvalue())


def _prepare(args, ks: list[int]) -> tuple[Path, Path, Path]:
    """Textualized data + entities (cached), the retriever file, the seeded prompt sample."""
    import random

    import polars as pl

    from recsys_cli.modeling.registry import resolve_model

    spec = resolve_model(args.model)
    work = args.work or Path("/tmp/recsys-bench-rerank") / f"{args.data_dir.resolve().name}-{spec.fingerprint}"
    data = prepared_run(args.data_dir, work, args.model, cli, note)
    retr = args.retriever
    if retr is None:
        retr = work / f"itemknn-test-top{max(ks)}.parquet"
        if not retr.is_file():
            note("retriever: baseline itemknn")
            cli(
                "baseline",
                "itemknn",
                "--data",
                str(data),
                "--split",
                "test",
                "--top-k",
                str(max(ks)),
                "--out",
                str(retr),
            )
    prompts = pl.read_parquet(data / schemas.PROMPTS, columns=["prompt_id", "split", "family"])
    pool = sorted(
        prompts.filter((pl.col("split") == "test") & (pl.col("family") == "sequential"))["prompt_id"].to_list()
    )
    chosen = random.Random(args.seed).sample(pool, min(args.prompts, len(pool)))
    ids = work / f"prompts-{len(chosen)}-seed{args.seed}.txt"
    ids.write_text("\n".join(chosen) + "\n")
    return data, retr, ids


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _report(args, ks: list[int], full: bool, paths: tuple[Path, Path, Path], runs, ratios, valid) -> dict:
    """The JSON report of the rerank section (`paths`: data, retriever, prompt ids)."""
    data, retr, ids = paths
    return {
        "stage": "infer-rerank",
        "smoke": not full,
        "model": args.model or "embedded",
        "data": str(data),
        "retriever": str(retr),
        "prompts_file": str(ids),
        "prompts": args.prompts,
        "ks": ks,
        "seed": args.seed,
        "machine": machine(),
        "runs": runs,
        "speedup_vs_beam": ratios,
        "all_lists_valid_distinct": valid,
        "checks": [
            {
                "name": "rerank K=50 >= 20x faster per prompt than full-catalogue beam search",
                "value": ratios.get("rerank-k50"),
                "target": ">= 20",
                "ok": (ratios.get("rerank-k50") or 0) >= 20,
            }
        ],
        "note": "seconds = time in the mode's loop of `recsys infer` (model loading excluded); "
        "beam = constrained beam search over every title (top 10, 10 beams, batch 8); "
        "rerank = constrained candidate walker over the retriever's first K, "
        "batch 8 (the prompts of a batch walk together); fp32 for both",
    }


def _print_table(prompts: int, runs: dict, ratios: dict, valid: dict) -> None:
    """Print the per-run seconds, speed-ups, recall and validity as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"beam search vs rerank: {prompts} test prompts, {os.cpu_count()} CPUs, load {loadavg()}")
    for col in ("run", "s/prompt", "speedup vs beam", "recall@K", "valid"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for name, r in runs.items():
        table.add_row(
            name,
            f"{r['s_per_prompt']:.3f}",
            f"{ratios.get(name, 1.0):.1f}x",
            f"{r.get('recall_at_k', float('nan')):.3f}",
            str(valid[name]),
        )
    Console().print(table)


def rerank_section(args) -> None:
    """Beam search over the whole catalogue vs rerank K, one process, the same prompts."""
    import polars as pl
    import torch

    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    data, retr, ids = _prepare(args, ks)
    items = set(pl.read_parquet(data / schemas.ITEMS, columns=["item_id"])["item_id"].to_list())
    common = [
        "infer",
        "--data",
        str(data),
        "--checkpoint",
        "none",
        "--prompt-ids",
        str(ids),
        "--overwrite",
        *(["--model", args.model] if args.model else []),
    ]
    runs, valid = {}, {}

    def measure(name: str, mode: str, *more: str) -> None:
        out = ids.parent / f"{name}.parquet"
        before = loadavg()
        note(f"{name}: {' '.join(more)} (load {before})")
        summary = cli(*common, "--out", str(out), *more)
        m = summary["modes"][mode]
        runs[name] = {
            "prompts": m["prompts"],
            "seconds": m["seconds"],
            "s_per_prompt": m["seconds"] / max(m["prompts"], 1),
            "wall_s_with_model_load": summary["seconds"],
            "loadavg_before": before,
            "loadavg_after": loadavg(),
            **({"recall_at_k": summary["rerank"]["recall_at_k"]} if "rerank" in summary else {}),
        }
        lists = read_predictions(out, None, strict_lists=False)["ranked"].to_list()
        valid[name] = all(len(x) > 0 and len(set(x)) == len(x) and set(x) <= items for x in lists)

    measure("beam", "items", "--top-k", "10", "--beams", "10")
    for k in ks:
        measure(f"rerank-k{k}", "rerank", "--candidates-from", str(retr), "--rerank-k", str(k))
    beam = runs["beam"]["s_per_prompt"]
    ratios = {name: beam / r["s_per_prompt"] for name, r in runs.items() if name != "beam" and r["s_per_prompt"] > 0}
    full = (
        args.prompts == 50 and ks == [20, 50, 100] and args.data_dir.resolve() == Path("/work/shared/data/amazon/toys")
    )
    report = _report(args, ks, full, (data, retr, ids), runs, ratios, valid)
    out = write_json(args.out or RESULTS / ("infer-rerank.json" if full else "infer-rerank.smoke.json"), report)
    _print_table(args.prompts, runs, ratios, valid)
    print(f"wrote {out}")
