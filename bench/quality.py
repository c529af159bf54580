"""Does the LLM add to SASRec? The ranker protocol of docs/rerank.md on a full P5 split: one
LLM checkpoint, several ways to score SASRec's top K with it (the walker, summed, length-normalised
and PMI-calibrated title log-probs, listwise labels, listwise with ID-aware candidates), the
scorer, K and W chosen on VALIDATION by `recsys tune`, then the test split run once.

    python bench/quality.py --tier cpu                       # 2-core fp32 CPU (the cost of each part is in the result)
    python bench/quality.py --tier cpu --valid-users 1000 --users 1000 --skip ids   # what fits beside other work
    python bench/quality.py --tier cpu --data-dir ../shared/data/amazon/beauty --category beauty
    python bench/quality.py --tier cpu --listwise-head pointer   # listwise scored by modeling/pointer
    python bench/quality.py --tier gpu                       # refuses without CUDA

Every stage is the `recsys` command a user types, run under /tmp/recsys-cpu.lock (one torch job
at a time on a shared machine); a stage whose output exists under --work is reused.

Protocol, fixed before any figure was seen:
* SASRec for validation is built exactly like the test one, one position earlier: early stopping
  on items[-3], refit on items[:-2] (`baseline sasrec --split valid --refit`); test: early
  stopping on items[-2], refit on items[:-1]. A third SASRec, trained on items[:-3] only, gives
  the candidates of the TRAINING positions that rerank and listwise training use.
* One LLM checkpoint per tier budget, trained on the paper's objective mixed with rerank prompts
  and listwise examples (recipe sections rerank/listwise), so every scorer has the same budget.
  Part `ids`: an RSLLM stage 2 from that checkpoint (same steps) whose candidates carry their
  SASRec ID token, scored with and without them.
* Validation: --valid-users users (seed + 1), one seen sequential prompt each, every scorer
  reranks SASRec's top K at W = 1; `recsys tune` picks (scorer, K, W) by NDCG@10 and keeps W = 0
  unless the paired 95% interval of the gain over SASRec excludes 0 (evaluation/tune.RULE).
* Test, once: --users users (seed), one seen and one unseen sequential prompt each; the best
  validation scorer reranks at its K; the chosen fusion and the best validation row are rebuilt
  from that one run (evaluation/tune.fused_rankings), with paired 95% intervals against SASRec.
Results: bench/results/quality-ranker-<tier>[-<category>].json.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from pathlib import Path

import qlib
from qlib import ROOT, SHARED, Runner
from quality_report import checks, read_ids, report, test_table, valid_table

from recsys_cli.evaluation.tune import fused_rankings

CPU, GPU = "recipes/pretrain/quality-cpu.yaml", "recipes/pretrain/quality-gpu.yaml"
TIERS = {
    "cpu": dict(recipe=CPU, steps=120, valid_users=2000, users=2000, k=20, batch=8),
    "cpu-small": dict(recipe=CPU, steps=40, valid_users=300, users=300, k=20, batch=8, sasrec_minutes=5.0),
    "gpu": dict(recipe=GPU, steps=600, valid_users=2000, users=2000, k=20, batch=32),
}
# name -> `infer` flags of one validation scorer (the part `ids` adds its two on the RSLLM checkpoint)
SCORERS = {
    "walker": ["--item-scoring", "constrained"],
    "full": ["--item-scoring", "full"],
    "full-norm": ["--item-scoring", "full-norm"],
    "pmi": ["--item-scoring", "pmi"],
    "listwise": ["--item-scoring", "listwise"],
    "listwise-3-orders": ["--item-scoring", "listwise", "--listwise-orders", "3"],
}
ID_SCORERS = {
    "rsllm listwise+ids": ["--item-scoring", "listwise", "--listwise-candidate-ids"],
    "rsllm listwise, no ids": ["--item-scoring", "listwise", "--no-listwise-candidate-ids"],
}
LOCK = Path(os.environ.get("RECSYS_BENCH_LOCK", "/tmp/recsys-cpu.lock"))  # a shared machine: one torch job at a time


class LockedRunner(Runner):
    """Runner whose every stage holds LOCK, so other torch jobs on the machine wait between stages."""

    def run(self, stage: str, args: list[str], done: Path | None = None, timeout: float | None = None) -> str:
        if done is not None and Path(done).exists():
            return super().run(stage, args, done, timeout)
        with LOCK.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            return super().run(stage, args, done, timeout)


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", choices=sorted(TIERS), default="cpu")
    ap.add_argument("--data-dir", type=Path, default=SHARED / "amazon" / "toys", help="a P5 split with titles")
    ap.add_argument("--category", default="toys")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default runs/ranker-<tier>-<category>)")
    ap.add_argument("--users", type=int, default=None, help="test users (default: the tier's)")
    ap.add_argument("--valid-users", type=int, default=None, help="validation users (default: the tier's)")
    ap.add_argument("--steps", type=int, default=None, help="LLM optimizer steps (default: the tier's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--listwise-head",
        choices=["labels", "pointer"],
        default="labels",
        help="the shared checkpoint's listwise.head (bench/listwise_heads.py compares them); RSLLM part: labels",
    )
    ap.add_argument(
        "--skip",
        default="",
        help=f"comma-separated: ids (the RSLLM part), or validation scorers by name ({', '.join(SCORERS)})",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="results file under bench/results (default: quality-ranker-<tier>[-<category>].json)",
    )
    return ap.parse_args()


def retrievers(run: Runner, a, tier: dict, R: Path, P: Path) -> None:
    """textualize, entities and the three SASRec runs (validation, test, training positions)."""
    run.run(
        "textualize",
        [
            "textualize",
            "amazon",
            "--category",
            a.category,
            "--data-dir",
            a.data_dir,
            "--out",
            R,
            "--seed",
            a.seed,
            "--quiet",
        ],
        R / "manifest.json",
    )
    run.run("build-entities", ["build-entities", "--data", R, "--quiet"], R / "entities.parquet")
    cap = ["--max-minutes", tier["sasrec_minutes"]] if "sasrec_minutes" in tier else []
    for split, k in (("valid", 100), ("test", 100), ("train", 50)):
        refit = ["--refit"] if split != "train" else []
        out = P / f"sasrec-{split}.parquet"
        run.run(
            f"sasrec {split}",
            [
                "baseline",
                "sasrec",
                "--data",
                R,
                "--split",
                split,
                *refit,
                "--top-k",
                k,
                "--seed",
                a.seed,
                *cap,
                "--out",
                out,
                "--quiet",
            ],
            out,
        )


def mix_sets(cands: Path, k: int) -> list[str]:
    """The `--set` flags of the protocol's training mix: the paper's objective, rerank prompts (w
    0.2) and listwise examples (w 0.4) on the retriever's lists for training positions (`cands`)."""
    sets = {"rerank.candidates": cands, "rerank.k": 20, "rerank.weight": 0.2}
    sets |= {"listwise.candidates": cands, "listwise.k": k, "listwise.weight": 0.4}
    return [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]


