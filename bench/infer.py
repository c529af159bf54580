"""Inference speed figures, measured side by side in one run on the embedded SmolLM2-135M.

    python bench/infer.py                 # micro section, ~5 min on 2 CPU cores; writes bench/results/infer.json
    python bench/infer.py --quick         # fewer repetitions
    python bench/infer.py --section rerank --threads 2   # full Toys, 50 test prompts (~5 min): infer-rerank.json
    python bench/infer.py --section rerank --prompts 3 --ks 5,10 \
        --data-dir fixtures/amazon/toys --model fixtures/tiny-model  # smoke (a minute); writes infer-rerank.smoke.json

Section `micro`:
1. dynamic positions: greedy decoding, batch 8, with the trie-driven intra ids vs without (target <= 5% cost)
2. constrained beam search (k = beams = 10) vs unconstrained with the same beams: time per decoding step
   (target >= 0.9x)
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
import statistics
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, machine, write_json
from infer_rerank import rerank_section


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
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 keeps a shared, loaded CPU from spin-waiting)"
    )
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=Path("/work/shared/data/amazon/toys"),
        help="rerank: P5 Toys files (sequential_data.txt, meta)",
    )
    ap.add_argument("--prompts", type=int, default=50, help="rerank: test sequential prompts (seeded sample)")
    ap.add_argument("--ks", default="20,50,100", help="rerank: K values")
    ap.add_argument(
        "--retriever",
        type=Path,
        default=None,
        help="rerank: test predictions with scores (default: itemknn top max(K))",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="rerank: cache for the textualized data (default /tmp/recsys-bench-rerank/<data>)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default bench/results/infer.json; rerank: infer-rerank[.smoke].json)",
    )
    args = ap.parse_args()
    if args.section == "rerank":
        rerank_section(args)
        return
    micro(args)


def micro(args) -> None:
    import torch

    torch.set_num_threads(args.threads)

    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.data.trie import EntityTrie
    from recsys_cli.modeling.checkpoint import load_base_for_inference

    reps = 2 if args.quick else 4
    lm, tok, cfg = load_base_for_inference(args.model)
    sp = SpecialIds.from_tokenizer(tok)
    metas = [json.loads(x) for x in (ROOT / "fixtures/amazon/toys/meta.jsonl").read_text().splitlines()]
    titles = {m["asin"]: m["title"] for m in metas if m.get("title")}
    ids = list(titles)
    toks = {i: tok(" " + titles[i], add_special_tokens=False)["input_ids"] for i in ids}
    trie = EntityTrie((t, i) for i, t in toks.items())
    batch8 = [_prompt(u, tok, sp, titles, ids) for u in range(8)]
    results: dict = {}
    checks = []

    with torch.inference_mode():
        _note("dynamic positions")
        results["dynamic_positions"], check = _dynamic_positions(lm, sp, trie, batch8, reps)
        checks.append(check)
        beam_results, beam_checks, hyps = _beam_sections(lm, sp, trie, batch8[:2], reps)
        results.update(beam_results)
        checks += beam_checks
        results["validity"], validity_checks = _validity(hyps, trie, titles)
        checks += validity_checks
        beam = results["beam_search"]
        per_c, per_u = beam["constrained_s_per_step"], beam["unconstrained_s_per_step"]
        _note(f"beam per-step {per_c:.3f}s vs {per_u:.3f}s; candidates")
        cand_results, cand_checks = _candidates(lm, sp, trie, batch8[0], [toks[i] for i in ids[:100]], reps)
        results.update(cand_results)
        checks += cand_checks
    _report(args, cfg, results, checks)


def _note(msg: str) -> None:
    """Progress line on stderr with the wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _prompt(u: int, tok, sp, titles: dict, ids: list) -> tuple[list[int], list[int]]:
    """Part A (ids, intra positions) of user u's shopping-timeline prompt built from four titles."""
    from recsys_cli.data import masking, tokenize

    hist = [titles[ids[(u * 7 + j) % len(ids)]] for j in range(4)]
    text = f"Shopping timeline for user_{u}: {'; '.join(hist)}. Continue the timeline with one item."
    d = tokenize.tokenize_document(text, [], tok)
    n = len(d.ids)
    ex = masking.build_example(d.ids, d.entity_spans, [(n, n)], sp.g_m, sp, "prompt", None)
    return ex.input_ids[: ex.part_a_len], ex.intra[: ex.part_a_len]


