"""Listwise scoring vs the constrained candidate walker: seconds per prompt at the same K, side by side in one run.

    python bench/listwise_speed.py                                   # embedded SmolLM2-135M, Toys fixture, K = 20
    python bench/listwise_speed.py --model fixtures/tiny-model       # the tiny random model (seconds)
    python bench/listwise_speed.py --data-dir /work/shared/data/amazon/toys --prompts 50 --threads 2

On the same seeded sample of test sequential prompts and the same retriever (itemknn top K),
`recsys infer --candidates-from --rerank-k K` is run with `--item-scoring constrained` (the
walker: one prompt prefill, then one forward per depth of the candidates' title trie) and
with `--item-scoring listwise` (one forward of the prompt that lists the K candidates), both
`--checkpoint none`, fp32, batch 8. The runs alternate (walker, listwise, walker, listwise)
and each takes its fastest repetition; seconds are those of the rerank mode's loop (model
loading excluded). The issue's target: listwise >= 5x faster per prompt at K = 20.
Writes bench/results/listwise-speed[.<model>].json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, ROOT, loadavg, machine, prepared_run, write_json
from infer_rerank import cli, note  # in-process `recsys ... --json`

from recsys_cli.artifacts import schemas


def prepare(args) -> tuple[Path, Path, Path]:
    """Textualized data (+ entities for the walker's dynamic positions), cached; the retriever;
    the seeded prompt sample."""
    import random

    import polars as pl

    from recsys_cli.modeling.registry import resolve_model

    spec = resolve_model(args.model)
    work = Path("/tmp/recsys-bench-listwise") / f"{args.data_dir.resolve().name}-{spec.fingerprint}"
    data = prepared_run(args.data_dir, work, args.model, cli, note)
    retr = work / f"itemknn-test-top{args.k}.parquet"
    if not retr.is_file():
        note("retriever: baseline itemknn")
        cli("baseline", "itemknn", "--data", str(data), "--split", "test", "--top-k", str(args.k), "--out", str(retr))
    prompts = pl.read_parquet(data / schemas.PROMPTS, columns=["prompt_id", "split", "family", "seen"])
    pool = prompts.filter((pl.col("split") == "test") & (pl.col("family") == "sequential") & pl.col("seen"))
    pool = sorted(pool["prompt_id"])
    chosen = random.Random(args.seed).sample(pool, min(args.prompts, len(pool)))
    ids = work / f"prompts-{len(chosen)}-seed{args.seed}.txt"
    ids.write_text("\n".join(chosen) + "\n")
    return data, retr, ids


def counted(fn):
    """fn() while counting the RecsysLM forwards and the token positions they process (padding
    included): -> (fn's value, forwards, positions)."""
    import torch

    seen = {"forwards": 0, "positions": 0}

    def hook(module, _args, kwargs, _out):
        if type(module).__name__ == "RecsysLM":
            seen["forwards"] += 1
            seen["positions"] += int(kwargs["input_ids"].numel())

    handle = torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
    try:
        value = fn()
    finally:
        handle.remove()
    return value, seen["forwards"], seen["positions"]


def _infer_args(args, data: Path, retr: Path, ids: Path) -> list[str]:
    """The `recsys infer` arguments both scorers share."""
    return [
        "infer",
        "--data",
        str(data),
        "--checkpoint",
        "none",
        "--prompt-ids",
        str(ids),
        "--overwrite",
        "--candidates-from",
        str(retr),
        "--rerank-k",
        str(args.k),
        "--batch-size",
        str(args.batch_size),
        *(["--model", args.model] if args.model else []),
    ]


def _measure(args, common: list[str], ids: Path) -> tuple[dict[str, list[float]], dict[str, dict[str, float]]]:
    """Alternating timed runs of each scorer (s per prompt), then one counted run each (model work)."""
    runs: dict[str, list[float]] = {"constrained": [], "listwise": []}
    for rep in range(args.reps):
        for scorer in runs:
            note(f"{scorer} rep {rep + 1} (load {loadavg()})")
            summary = cli(*common, "--item-scoring", scorer, "--out", str(ids.parent / f"{scorer}.parquet"))
            m = summary["modes"]["rerank"]
            runs[scorer].append(m["seconds"] / max(m["prompts"], 1))
    work: dict[str, dict[str, float]] = {}
    for scorer in runs:  # one more, untimed run: what each scorer asks of the model
        summary, forwards, positions = counted(
            lambda: cli(*common, "--item-scoring", scorer, "--out", str(ids.parent / f"{scorer}.parquet"))
        )
        n = summary["modes"]["rerank"]["prompts"]
        batches = -(-n // args.batch_size)
        work[scorer] = {"forwards_per_batch": forwards / batches, "positions_per_prompt": positions / n}
    return runs, work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="base model (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "fixtures" / "amazon" / "toys", help="P5 Toys files")
    ap.add_argument("--prompts", type=int, default=24, help="test sequential prompts (seeded sample)")
    ap.add_argument("--k", type=int, default=20, help="candidates reranked by both scorers")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2, help="alternating repetitions of each scorer (the fastest counts)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    data, retr, ids = prepare(args)
    runs, work = _measure(args, _infer_args(args, data, retr, ids), ids)
    walker, listwise = min(runs["constrained"]), min(runs["listwise"])
    ratio = walker / listwise
    name = "embedded" if args.model is None else Path(args.model).name
    report = {
        "stage": "listwise-speed",
        "model": name,
        "data": str(data),
        "prompts": args.prompts,
        "k": args.k,
        "batch_size": args.batch_size,
        "machine": machine(),
        "s_per_prompt": {"walker": walker, "listwise": listwise},
        "repetitions": runs,
        "speedup": ratio,
        "model_work": work,
        "checks": [
            {
                "name": f"listwise K={args.k} >= 5x faster per prompt than the walker",
                "value": round(ratio, 2),
                "target": ">= 5",
                "ok": ratio >= 5,
            }
        ],
    }
    out = args.out or RESULTS / f"listwise-speed{'' if args.model is None else '.' + name}.json"
    write_json(out, report)
    for label, scorer, sec in (("walker (constrained)", "constrained", walker), ("listwise", "listwise", listwise)):
        w = work[scorer]
        print(
            f"{label:21s} K={args.k}: {sec * 1000:8.1f} ms/prompt   {w['forwards_per_batch']:5.1f} forwards "
            f"per batch of {args.batch_size}, {w['positions_per_prompt']:6.0f} token positions per prompt"
        )
    print(f"listwise speed-up: {ratio:.2f}x  (target >= 5x)   wrote {out}")


if __name__ == "__main__":
    main()
