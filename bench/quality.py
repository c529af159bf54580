"""Quality on the full P5 Toys split: the LLM alone, two-stage rerank, rerank + fusion and
RSLLM (with its ablations) against popularity and SASRec, ranking ALL items for a fixed
seeded sample of test users, with paired-bootstrap intervals against SASRec.

    python bench/quality.py --tier cpu                      # 2-core fp32 CPU, measured: 7,094 s with --skip beam,rsllm,ablations,rerank-training
                                                            # (516 s of it a second SASRec run, now gone), +2,306 s rerank-training;
                                                            # the beam part takes its budget (30 min); estimated +40-60 min per RSLLM variant
    python bench/quality.py --tier cpu --data-dir ../shared/data/amazon/beauty   # any P5 split with titles
    python bench/quality.py --tier cpu-small                # ~1 h: 300 users, 30 + 30 steps, K = 20
    python bench/quality.py --tier gpu                      # refuses without CUDA

Every stage is the `recsys` command a user types; a stage whose output exists under --work is
reused (an interrupted run continues). Protocol, fixed before any test figure was seen:
* textualize the whole split; SASRec and popularity train on all of it; the LLM pretrains on all
  of its training data within the tier's step budget (a budget does not grow with the data);
* evaluation: --users test users drawn with --seed, one seen-template and one unseen-template
  sequential prompt each; every method ranks all items with the user's own history excluded
  (no P5 target repeats a history item);
* K (rerank depth) and W (fusion weight) are chosen on a seeded sample of VALIDATION users
  (evaluation/tune.py's sweep); the test split is run once with them;
* rerank training (the issue's item 3): the text-only run is repeated with rerank.weight = 0 (its
  own stage 1 and 2) and both rerank the same validation prompts; that comparison is reported on
  validation only (part `rerank-training`, 2,306 s measured on the cpu tier);
* RecSysLLM and RSLLM share stage 1 (text-only, `stage1` steps) and get the same stage-2 steps:
  text-only for RecSysLLM, hybrid prompts + the two InfoNCE losses for RSLLM; the ablations
  change one thing each. Results: bench/results/quality-<tier>.json with the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import qlib
from qlib import ROOT, SHARED, Runner

TIERS = {
    "cpu": {"recipe": "recipes/pretrain/quality-cpu.yaml", "stage1": 100, "stage2": 100, "users": 2000, "valid_users": 500,
            "beam_minutes": 30.0, "batch": 8, "ablation_seen_only": True},
    # a reduced run that fits a 2-hour CPU session: fewer users, steps and candidates (same protocol)
    "cpu-small": {"recipe": "recipes/pretrain/quality-cpu.yaml", "stage1": 30, "stage2": 30, "users": 300, "valid_users": 100,
                  "beam_minutes": 5.0, "batch": 8, "ablation_seen_only": True, "ks": (20,), "sasrec_minutes": 5.0},
    "gpu": {"recipe": "recipes/pretrain/quality-gpu.yaml", "stage1": 600, "stage2": 600, "users": 2000, "valid_users": 1000,
            "beam_minutes": 4.0, "batch": 32, "ablation_seen_only": False},
}
KS = (20, 50)
# fusion weights tried on validation: finer near 0, where a weak LLM's order can still add to a strong
# retriever's (grid fixed before the full-split test run)
WS = [0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
# name -> recipe overrides of the stage-2 run (all start from the shared stage-1 checkpoint unless noted)
VARIANTS = {
    "recsysllm": {"hybrid.id_tokens": False, "hybrid.item_loss_weight": 0.0, "hybrid.user_loss_weight": 0.0},
    "rsllm": {},
    "rsllm-no-id-tokens": {"hybrid.id_tokens": False},
    "rsllm-no-contrastive": {"hybrid.item_loss_weight": 0.0, "hybrid.user_loss_weight": 0.0},
    "rsllm-frozen-projector": {"hybrid.freeze_projector": True},
    "rsllm-single-stage": {"_single_stage": True},
}
COMPARE = ("HR@5", "HR@10", "NDCG@5", "NDCG@10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", choices=sorted(TIERS), default="cpu")
    ap.add_argument("--data-dir", type=Path, default=SHARED / "amazon" / "toys", help="a P5 split with titles")
    ap.add_argument("--category", default="toys")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default runs/quality-<tier>-<category>)")
    ap.add_argument("--users", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beam-minutes", type=float, default=None, help="time budget of the full-catalogue beam part (default: the tier's)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: beam, rsllm, ablations, rerank-training (the valid-only "
                    "rerank-prompt ablation), or one ablation by name (rsllm-single-stage, ...)")
    a = ap.parse_args()
    tier = dict(TIERS[a.tier])
    if a.beam_minutes is not None:
        tier["beam_minutes"] = a.beam_minutes
    if a.tier == "gpu":
        import torch

        if not torch.cuda.is_available():
            sys.exit("bench/quality.py --tier gpu needs a CUDA GPU (torch.cuda.is_available() is False); use --tier cpu")
    skip = set(filter(None, a.skip.split(",")))
    work = (a.work or ROOT / "runs" / f"quality-{a.tier}-{a.category}").resolve()
    run = Runner(work)
    t0 = time.perf_counter()
    R, P = work / "data", work / "predictions"
    P.mkdir(parents=True, exist_ok=True)

    # --- data and the ID models -------------------------------------------------------------
    run.run("textualize", ["textualize", "amazon", "--category", a.category, "--data-dir", a.data_dir, "--out", R, "--seed", a.seed, "--quiet"], R / "manifest.json")
    run.run("build-entities", ["build-entities", "--data", R, "--quiet"], R / "entities.parquet")
    run.run("popularity", ["baseline", "popularity", "--data", R, "--split", "test", "--top-k", 200, "--out", P / "popularity.parquet", "--quiet"], P / "popularity.parquet")
    cap = ["--max-minutes", tier["sasrec_minutes"]] if "sasrec_minutes" in tier else []
    # one early-stopping run answers valid (its own model) and test (the refit); the test file is written last
    run.run("sasrec test", ["baseline", "sasrec", "--data", R, "--split", "test", "--top-k", 200, "--seed", a.seed, *cap,
                            "--out", P / "sasrec-test.parquet", "--valid-out", P / "sasrec-valid.parquet", "--quiet"], P / "sasrec-test.parquet")
    run.run("sasrec train", ["baseline", "sasrec", "--data", R, "--split", "train", "--top-k", 50, "--seed", a.seed, *cap,
                             "--out", P / "sasrec-train.parquet", "--quiet"], P / "sasrec-train.parquet")
    emb = R / "baselines" / "sasrec.safetensors"

    # --- evaluation samples -----------------------------------------------------------------
    users = qlib.sample_users(R, a.users or tier["users"], a.seed)
    test_seen = qlib.prompt_ids(R, users, "test", "sequential", True)
    test_unseen = qlib.prompt_ids(R, users, "test", "sequential", False)
    test_ids = test_seen + test_unseen
    valid_users = qlib.sample_users(R, tier["valid_users"], a.seed + 1)
    valid_ids = qlib.prompt_ids(R, valid_users, "valid", "sequential", True)
    f_test, f_valid = qlib.write_ids(work / "test-ids.txt", test_ids), qlib.write_ids(work / "valid-ids.txt", valid_ids)
    f_seen = qlib.write_ids(work / "test-seen-ids.txt", test_seen)

    # --- LLM training: shared stage 1, then one stage-2 run per variant ---------------------
    recipe = ROOT / tier["recipe"]
    common = ["--set", f"rerank.candidates={P / 'sasrec-train.parquet'}", "--set", "rerank.k=20", "--set", "rerank.weight=0.3"]
    s1 = work / "ckpt-stage1"
    run.run("pretrain stage 1", ["pretrain", "--data", R, "--config", recipe, "--out", s1, "--max-steps", tier["stage1"],
                                 "--seed", a.seed, "--quiet", *common], s1 / "train_state")
    variants = ["recsysllm"] + ([] if "rsllm" in skip else ["rsllm"]) + ([] if "ablations" in skip or "rsllm" in skip else
                                                                         [v for v in VARIANTS if v.startswith("rsllm-") and v not in skip])
    ckpts = {}
    for name in variants:
        c = work / f"ckpt-{name}"
        over = dict(VARIANTS[name])
        single = over.pop("_single_stage", False)
        sets = _sets(over)
        steps = tier["stage1"] + tier["stage2"] if single else tier["stage2"]
        init = [] if single else ["--set", f"hybrid.init_checkpoint={s1}"]
        run.run(f"pretrain {name}", ["pretrain", "--data", R, "--config", recipe, "--out", c, "--max-steps", steps, "--seed", a.seed,
                                     "--set", f"hybrid.embeddings={emb}", *init, *sets, *common, "--quiet"], c / "train_state")
        ckpts[name] = c

    def rerank(name: str, split: str, ids: Path, k: int, tag: str) -> Path:
        out = P / f"{name}-{split}-k{k}{tag}.parquet"
        retr = P / f"sasrec-{split}.parquet"
        run.run(f"rerank {name} {split} K={k}{tag}", ["infer", "--data", R, "--checkpoint", ckpts[name], "--split", split,
                                                      "--prompt-ids", ids, "--candidates-from", retr, "--rerank-k", k, "--fusion", 1,
                                                      "--exclude-history", "--top-k", 10, "--out", out, "--quiet"], out)
        return out

    # --- choose K and W on validation (the text-only model), then apply them everywhere -----
    sweeps = {}
    from recsys_cli.evaluation.tune import best_row, fused_rankings, sweep

    for k in tier.get("ks", KS):
        sweeps[k] = sweep(R, rerank("recsysllm", "valid", f_valid, k, ""), P / "sasrec-valid.parquet", [k], WS)
    best = best_row([row for s in sweeps.values() for row in s["rows"]])
    K, W = int(best["k"]), float(best["w"])
    print(f"== chosen on validation: K={K} W={W} (valid NDCG@10 {best['NDCG@10']:.4f})", file=sys.stderr)

    # --- does rerank training help? The same two-stage text-only run without rerank prompts,
    # compared on VALIDATION only (the issue asks for the evidence there, not on test) -----------
    rerank_ablation = None
    if "rerank-training" not in skip:
        rerank_ablation = rerank_training_ablation(run, R, recipe, tier, a.seed, work, ckpts, rerank, sweeps[K], K, W)

    # --- test runs -------------------------------------------------------------------------
    lists: dict[str, object] = {"popularity": P / "popularity.parquet", "sasrec": P / "sasrec-test.parquet"}
    for name in variants:
        ids = f_seen if (name.startswith("rsllm-") and tier["ablation_seen_only"]) else f_test
        f = rerank(name, "test", ids, K, "" if ids == f_test else "-seen")
        lists[f"{name} rerank"] = f
        lists[f"{name} rerank+fusion"] = fused_rankings(R, f, P / "sasrec-test.parquet", W, "test")
    beam = None
    if "beam" not in skip:
        beam = llm_alone(run, R, ckpts["recsysllm"], P, test_seen, work, tier)
        lists["recsysllm alone (beam)"] = Path(beam["file"])

    # --- metrics, intervals ----------------------------------------------------------------
    table = {}
    for group, ids in (("seen", test_seen), ("unseen", test_unseen)):
        base = qlib.ranks(R, lists["sasrec"], ids)
        for name, src in lists.items():
            have = qlib.prompts_in(src, ids)
            if not have:
                continue
            r = qlib.ranks(R, src, have)
            row = qlib.metrics(r)
            if name != "sasrec":
                b = qlib.ranks(R, lists["sasrec"], have)
                row["vs_sasrec"] = {m: qlib.paired_bootstrap(r, b, m, seed=a.seed) for m in ("NDCG@10", "HR@10")}
            table.setdefault(group, {})[name] = row
        table[group]["sasrec"]["n"] = len(base)
    checks = []
    forms = {name: qlib.list_check(R, src, qlib.prompts_in(src, test_ids)) for name, src in lists.items()}
    checks.append({"name": "100% valid, distinct item ids (>= 10 per list) in every ranked list of every method",
                   "ok": all(f["ok"] == f["lists"] for f in forms.values()), "lists": forms})
    for group in ("seen", "unseen"):
        fused, sas = table[group].get("recsysllm rerank+fusion"), table[group]["sasrec"]
        if fused:
            ci = fused["vs_sasrec"]["NDCG@10"]
            checks.append({"name": f"rerank+fusion beats SASRec ({group}): NDCG@10, HR@10, CI of the NDCG@10 difference excludes 0",
                           "ok": fused["NDCG@10"] > sas["NDCG@10"] and fused["HR@10"] > sas["HR@10"] and ci["ci95"][0] > 0,
                           "fusion": {m: fused[m] for m in COMPARE}, "sasrec": {m: sas[m] for m in COMPARE}, "ndcg10_diff_ci95": ci["ci95"]})
        ids = test_seen if group == "seen" else test_unseen
        for a_name, b_name, claim in (("rsllm", "recsysllm", "RSLLM beats text-only RecSysLLM"),
                                      ("rsllm", "rsllm-no-id-tokens", "ablation: RSLLM beats RSLLM without ID tokens")):
            a_row, b_row = table[group].get(f"{a_name} rerank"), table[group].get(f"{b_name} rerank")
            if not (a_row and b_row):
                continue
            both = [i for i in qlib.prompts_in(lists[f"{a_name} rerank"], ids) if i in set(qlib.prompts_in(lists[f"{b_name} rerank"], ids))]
            ci = qlib.paired_bootstrap(qlib.ranks(R, lists[f"{a_name} rerank"], both), qlib.ranks(R, lists[f"{b_name} rerank"], both), "NDCG@10", seed=a.seed)
            checks.append({"name": f"{claim} on NDCG@10 ({group}, rerank, same budget)", "ok": a_row["NDCG@10"] > b_row["NDCG@10"],
                           a_name: a_row["NDCG@10"], b_name: b_row["NDCG@10"], "ndcg10_diff_ci95": ci["ci95"], "ci_excludes_0": ci["excludes_0"]})
    result = {
        "stage": "quality", "tier": a.tier, "machine": qlib.machine(), "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "setup": {"data_dir": str(a.data_dir), "users": len(users), "seed": a.seed, "valid_users": len(valid_users),
                  "recipe": tier["recipe"], "stage1_steps": tier["stage1"], "stage2_steps": tier["stage2"], "history_excluded": True,
                  "chosen_on_valid": {"K": K, "W": W, "valid": best}, "valid_sweep": sweeps,
                  "ablations_seen_only": tier["ablation_seen_only"], "llm_alone": beam and {k: v for k, v in beam.items() if k != "file"},
                  "rerank_training_ablation_valid": rerank_ablation},
        "seconds": run.seconds, "total_seconds_this_invocation": round(time.perf_counter() - t0, 1), "results": table, "checks": checks,
    }
    dest = qlib.write_result(f"quality-{a.tier}{'' if a.category == 'toys' else '-' + a.category}.json", result)
    for group, rows in table.items():
        print(f"\nsequential, {group} templates (test, history excluded)")
        print(f"{'method':<34}{'n':>6}" + "".join(f"{k:>9}" for k in COMPARE) + "   NDCG@10 vs SASRec [95% CI]")
        for name, m in rows.items():
            ci = m.get("vs_sasrec", {}).get("NDCG@10")
            extra = f"   {ci['diff']:+.4f} [{ci['ci95'][0]:+.4f}, {ci['ci95'][1]:+.4f}]" if ci else ""
            print(f"{name:<34}{m['n']:>6}" + "".join(f"{m[k]:>9.4f}" for k in COMPARE) + extra)
    for c in checks:
        ci = f"  (NDCG@10 difference 95% CI [{c['ndcg10_diff_ci95'][0]:+.4f}, {c['ndcg10_diff_ci95'][1]:+.4f}])" if "ndcg10_diff_ci95" in c else ""
        print(f"{'ok  ' if c['ok'] else 'MISS'} {c['name']}{ci}")
    print(f"wrote {dest}")


def _sets(overrides: dict) -> list[str]:
    """Recipe overrides as `--set key=value` arguments (booleans lower-case, as YAML reads them)."""
    return [x for k, v in overrides.items() for x in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


def rerank_training_ablation(run: Runner, R: Path, recipe: Path, tier: dict, seed: int, work: Path, ckpts: dict,
                             rerank, chosen: dict, K: int, W: float) -> dict:
    """The text-only recipe trained with rerank.weight = 0 (its own stage 1 and stage 2, same steps
    and seed), reranking the same validation prompts at the chosen K: the rerank alone (W = 1) and
    fused at the chosen W, each against the model trained with rerank prompts (paired bootstrap)."""
    name = "recsysllm-no-rerank"
    s1, c = work / "ckpt-stage1-no-rerank", work / f"ckpt-{name}"
    off = ["--set", "rerank.weight=0"]
    run.run("pretrain stage 1 (no rerank prompts)", ["pretrain", "--data", R, "--config", recipe, "--out", s1, "--max-steps", tier["stage1"],
                                                     "--seed", seed, "--quiet", *off], s1 / "train_state")
    run.run(f"pretrain {name}", ["pretrain", "--data", R, "--config", recipe, "--out", c, "--max-steps", tier["stage2"], "--seed", seed,
                                 "--set", f"hybrid.embeddings={R / 'baselines' / 'sasrec.safetensors'}", "--set", f"hybrid.init_checkpoint={s1}",
                                 *_sets(VARIANTS["recsysllm"]),
                                 *off, "--quiet"], c / "train_state")
    ckpts[name] = c
    P = R.parent / "predictions"
    retr = P / "sasrec-valid.parquet"
    from recsys_cli.evaluation.tune import load_cases, ranking, sweep

    without = sweep(R, rerank(name, "valid", work / "valid-ids.txt", K, ""), retr, [K], WS)
    out = {"K": K, "W": W, "best_with_rerank_prompts": chosen["best"], "best_without": without["best"], "without_sweep": without["rows"], "at": {}}
    with_cases = load_cases(R, P / f"recsysllm-valid-k{K}.parquet", retr)[1]  # read once, ranked at both weights
    without_cases = load_cases(R, P / f"{name}-valid-k{K}.parquet", retr)[1]
    for w in (1.0, W):
        a = {c[0]: ranking(c, K, w) for c in with_cases}
        b = {c[0]: ranking(c, K, w) for c in without_cases}
        ids = sorted(set(a) & set(b))
        ra, rb = qlib.ranks(R, a, ids), qlib.ranks(R, b, ids)
        out["at"][f"W={w}"] = {"with": qlib.metrics(ra), "without": qlib.metrics(rb),
                               "ndcg10_with_minus_without": qlib.paired_bootstrap(ra, rb, "NDCG@10", seed=seed)}
        print(f"== rerank training (valid, K={K}, W={w}): NDCG@10 with rerank prompts {out['at'][f'W={w}']['with']['NDCG@10']:.4f}, "
              f"without {out['at'][f'W={w}']['without']['NDCG@10']:.4f}", file=sys.stderr)
    return out


def llm_alone(run: Runner, R: Path, ckpt: Path, P: Path, seen_ids: list[str], work: Path, tier: dict) -> dict:
    """Full-catalogue constrained beam search on as many sampled users' seen prompts as
    `beam_minutes` allow: a 5-prompt probe sets the count."""
    record = work / "beam.json"  # the count chosen by the first probe: a continued run reuses its output
    if record.exists():
        beam = json.loads(record.read_text())
        if Path(beam["file"]).exists():
            return beam
    probe_ids = qlib.write_ids(work / "beam-probe-ids.txt", seen_ids[:5])
    probe = P / "beam-probe.parquet"
    probe.unlink(missing_ok=True)
    summary = run.json("beam probe", ["infer", "--data", R, "--checkpoint", ckpt, "--split", "test", "--prompt-ids", probe_ids, "--beams", 20,
                                      "--top-k", 10, "--exclude-history", "--batch-size", 1, "--out", probe, "--quiet"])
    per = 1.0 / max(summary["modes"]["items"]["prompts_per_s"], 1e-6)
    n = max(5, min(len(seen_ids), int(tier["beam_minutes"] * 60 / per)))
    ids = qlib.write_ids(work / "beam-ids.txt", seen_ids[:n])
    out = P / f"recsysllm-beam-{n}.parquet"
    run.run(f"beam {n} prompts", ["infer", "--data", R, "--checkpoint", ckpt, "--split", "test", "--prompt-ids", ids, "--beams", 20,
                                 "--top-k", 10, "--exclude-history", "--batch-size", tier["batch"], "--out", out, "--quiet"], out)
    beam = {"file": str(out), "prompts": n, "probe_seconds_per_prompt": round(per, 2), "budget_minutes": tier["beam_minutes"]}
    qlib.write_json(record, beam, indent=1)
    return beam


if __name__ == "__main__":
    main()
