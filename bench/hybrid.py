"""RSLLM training-step cost: hybrid (soft ID tokens + LM loss + two InfoNCE losses) vs the
text-only GLM step, side by side at the same batch shape [B, L] (every batch padded to L).

    python bench/hybrid.py --data runs/toys --model fixtures/tiny-model --steps 30   # writes bench/results/hybrid.json
    python bench/hybrid.py --data runs/toys --embeddings runs/toys/baselines/sasrec.safetensors

Modes, interleaved step by step on the same model, their order rotated every step:
  text         today's step: text-only examples (data/masking; prompts cut to the same text as
               the hybrid ones), lm(..., labels).loss
  text_hidden  the same batches with hidden=True (the cost of the hidden-state hook alone)
  hybrid_nocl  hybrid examples (data/rsllm), soft tokens, LM loss only (contrastive weights 0)
  hybrid       the full stage-2 step: soft tokens + LM + item InfoNCE + user InfoNCE
Per step: data time (building the examples + collate) and model time (forward, backward,
AdamW step), median over the steps after 3 warm-up steps. Target: hybrid >= 0.9x text
throughput (examples/s over data + model time). Without --embeddings a SASRec (hidden 64) is
trained for one epoch on R/sequences.parquet into a temporary file (R is never written).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import HERE, RESULTS, loadavg, machine, write_json

RESULTS_FILE = RESULTS / "hybrid.json"
TARGET = 0.9
MODES = ("text", "text_hidden", "hybrid_nocl", "hybrid")


def _embeddings(data: Path, path: str | None, tmp: Path):
    from recsys_cli.artifacts import item_embeddings, schemas
    from recsys_cli.baselines import sasrec, sasrec_train
    from recsys_cli.baselines.sasrec_encoder import to_item_embeddings

    if path:
        return item_embeddings.load(Path(path)), path
    import polars as pl

    seqs = pl.read_parquet(data / schemas.SEQUENCES)["items"].to_list()
    enc, vocab = sasrec.encode_sequences(seqs)
    cfg = sasrec.SASRecConfig(max_epochs=1, threads=2)
    model, _ = sasrec_train.train(enc, len(vocab), cfg)
    out = tmp / "sasrec.safetensors"
    item_embeddings.save(out, to_item_embeddings(model, cfg, vocab, None))
    return item_embeddings.load(out), "trained here (1 epoch, hidden 64)"


class Pool:
    """Tokenized train prompts (with SASRec histories) and corpus documents of R."""

    def __init__(self, data: Path, tok, rows, max_docs: int = 600):
        import polars as pl

        from recsys_cli.artifacts import schemas
        from recsys_cli.data import tokenize
        from recsys_cli.data.rsllm import history_rows

        p = (
            pl.read_parquet(data / schemas.PROMPTS)
            .filter((pl.col("split") == "train") & pl.col("seen"))
            .sort("prompt_id")
        )
        seqs = pl.read_parquet(data / schemas.SEQUENCES)
        seq = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
        self.src = tokenize.tokenize_documents(p["source"].to_list(), p["source_entities"].to_list(), tok)
        self.tgt = [
            tokenize.tokenize_target(t, e, tok) for t, e in zip(p["target"].to_list(), p["target_entities"].to_list())
        ]
        self.hist = [
            history_rows(seq.get(u, []), "train", i, rows)
            for u, i in zip(p["user_id"].to_list(), p["item_id"].to_list())
        ]
        c = pl.read_parquet(data / schemas.CORPUS).sort("doc_id").head(max_docs)
        self.docs = tokenize.tokenize_documents(c["text"].to_list(), c["entities"].to_list(), tok)


def example(pool: Pool, i: int, hybrid: bool, special, rows, ph: int, length: int, cfg):
    """Example i (a corpus document half the time, else a prompt); the text-only example is
    today's data/masking one, the hybrid one data/rsllm's, from the same rng draws."""
    from recsys_cli.data import masking
    from recsys_cli.data.rsllm import hybrid_document, hybrid_prompt

    rng = random.Random(f"bench:{i}")
    if rng.random() < 0.5:
        doc = pool.docs[rng.randrange(len(pool.docs))]
        level = masking.sample_level(rng, cfg)
        window = min(len(doc.ids), (length - 2) // 2 if level == "document" else int(length / 1.4))
        state = rng.getstate()
        while True:
            rng.setstate(state)
            part = doc.slice(0, window)
            hx = hybrid_document(part, level, rng, cfg, special, None, rows, ph)
            if hx.budget_len <= length:
                break
            window = int(window * 0.8)
        rng.setstate(state)
        return hx if hybrid else masking.mask_document(part, level, rng, cfg, special, None)
    k = rng.randrange(len(pool.src))
    if hybrid:
        return hybrid_prompt(pool.src[k], pool.tgt[k], special, None, rows, ph, length, True, pool.hist[k])
    return hybrid_prompt(pool.src[k], pool.tgt[k], special, None, rows, ph, length, False)


def _record(times: dict[str, list], b: dict, data_s: float, model_s: float) -> None:
    """Append one timed step of a mode: data and model seconds, soft and real token counts."""
    times["data"].append(data_s)
    times["model"].append(model_s)
    times["soft"].append(len(b.get("soft_b", [])))
    times["tokens"].append(int(b["lengths"].sum()))


def _summary(args, times: dict, emb, emb_from: str) -> dict:
    """Medians per mode, throughput and model-time ratios against text, and the result dict."""
    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in times.items()}
    step_s = {m: med[m]["data"] + med[m]["model"] for m in MODES}
    ratio = {m: step_s["text"] / step_s[m] for m in MODES}
    model_ratio = {m: med["text"]["model"] / med[m]["model"] for m in MODES}
    return {
        "command": "python bench/hybrid.py " + " ".join(sys.argv[1:]),
        "loadavg_before": args.loadavg,
        "loadavg_after": loadavg(),
        "machine": machine(threads=args.threads),
        "model": str(args.model),
        "batch": [args.batch, args.length],
        "steps_timed": args.steps,
        "embeddings": emb_from,
        "d_rec": emb.dim,
        "median_s": {
            m: {"data": round(med[m]["data"], 4), "model": round(med[m]["model"], 4), "step": round(step_s[m], 4)}
            for m in MODES
        },
        "real_tokens_per_batch": {m: med[m]["tokens"] for m in MODES},
        "soft_tokens_per_batch": med["hybrid"]["soft"],
        "throughput_vs_text": {m: round(r, 3) for m, r in ratio.items()},
        "model_time_vs_text": {m: round(r, 3) for m, r in model_ratio.items()},
        "checks": [
            {
                "name": f"hybrid step throughput >= {TARGET}x text-only at the same batch shape",
                "value": round(ratio["hybrid"], 3),
                "ok": ratio["hybrid"] >= TARGET,
            }
        ],
    }


def run(args) -> dict:
    import torch

    from recsys_cli.baselines.sasrec_encoder import UserEncoder
    from recsys_cli.data.rsllm import item_rows
    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.modeling.rsllm import build_hybrid
    from recsys_cli.training.data import collate
    from recsys_cli.training.loop import build_model
    from recsys_cli.training.recipe import HybridArgs, ModelArgs, Recipe
    from recsys_cli.training.rsllm import collate_hybrid, hybrid_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hybrid-"))
    emb, emb_from = _embeddings(Path(args.data), args.embeddings, tmp)
    # the recipe defaults: LoRA rank 8 / alpha 16 / dropout 0.05 on every projection, GLM 2D positions
    hyb = HybridArgs(embeddings=str(args.embeddings))
    lm, tok, _, _ = build_model(Recipe(model=ModelArgs(name=args.model), hybrid=hyb), "cpu", max_intra=64)
    build_hybrid(lm, emb, hyb, seed=0)
    lm.train()
    special = SpecialIds.from_tokenizer(tok)
    rows = item_rows(emb.item_ids)
    pool = Pool(Path(args.data), tok, rows)
    encoder = UserEncoder(emb)
    cfg = Recipe().mask
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-4)
    full, nocl = hyb, replace(hyb, item_loss_weight=0.0, user_loss_weight=0.0)
    L, B, pad = args.length, args.batch, tok.pad_token_id
    times = {m: {"data": [], "model": [], "soft": [], "tokens": []} for m in MODES}
    for step in range(args.steps + 3):
        idx = range(step * B, (step + 1) * B)
        for mode in MODES[step % 4 :] + MODES[: step % 4]:  # rotated: no mode is always first
            t0 = time.perf_counter()
            hybrid = mode.startswith("hybrid")
            exs = [example(pool, i, hybrid, special, rows, pad, L, cfg) for i in idx]
            b = (
                collate_hybrid(exs, pad, torch.float32, pad_multiple=L, title_rows=mode == "hybrid")
                if hybrid
                else collate(exs, pad, torch.float32, pad_multiple=L)
            )
            # the full step also holds the titles' own rows (training/rsllm.pack_titles: the item loss)
            n_rows, width = b["input_ids"].shape
            assert width == L and (n_rows == B or mode == "hybrid"), b["input_ids"].shape
            t1 = time.perf_counter()
            if hybrid:
                loss = hybrid_step(lm, lm, b, full if mode == "hybrid" else nocl, encoder)["loss"]
            else:
                loss = lm(
                    b["input_ids"],
                    b["inter"],
                    b["intra"],
                    b["attn_mask_4d"],
                    labels=b["labels"],
                    hidden=mode == "text_hidden",
                ).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in lm.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            t2 = time.perf_counter()
            if step >= 3:
                _record(times[mode], b, t1 - t0, t2 - t1)
    return _summary(args, times, emb, emb_from)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a textualized run directory R")
    ap.add_argument("--model", default=str(HERE.parent / "fixtures" / "tiny-model"))
    ap.add_argument("--embeddings", default=None, help="R/baselines/sasrec.safetensors (default: train one here)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS_FILE))
    args = ap.parse_args()
    args.loadavg = loadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    res = run(args)
    write_json(Path(args.out), res)
    print(
        json.dumps(
            {
                k: res[k]
                for k in ("median_s", "throughput_vs_text", "model_time_vs_text", "soft_tokens_per_batch", "checks")
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