def _dynamic_positions(lm, sp, trie, batch8, reps: int) -> tuple[dict, dict]:
    """Section 1: greedy decoding cost with vs without dynamic positions; (result, check)."""
    from recsys_cli.inference import decode

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
    result = {
        "with_s": dyn,
        "without_s": off,
        "overhead": dyn / off - 1,
        "batch": 8,
        "new_tokens": 32,
    }
    check = {
        "name": "dynamic positions overhead (greedy, batch 8)",
        "value": round(dyn / off - 1, 4),
        "target": "<= 0.05",
        "ok": dyn / off - 1 <= 0.05,
    }
    _note(f"dynamic {dyn:.2f}s vs off {off:.2f}s; beam search")
    return result, check


def _beam_runner(lm, sp, trie, two, calls: dict):
    """The timed beam-search run over the two prompts, counting forward calls in `calls`."""
    from recsys_cli.inference import decode

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

    return beams


def _beam_sections(lm, sp, trie, two, reps: int) -> tuple[dict, list[dict], list]:
    """Section 2: complete constrained search (full vs renormalized scoring), then constrained vs
    unconstrained speed per step; (results, checks, hypotheses of the full search)."""
    # 2. constrained vs unconstrained beam search, k = beams = 10, 2 prompts
    calls = {"n": 0}
    hook = lm.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    beams = _beam_runner(lm, sp, trie, two, calls)
    depth = trie.max_depth + 1

    hyps, n_full, t_full = beams(True, depth)  # the complete constrained search (validity below)
    _, n_ren, t_ren = beams(True, depth, renormalize=True)  # --item-scoring constrained (the default)
    item_scoring = {
        "full_steps": n_full,
        "full_s": t_full,
        "constrained_steps": n_ren,
        "constrained_s": t_ren,
        "speedup": t_full / t_ren,
        "prompts": 2,
        "beams": 10,
        "note": "complete top-10 search over the fixture's titles: summed full-vocabulary log-probs vs "
        "renormalized over the trie, ending once a title is decided",
    }
    check = {
        "name": "item scoring constrained vs full: complete beam search speedup (k=10)",
        "value": round(t_full / t_ren, 2),
        "target": "info",
        "ok": True,
    }
    _note(
        f"full constrained search: {n_full} steps, {t_full:.1f}s; renormalized {n_ren} steps, {t_ren:.1f}s; "
        "interleaved speed runs (32 steps)"
    )
    beam_search, speed_check = _beam_speed(beams, reps, n_full, t_full)
    hook.remove()
    return {"item_scoring": item_scoring, "beam_search": beam_search}, [check, speed_check], hyps


def _beam_speed(beams, reps: int, n_full: int, t_full: float) -> tuple[dict, dict]:
    """Interleaved constrained vs unconstrained runs of equal length: seconds per step; (result, check)."""
    per_c, per_u, tot_c, tot_u = [], [], [], []
    for _ in range(reps + 1):  # interleaved, so load changes hit both sides alike
        _, n_c, tc = beams(True, 32)
        _, n_u, tu = beams(False, n_c + 1)
        per_c.append(tc / max(n_c, 1))
        per_u.append(tu / max(n_u, 1))
        tot_c.append(tc)
        tot_u.append(tu)
    speed = statistics.median(per_u) / statistics.median(per_c)
    result = {
        "constrained_s_per_step": statistics.median(per_c),
        "unconstrained_s_per_step": statistics.median(per_u),
        "constrained_total_s": statistics.median(tot_c),
        "unconstrained_total_s": statistics.median(tot_u),
        "constrained_steps": n_c,
        "unconstrained_steps": n_u,
        "beams": 10,
        "prompts": 2,
        "full_constrained_steps": n_full,
        "full_constrained_s": t_full,
        "note": "per step = beam-search seconds / forward calls; "
        "unconstrained runs the same number of steps ([END] banned)",
    }
    check = {
        "name": "constrained / unconstrained beam speed (per step, k=10)",
        "value": round(speed, 3),
        "target": ">= 0.9",
        "ok": speed >= 0.9,
    }
    return result, check