def train(run: Runner, a, tier: dict, R: Path, P: Path, work: Path, ids: bool) -> dict[str, Path]:
    """The shared LLM checkpoint (paper objective + rerank prompts + listwise examples) and, with
    `ids`, an RSLLM stage 2 from it whose listwise candidates carry their ID tokens."""
    steps = a.steps or tier["steps"]
    mix = mix_sets(P / "sasrec-train.parquet", tier["k"])
    head = ["--set", f"listwise.head={a.listwise_head}"] if a.listwise_head != "labels" else []
    ckpt = work / "ckpt"
    run.run(
        "pretrain",
        [
            "pretrain",
            "--data",
            R,
            "--config",
            ROOT / tier["recipe"],
            "--out",
            ckpt,
            "--max-steps",
            steps,
            "--seed",
            a.seed,
            "--quiet",
            *mix,
            *head,
        ],
        ckpt / "train_state",
    )
    out = {"text": ckpt}
    if ids:
        rs = work / "ckpt-rsllm"
        emb = R / "baselines" / "sasrec.safetensors"
        run.run(
            "pretrain rsllm",
            [
                "pretrain",
                "--data",
                R,
                "--config",
                ROOT / tier["recipe"],
                "--out",
                rs,
                "--max-steps",
                steps,
                "--seed",
                a.seed,
                "--quiet",
                *mix,
                "--set",
                f"hybrid.embeddings={emb}",
                "--set",
                f"hybrid.init_checkpoint={ckpt}",
                "--set",
                "listwise.candidate_ids=true",
            ],
            rs / "train_state",
        )
        out["rsllm"] = rs
    return out


def rerank(
    run: Runner, R: Path, ckpt: Path, split: str, ids: Path, retr: Path, k: int, flags: list[str], out: Path, batch: int
) -> Path:
    """One W = 1 rerank of the retriever's top k (the LLM's scores for every candidate are kept)."""
    args = ["infer", "--data", R, "--checkpoint", ckpt, "--split", split, "--prompt-ids", ids]
    args += ["--candidates-from", retr, "--rerank-k", k, "--fusion", 1, *flags, "--exclude-history"]
    args += ["--top-k", 10, "--batch-size", batch, "--seed", 0, "--out", out, "--quiet"]
    run.run(f"rerank {out.stem}", args, out)
    return out


def validate(
    run: Runner, R: Path, P: Path, work: Path, ckpts: dict, tier: dict, skip: set, f_valid: Path
) -> tuple[dict, dict]:
    """Every scorer on the validation prompts at W = 1, then `recsys tune` over all of them."""
    files: dict[str, Path] = {}
    retr = P / "sasrec-valid.parquet"
    for name, flags in SCORERS.items():
        if name not in skip:
            files[name] = rerank(
                run,
                R,
                ckpts["text"],
                "valid",
                f_valid,
                retr,
                tier["k"],
                flags,
                P / f"valid-{name}-k{tier['k']}.parquet",
                tier["batch"],
            )
    for name, flags in ID_SCORERS.items() if "rsllm" in ckpts else ():
        files[name] = rerank(
            run,
            R,
            ckpts["rsllm"],
            "valid",
            f_valid,
            retr,
            tier["k"],
            flags,
            P / f"valid-{_slug(name)}-k{tier['k']}.parquet",
            tier["batch"],
        )
    tuning = work / "tuning.json"
    if not tuning.exists():
        # the RSLLM run without ID tokens is a measurement only: as a scorer it is "listwise" again
        tuned = [f for name, f in files.items() if name != "rsllm listwise, no ids"]
        run.run("tune", ["tune", "--data", R, "--rerank", *tuned, "--retriever", retr, "--out", tuning, "--quiet"])
    return files, json.loads(tuning.read_text())


