"""Inference speed figures, measured side by side in one run on the embedded SmolLM2-135M.

    python bench/infer.py                 # micro section, ~5 min on 2 CPU cores; writes bench/results/infer.json
    python bench/infer.py --quick         # fewer repetitions
    python bench/infer.py --section rerank --threads 2         # full Toys, 50 test prompts (~5 min); writes bench/results/infer-rerank.json
    python bench/infer.py --section rerank --prompts 3 --ks 5,10 \
        --data-dir fixtures/amazon/toys --model fixtures/tiny-model  # smoke (a minute); writes infer-rerank.smoke.json

Section `micro`:
1. dynamic positions: greedy decoding, batch 8, with the trie-driven intra ids vs without (target <= 5% cost)
2. constrained beam search (k = beams = 10) vs unconstrained with the same beams: time per decoding step (target >= 0.9x)
3. 100 candidates: shared prompt KV cache vs one full forward per candidate (target >= 3x)
4. constrained top-10 lists: 100% real item ids, no duplicates
Prompts are built from real Toys titles (fixtures/amazon/toys/meta.jsonl).

Section `rerank` (issue 13 item 5): on the same seeded sample of full-Toys
test sequential prompts, full-catalogue constrained beam search (`recsys infer`, top 10,
10 beams) against two-stage reranking of a retriever's first K (`--candidates-from
--rerank-k K`); seconds per prompt (model loading excluded) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def timed(fn, reps: int) -> list[float]:
    return [timed_value(fn)[0] for _ in range(reps)]


def timed_value(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=("micro", "rerank"), default="micro")
    ap.add_argument("--model", default=None, help="base model (default: embedded SmolLM2-135M-Instruct)")
    ap.add_argument("--quick", action="store_true", help="micro: fewer repetitions")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps a shared, loaded CPU from spin-waiting)")
    ap.add_argument("--data-dir", type=Path, default=Path("/work/shared/data/amazon/toys"), help="rerank: P5 Toys files (sequential_data.txt, meta)")
    ap.add_argument("--prompts", type=int, default=50, help="rerank: test sequential prompts (seeded sample)")
    ap.add_argument("--ks", default="20,50,100", help="rerank: K values")
    ap.add_argument("--retriever", type=Path, default=None, help="rerank: test predictions with scores (default: itemknn top max(K))")
    ap.add_argument("--work", type=Path, default=None, help="rerank: cache for the textualized data (default /tmp/recsys-bench-rerank/<data>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default bench/results/infer.json; rerank: infer-rerank[.smoke].json)")
    args = ap.parse_args()
    if args.section == "rerank":
        rerank_section(args)
        return
    micro(args)


def micro(args) -> None:
    import torch

    torch.set_num_threads(args.threads)

    from recsys_cli.data import masking, tokenize
    from recsys_cli.data.intra import part_b_intra
    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.data.trie import EntityTrie
    from recsys_cli.inference import candidates, decode
    from recsys_cli.modeling.checkpoint import load_base_for_inference
    from recsys_cli.modeling.mask import build_attention_mask

    reps = 2 if args.quick else 4
    lm, tok, cfg = load_base_for_inference(args.model)
    sp = SpecialIds.from_tokenizer(tok)
    metas = [json.loads(x) for x in (ROOT / "fixtures/amazon/toys/meta.jsonl").read_text().splitlines()]
    titles = {m["asin"]: m["title"] for m in metas if m.get("title")}
    ids = list(titles)
    toks = {i: tok(" " + titles[i], add_special_tokens=False)["input_ids"] for i in ids}
    trie = EntityTrie((t, i) for i, t in toks.items())

    def prompt(u: int) -> tuple[list[int], list[int]]:
        hist = [titles[ids[(u * 7 + j) % len(ids)]] for j in range(4)]
        text = f"Shopping timeline for user_{u}: {'; '.join(hist)}. Continue the timeline with one item."
        d = tokenize.tokenize_document(text, [], tok)
        n = len(d.ids)
        ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], sp.g_m, sp, "prompt", None)
        return ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]

    batch8 = [prompt(u) for u in range(8)]
    results: dict = {}
    checks = []
    def note(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    with torch.inference_mode():
        note("dynamic positions")
        # 1. dynamic positions cost (greedy, batch 8, 32 new tokens), interleaved repetitions
        def gen(dynamic: bool):
            st = decode.prefill(lm, [p[0] for p in batch8], [p[1] for p in batch8], sp.start, trie, dynamic=dynamic)
            return decode.greedy(lm, st, [], 32)

        gen(True)
        t_dyn, t_off = [], []
        for _ in range(reps):
            t_dyn += timed(lambda: gen(True), 1)
            t_off += timed(lambda: gen(False), 1)
        dyn, off = statistics.median(t_dyn), statistics.median(t_off)
        results["dynamic_positions"] = {"with_s": dyn, "without_s": off, "overhead": dyn / off - 1, "batch": 8, "new_tokens": 32}
        checks.append({"name": "dynamic positions overhead (greedy, batch 8)", "value": round(dyn / off - 1, 4), "target": "<= 0.05", "ok": dyn / off - 1 <= 0.05})

        note(f"dynamic {dyn:.2f}s vs off {off:.2f}s; beam search")
        # 2. constrained vs unconstrained beam search, k = beams = 10, 2 prompts
        calls = {"n": 0}
        hook = lm.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
        two = batch8[:2]
        depth = trie.max_depth + 1

        def beams(constrained: bool, steps: int, renormalize: bool = False):
            """-> (hypotheses, decoding steps, seconds in beam search; the shared prefill is not timed).
            Unconstrained runs with [END] banned for exactly as many steps as the constrained run
            took, so both pay for the same cache lengths."""
            st = decode.prefill(lm, [p[0] for p in two], [p[1] for p in two], sp.start, trie)
            con = decode.Constraint(trie, sp.end, renormalize=renormalize) if constrained else None
            calls["n"] = 0
            t0 = time.perf_counter()
            hyps = decode.beam_search(lm, st, 10, 10, sp.end, steps, con, banned=() if constrained else [sp.end])
            return hyps, calls["n"], time.perf_counter() - t0

        hyps, n_full, t_full = beams(True, depth)  # the complete constrained search (validity below)
        _, n_ren, t_ren = beams(True, depth, renormalize=True)  # --item-scoring constrained (the default)
        results["item_scoring"] = {"full_steps": n_full, "full_s": t_full, "constrained_steps": n_ren, "constrained_s": t_ren,
                                   "speedup": t_full / t_ren, "prompts": 2, "beams": 10,
                                   "note": "complete top-10 search over the fixture's titles: summed full-vocabulary log-probs vs renormalized over the trie, ending once a title is decided"}
        checks.append({"name": "item scoring constrained vs full: complete beam search speedup (k=10)", "value": round(t_full / t_ren, 2), "target": "info", "ok": True})
        note(f"full constrained search: {n_full} steps, {t_full:.1f}s; renormalized {n_ren} steps, {t_ren:.1f}s; interleaved speed runs (32 steps)")
        per_c, per_u, tot_c, tot_u = [], [], [], []
        for _ in range(reps + 1):  # interleaved, so load changes hit both sides alike
            _, n_c, tc = beams(True, 32)
            _, n_u, tu = beams(False, n_c + 1)
            per_c.append(tc / max(n_c, 1)); per_u.append(tu / max(n_u, 1)); tot_c.append(tc); tot_u.append(tu)
        hook.remove()
        speed = statistics.median(per_u) / statistics.median(per_c)
        results["beam_search"] = {"constrained_s_per_step": statistics.median(per_c), "unconstrained_s_per_step": statistics.median(per_u),
                                  "constrained_total_s": statistics.median(tot_c), "unconstrained_total_s": statistics.median(tot_u),
                                  "constrained_steps": n_c, "unconstrained_steps": n_u, "beams": 10, "prompts": 2,
                                  "full_constrained_steps": n_full, "full_constrained_s": t_full,
                                  "note": "per step = beam-search seconds / forward calls; unconstrained runs the same number of steps ([END] banned)"}
        checks.append({"name": "constrained / unconstrained beam speed (per step, k=10)", "value": round(speed, 3), "target": ">= 0.9", "ok": speed >= 0.9})

        # 4. validity of the constrained lists
        lists = [[i for _, _, node in hs for i in trie.payloads[node]][:10] for hs in hyps]
        real = sum(i in titles for lst in lists for i in lst) / max(1, sum(len(lst) for lst in lists))
        dup_free = all(len(lst) == len(set(lst)) for lst in lists)
        results["validity"] = {"lists": len(lists), "items": sum(len(x) for x in lists), "real_fraction": real, "no_duplicates": dup_free}
        checks.append({"name": "constrained top-10: real item ids", "value": real, "target": "1.0", "ok": real == 1.0})
        checks.append({"name": "constrained top-10: no duplicates", "value": dup_free, "target": "True", "ok": dup_free})

        note(f"beam per-step {statistics.median(per_c):.3f}s vs {statistics.median(per_u):.3f}s; candidates")
        # 3. 100 candidates: shared prefix vs one full forward each
        a, ai = batch8[0]
        cands = [toks[i] for i in ids[:100]]
        t_sh, shared = [], None
        for _ in range(reps):
            dt, shared = timed_value(lambda: candidates.score_candidates(lm, a, ai, sp.start, sp.end, cands, trie))
            t_sh.append(dt)

        def naive():
            out = []
            for c in cands:
                n = len(a)
                x = torch.tensor([a + [sp.start] + c])
                inter = torch.tensor([list(range(n)) + [n - 1] * (len(c) + 1)])
                intra = torch.tensor([ai + part_b_intra(c, trie)])
                m = build_attention_mask([n], [x.shape[1]], x.shape[1], torch.float32)
                lp = torch.log_softmax(lm(x, inter, intra, m).logits[0, n:].float(), -1)
                out.append(sum(lp[j, t].item() for j, t in enumerate(c + [sp.end])))
            return out

        t_ren = []
        for _ in range(reps):
            t_ren.append(timed_value(lambda: candidates.score_candidates_constrained(lm, a, ai, sp.start, sp.end, cands, trie))[0])
        results["candidates_item_scoring"] = {"full_s": statistics.median(t_sh), "constrained_s": statistics.median(t_ren),
                                              "speedup": statistics.median(t_sh) / statistics.median(t_ren), "candidates": 100}
        checks.append({"name": "item scoring constrained vs full: 100 candidates speedup", "value": round(statistics.median(t_sh) / statistics.median(t_ren), 2), "target": "info", "ok": True})
        dt, ref = timed_value(naive)
        t_nv = [dt]
        diff = max(abs(x - y) for x, y in zip(shared, ref))
        ratio = statistics.median(t_nv) / statistics.median(t_sh)
        results["candidates"] = {"shared_s": statistics.median(t_sh), "separate_s": statistics.median(t_nv), "speedup": ratio,
                                 "candidates": 100, "prompt_tokens": len(a), "max_abs_logprob_diff": diff}
        checks.append({"name": "shared-prefix scoring speedup (100 candidates)", "value": round(ratio, 2), "target": ">= 3", "ok": ratio >= 3})
    report = {
        "stage": "infer",
        "model": cfg.base_model,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
        "checks": checks,
    }
    out = args.out or HERE / "results" / "infer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"infer bench ({cfg.base_model}, {os.cpu_count()} CPUs, torch {torch.__version__})")
    for col in ("figure", "value", "target", "ok"):
        table.add_column(col)
    for c in checks:
        table.add_row(c["name"], str(c["value"]), c["target"], "yes" if c["ok"] else "NO")
    Console().print(table)
    Console().print_json(json.dumps(results))



# --- section rerank ------------------------------------------------------------------------
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


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _prepare(args, ks: list[int]) -> tuple[Path, Path, Path]:
    """Textualized data + entities (cached), the retriever file, the seeded prompt sample."""
    import random

    import polars as pl

    from recsys_cli.modeling.registry import resolve_model

    spec = resolve_model(args.model)
    work = args.work or Path("/tmp/recsys-bench-rerank") / f"{args.data_dir.resolve().name}-{spec.fingerprint}"
    data = work / "R"
    if not (data / "manifest.json").is_file():
        note(f"textualize {args.data_dir} -> {data}")
        cli("textualize", "amazon", "--category", "toys", "--data-dir", str(args.data_dir), "--out", str(data), "--seed", "0")
    if not (data / "entities.parquet").is_file():
        note("build-entities")
        cli("build-entities", "--data", str(data), *(["--model", args.model] if args.model else []))
    retr = args.retriever
    if retr is None:
        retr = work / f"itemknn-test-top{max(ks)}.parquet"
        if not retr.is_file():
            note("retriever: baseline itemknn")
            cli("baseline", "itemknn", "--data", str(data), "--split", "test", "--top-k", str(max(ks)), "--out", str(retr))
    prompts = pl.read_parquet(data / "prompts.parquet", columns=["prompt_id", "split", "family"])
    pool = sorted(prompts.filter((pl.col("split") == "test") & (pl.col("family") == "sequential"))["prompt_id"].to_list())
    chosen = random.Random(args.seed).sample(pool, min(args.prompts, len(pool)))
    ids = work / f"prompts-{len(chosen)}-seed{args.seed}.txt"
    ids.write_text("\n".join(chosen) + "\n")
    return data, retr, ids


def note(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def rerank_section(args) -> None:
    """Beam search over the whole catalogue vs rerank K, one process, the same prompts."""
    import polars as pl
    import torch

    torch.set_num_threads(args.threads)
    ks = [int(k) for k in args.ks.split(",")]
    data, retr, ids = _prepare(args, ks)
    items = set(pl.read_parquet(data / "items.parquet", columns=["item_id"])["item_id"].to_list())
    common = ["infer", "--data", str(data), "--checkpoint", "none", "--prompt-ids", str(ids), "--overwrite",
              *(["--model", args.model] if args.model else [])]
    runs, valid = {}, {}

    def measure(name: str, mode: str, *more: str) -> None:
        out = ids.parent / f"{name}.parquet"
        before = loadavg()
        note(f"{name}: {' '.join(more)} (load {before})")
        summary = cli(*common, "--out", str(out), *more)
        m = summary["modes"][mode]
        runs[name] = {"prompts": m["prompts"], "seconds": m["seconds"], "s_per_prompt": m["seconds"] / max(m["prompts"], 1),
                      "wall_s_with_model_load": summary["seconds"], "loadavg_before": before, "loadavg_after": loadavg(),
                      **({"recall_at_k": summary["rerank"]["recall_at_k"]} if "rerank" in summary else {})}
        lists = pl.read_parquet(out)["ranked"].to_list()
        valid[name] = all(len(x) > 0 and len(set(x)) == len(x) and set(x) <= items for x in lists)

    measure("beam", "items", "--top-k", "10", "--beams", "10")
    for k in ks:
        measure(f"rerank-k{k}", "rerank", "--candidates-from", str(retr), "--rerank-k", str(k))
    beam = runs["beam"]["s_per_prompt"]
    ratios = {name: beam / r["s_per_prompt"] for name, r in runs.items() if name != "beam" and r["s_per_prompt"] > 0}
    full = args.prompts == 50 and ks == [20, 50, 100] and args.data_dir.resolve() == Path("/work/shared/data/amazon/toys")
    report = {
        "stage": "infer-rerank", "smoke": not full, "model": args.model or "embedded", "data": str(data),
        "retriever": str(retr), "prompts_file": str(ids), "prompts": args.prompts, "ks": ks, "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version()},
        "runs": runs, "speedup_vs_beam": ratios, "all_lists_valid_distinct": valid,
        "checks": [{"name": "rerank K=50 >= 20x faster per prompt than full-catalogue beam search",
                    "value": ratios.get("rerank-k50"), "target": ">= 20", "ok": (ratios.get("rerank-k50") or 0) >= 20}],
        "note": "seconds = time in the mode's loop of `recsys infer` (model loading excluded); beam = constrained beam search "
                "over every title (top 10, 10 beams, batch 8); rerank = constrained candidate walker over the retriever's first K, "
                "batch 8 (the prompts of a batch walk together); fp32 for both",
    }
    out = args.out or HERE / "results" / ("infer-rerank.json" if full else "infer-rerank.smoke.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"beam search vs rerank: {args.prompts} test prompts, {os.cpu_count()} CPUs, load {loadavg()}")
    for col in ("run", "s/prompt", "speedup vs beam", "recall@K", "valid"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for name, r in runs.items():
        table.add_row(name, f"{r['s_per_prompt']:.3f}", f"{ratios.get(name, 1.0):.1f}x", f"{r.get('recall_at_k', float('nan')):.3f}", str(valid[name]))
    Console().print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
