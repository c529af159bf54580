"""Full scoring of direct prompts, in-process, for scripts/gpu_bench.py's `scoring` stage: one prompt
at a time against batched, prompts/s and the largest score difference.

    python scripts/gpu_bench.py scoring --checkpoint C --data R [--prompts 64] [--batch 8]
"""

from __future__ import annotations

import time
from pathlib import Path


def scoring(args) -> dict:
    """Direct test prompts (100 candidates each) scored by full-vocabulary log-probs: one prompt at a
    time (the old `score_batch`) vs batched at two chunk sizes; prompts/s and the largest difference."""
    import polars as pl
    import torch

    from recsys_cli.inference import candidates
    from recsys_cli.inference.engine import Engine
    from recsys_cli.inference.options import InferOptions
    from recsys_cli.inference.plan import inference_device, tries_of
    from recsys_cli.inference.run import load_model
    from recsys_cli.modeling.precision import to_bf16_inference, use_bf16

    lm, tok, _ = load_model(args.checkpoint, None, False)
    bf16 = use_bf16(args.precision, inference_device())
    if bf16:
        to_bf16_inference(lm)
    ent, _ = tries_of(Path(args.data), False, len(tok))
    items = pl.read_parquet(Path(args.data) / "items.parquet")
    direct = (pl.col("family") == "direct") & (pl.col("split") == "test") & pl.col("candidates").is_not_null()
    prompts = pl.read_parquet(Path(args.data) / "prompts.parquet").filter(direct).head(args.prompts)
    eng = Engine(lm, tok, InferOptions(), ent, None, dict(zip(items["item_id"].to_list(), items["title"].to_list())))
    rows = prompts.to_dicts()
    a, ai, _ = eng.part_a(rows)
    toks = [[eng.title_tokens(c) for c in r["candidates"]] for r in rows]
    sp = eng.special

    def timed(fn):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t0, got

    out = {
        "prompts": len(rows),
        "candidates_per_prompt": len(toks[0]),
        "batch": args.batch,
        "precision": "bf16" if bf16 else "fp32",
    }
    with torch.inference_mode():
        candidates.score_candidates(lm, a[0], ai[0], sp.start, sp.end, toks[0][:4], ent)  # warm-up
        dt, ref = timed(
            lambda: [candidates.score_candidates(lm, x, y, sp.start, sp.end, c, ent) for x, y, c in zip(a, ai, toks)]
        )
        out["one_at_a_time_prompts_per_s"] = round(len(rows) / dt, 2)
        n = args.batch
        for chunk in (32, 256):
            dt, got = timed(
                lambda: [
                    s
                    for b in range(0, len(rows), n)
                    for s in candidates.score_candidates_batch(
                        lm, a[b : b + n], ai[b : b + n], sp.start, sp.end, toks[b : b + n], ent, chunk=chunk
                    )
                ]
            )
            out[f"batched_chunk{chunk}_prompts_per_s"] = round(len(rows) / dt, 2)
            out[f"batched_chunk{chunk}_max_abs_diff"] = max(abs(x - y) for r, g in zip(ref, got) for x, y in zip(r, g))
    return out
