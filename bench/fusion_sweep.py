"""Choose the rerank depth K and the fusion weight W on the VALIDATION split (docs/rerank.md).

    recsys baseline sasrec --data R --split valid --top-k 200 --out R/predictions/valid/sasrec.parquet
    for K in 20 50 100; do recsys infer --data R --checkpoint C --split valid --prompt-ids sample-valid.txt \
        --candidates-from R/predictions/valid/sasrec.parquet --rerank-k $K --fusion 1 --out R/rerank-valid-k$K.parquet; done
    python bench/fusion_sweep.py --data R --rerank R/rerank-valid-k*.parquet \
        --retriever R/predictions/valid/sasrec.parquet --ws 0:1:0.1

Prints HR/NDCG@5/10 per (K, W) without re-running the LLM (inference/sweep.py) and the best
exact pair by NDCG@10; --json writes the table. Use that K and W for the test run, once.
`--ks` adds smaller K from each file: exact only for runs with --item-scoring full (marked
'~' otherwise, and never chosen as best). No torch is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def floats(text: str) -> list[float]:
    """'0,0.5,1' or 'start:stop:step' (stop included)."""
    if ":" in text:
        a, b, step = (float(x) for x in text.split(":"))
        n = int(round((b - a) / step))
        return [round(a + i * step, 10) for i in range(n + 1)]
    return [float(x) for x in text.split(",") if x.strip()]


def _k_of(path: Path) -> int:
    from recsys_cli.artifacts.provenance import read

    return int(((read(path) or {}).get("settings") or {}).get("rerank_k") or 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="textualize output R")
    ap.add_argument("--rerank", type=Path, nargs="+", required=True, help="infer --split valid --candidates-from RET --fusion 1 outputs (one per K)")
    ap.add_argument("--retriever", type=Path, required=True, help="the RET file that run reranked")
    ap.add_argument("--ks", default="", help="extra K values <= each run's --rerank-k (default: each run's K)")
    ap.add_argument("--ws", default="0:1:0.1", help="W values: a,b,c or start:stop:step")
    ap.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from recsys_cli.errors import RecsysError
    from recsys_cli.inference.sweep import best_row, sweep

    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    try:
        runs = [sweep(args.data, f, args.retriever, sorted({k for k in ks if k <= _k_of(f)} | {_k_of(f)}), floats(args.ws)) for f in args.rerank]
    except RecsysError as exc:
        print(f"Error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    rows = [dict(r, file=str(run["rerank"])) for run in runs for r in run["rows"]]
    best = best_row(rows)
    res = {"runs": runs, "rows": rows, "best": best}
    what = ", ".join(f"{r['prompts']} prompts (K={r['k_run']})" for r in runs)
    table = Table(title=f"fusion sweep on validation: {what}")
    cols = ("k", "w", "recall@K", "HR@5", "NDCG@5", "HR@10", "NDCG@10")
    for c in cols:
        table.add_column(c, justify="right")
    for r in rows:
        style = "bold" if r is best else None
        cells = [f"{r['k']}{'' if r['exact'] else '~'}", str(r["w"])] + [f"{r[c]:.4f}" for c in cols[2:]]
        table.add_row(*cells, style=style)
    Console().print(table)
    if best is not None:
        b = best
        print(f"best by NDCG@10: --rerank-k {b['k']} --fusion {b['w']} (NDCG@10 {b['NDCG@10']:.4f}, HR@10 {b['HR@10']:.4f})")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