def _validity(hyps, trie, titles: dict) -> tuple[dict, list[dict]]:
    """Section 4: the constrained top-10 lists hold real item ids, none twice; (result, checks)."""
    # 4. validity of the constrained lists
    lists = [[i for _, _, node in hs for i in trie.payloads[node]][:10] for hs in hyps]
    real = sum(i in titles for lst in lists for i in lst) / max(1, sum(len(lst) for lst in lists))
    dup_free = all(len(lst) == len(set(lst)) for lst in lists)
    result = {
        "lists": len(lists),
        "items": sum(len(x) for x in lists),
        "real_fraction": real,
        "no_duplicates": dup_free,
    }
    return result, [
        {"name": "constrained top-10: real item ids", "value": real, "target": "1.0", "ok": real == 1.0},
        {"name": "constrained top-10: no duplicates", "value": dup_free, "target": "True", "ok": dup_free},
    ]


def _naive_scores(lm, sp, trie, a: list[int], ai: list[int], cands: list[list[int]]) -> list[float]:
    """Each candidate's log-probability from one full forward of prompt + candidate."""
    import torch

    from recsys_cli.data.positions import part_b_intra
    from recsys_cli.modeling.mask import build_attention_mask

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


def _candidates(lm, sp, trie, prompt, cands, reps: int) -> tuple[dict, list[dict]]:
    """Section 3: 100 candidates scored with the shared prompt cache, renormalized, and one forward
    each; (results, checks)."""
    from recsys_cli.inference import candidates

    # 3. 100 candidates: shared prefix vs one full forward each
    a, ai = prompt
    t_sh, shared = [], None
    for _ in range(reps):
        dt, shared = timed_value(lambda: candidates.score_candidates(lm, a, ai, sp.start, sp.end, cands, trie))
        t_sh.append(dt)

    t_ren = []
    for _ in range(reps):
        t_ren.append(
            timed_value(lambda: candidates.score_candidates_constrained(lm, a, ai, sp.start, sp.end, cands, trie))[0]
        )
    item_scoring = {
        "full_s": statistics.median(t_sh),
        "constrained_s": statistics.median(t_ren),
        "speedup": statistics.median(t_sh) / statistics.median(t_ren),
        "candidates": 100,
    }
    checks = [
        {
            "name": "item scoring constrained vs full: 100 candidates speedup",
            "value": round(statistics.median(t_sh) / statistics.median(t_ren), 2),
            "target": "info",
            "ok": True,
        }
    ]
    dt, ref = timed_value(lambda: _naive_scores(lm, sp, trie, a, ai, cands))
    t_nv = [dt]
    diff = max(abs(x - y) for x, y in zip(shared, ref))
    ratio = statistics.median(t_nv) / statistics.median(t_sh)
    separate = {
        "shared_s": statistics.median(t_sh),
        "separate_s": statistics.median(t_nv),
        "speedup": ratio,
        "candidates": 100,
        "prompt_tokens": len(a),
        "max_abs_logprob_diff": diff,
    }
    checks.append(
        {
            "name": "shared-prefix scoring speedup (100 candidates)",
            "value": round(ratio, 2),
            "target": ">= 3",
            "ok": ratio >= 3,
        }
    )
    return {"candidates_item_scoring": item_scoring, "candidates": separate}, checks


def _report(args, cfg, results: dict, checks: list[dict]) -> None:
    """Write the micro report JSON, then print the checks table and the results."""
    import torch

    report = {
        "stage": "infer",
        "model": cfg.base_model,
        "machine": machine(),
        "results": results,
        "checks": checks,
    }
    write_json(args.out or RESULTS / "infer.json", report)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"infer bench ({cfg.base_model}, {os.cpu_count()} CPUs, torch {torch.__version__})")
    for col in ("figure", "value", "target", "ok"):
        table.add_column(col)
    for c in checks:
        table.add_row(c["name"], str(c["value"]), c["target"], "yes" if c["ok"] else "NO")
    Console().print(table)
    Console().print_json(json.dumps(results))


if __name__ == "__main__":
    main()