def test_lists(run: Runner, R: Path, P: Path, ckpts: dict, tier: dict, tuning: dict, f_test: Path) -> dict[str, object]:
    """The test split, once: the best validation scorer at its K (W = 1), and from that one run the
    chosen fusion (the rule's) and the best validation row's fusion."""
    best, chosen = tuning["best"], tuning["chosen"]
    retr = P / "sasrec-test.parquet"
    name = next(n for n, f in _valid_files(P, tier).items() if str(Path(f).resolve()) == best["file"])
    ckpt = ckpts["rsllm"] if name.startswith("rsllm") else ckpts["text"]
    flags = {**SCORERS, **ID_SCORERS}[name]
    f = rerank(
        run,
        R,
        ckpt,
        "test",
        f_test,
        retr,
        int(best["k"]),
        flags,
        P / f"test-{_slug(name)}-k{best['k']}.parquet",
        tier["batch"],
    )
    lists: dict[str, object] = {
        "sasrec": retr,
        f"{name} alone (W = 1)": f,
        f"{name} fused, best valid W = {best['w']}": fused_rankings(R, f, retr, float(best["w"]), "test"),
    }
    lists[f"chosen by the rule (W = {chosen['w']})"] = (
        fused_rankings(R, f, retr, float(chosen["w"]), "test") if chosen["w"] else retr
    )
    return lists


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace(",", "").replace("+", "-")


def _valid_files(P: Path, tier: dict) -> dict[str, Path]:
    found = {n: P / f"valid-{_slug(n)}-k{tier['k']}.parquet" for n in [*SCORERS, *ID_SCORERS]}
    return {n: f for n, f in found.items() if f.exists()}


def main() -> None:
    a = parse()
    tier = dict(TIERS[a.tier])
    if a.tier == "gpu":
        import torch

        if not torch.cuda.is_available():
            sys.exit("bench/quality.py --tier gpu needs a CUDA GPU (torch.cuda.is_available() is False)")
    skip = set(filter(None, a.skip.split(",")))
    work = (a.work or ROOT / "runs" / f"ranker-{a.tier}-{a.category}").resolve()
    run, t0 = LockedRunner(work), time.perf_counter()
    R, P = work / "data", work / "predictions"
    P.mkdir(parents=True, exist_ok=True)
    retrievers(run, a, tier, R, P)
    valid_users = qlib.sample_users(R, a.valid_users or tier["valid_users"], a.seed + 1)
    f_valid = qlib.write_ids(work / "valid-ids.txt", qlib.prompt_ids(R, valid_users, "valid", "sequential", True))
    users = qlib.sample_users(R, a.users or tier["users"], a.seed)
    groups = {
        "seen": qlib.prompt_ids(R, users, "test", "sequential", True),
        "unseen": qlib.prompt_ids(R, users, "test", "sequential", False),
    }
    f_test = qlib.write_ids(work / "test-ids.txt", groups["seen"] + groups["unseen"])
    ckpts = train(run, a, tier, R, P, work, ids="ids" not in skip)
    files, tuning = validate(run, R, P, work, ckpts, tier, skip, f_valid)
    valid = valid_table(R, files, P / "sasrec-valid.parquet", f_valid, a.seed)
    lists = test_lists(run, R, P, ckpts, tier, tuning, f_test)
    table = test_table(R, lists, groups, a.seed)
    speed_file = qlib.HERE / "results" / "listwise-speed.json"
    speed = json.loads(speed_file.read_text()) if speed_file.exists() else None
    checks_ = checks(R, valid, table, lists, groups["seen"] + groups["unseen"], speed)
    result = {
        "stage": "quality-ranker",
        "tier": a.tier,
        "machine": qlib.machine(),
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "setup": {
            "data_dir": str(a.data_dir),
            "seed": a.seed,
            "valid_prompts": len(read_ids(f_valid)),
            "test_users": len(users),
            "recipe": tier["recipe"],
            "steps": a.steps or tier["steps"],
            "k": tier["k"],
            "skipped": sorted(skip),
            "listwise_head": a.listwise_head,
            "history_excluded": True,
        },
        "valid": valid,
        "tuning": {k: tuning[k] for k in ("best", "gain", "chosen", "outcome", "rule", "rows")},
        "results": table,
        "checks": checks_,
        "seconds": run.seconds,
        "total_seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }
    name = a.out or f"quality-ranker-{a.tier}{'' if a.category == 'toys' else '-' + a.category}.json"
    report(table, valid, checks_, tuning)
    print(f"wrote {qlib.write_result(name, result)}")


if __name__ == "__main__":
    main()
