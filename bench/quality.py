"""Quality on real data: the whole pipeline on the P5 Toys split against popularity and SASRec.

    python bench/quality.py --tier cpu     # 2,000-user subset, embedded SmolLM2, ~50 min on a quiet 2-core machine
    python bench/quality.py --tier gpu     # full Toys, recipes/pretrain/qwen2.5-0.5b-gpu.yaml (needs CUDA)
    python bench/quality.py --tier cpu --toys ../shared/data/amazon/toys --eval-users 300

Every stage is the `recsys` command a user would type (textualize -> build-entities ->
pretrain -> infer -> baseline -> score); a stage whose output already exists under --work is
reused, so an interrupted run continues (--fresh starts over). The model answers the test
prompts of the first --eval-users users (sequential: all-item ranking by constrained beam
search; direct: 1 of 100 candidates, the rank templates only); popularity and SASRec answer every test prompt and
`score --common-prompts` compares all three on exactly the model's prompts. Nothing is tuned
on the test split. Results: bench/results/quality-<tier>.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOYS = ROOT.parent / "shared" / "data" / "amazon" / "toys"
TIERS = {
    "cpu": {"users": 2000, "eval_users": 500, "recipe": "recipes/pretrain/quality-cpu.yaml", "batch": 8},
    "gpu": {"users": None, "eval_users": None, "recipe": "recipes/pretrain/qwen2.5-0.5b-gpu.yaml", "batch": 32},
}
PAPER_TOYS = {  # RecSysLLM paper, Table 4 (sequential, Toys): HR@5, NDCG@5, HR@10, NDCG@10
    "RecSysLLM seen": [0.0676, 0.0583, 0.0712, 0.0596],
    "RecSysLLM unseen": [0.0630, 0.0523, 0.0691, 0.0540],
    "SASRec": [0.0463, 0.0306, 0.0675, 0.0374],
}


def sh(stage: str, args: list[str], log: Path) -> str:
    """Run one `recsys` command; stdout is returned, stderr (progress, logs) goes to the log file
    and to our stderr. Exits with the command's code on failure."""
    t = time.perf_counter()
    print(f"== {stage}: recsys {' '.join(args)}", file=sys.stderr, flush=True)
    with log.open("a") as err:
        err.write(f"\n== {stage}: recsys {' '.join(args)}\n")
        err.flush()
        proc = subprocess.run([sys.executable, "-m", "recsys_cli.main", *args], stdout=subprocess.PIPE, stderr=err, text=True)
    if proc.returncode != 0:
        sys.exit(f"{stage} failed (exit {proc.returncode}); see {log}")
    print(f"   {stage}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    return proc.stdout


def subset(toys: Path, out: Path, n_users: int | None, seed: int) -> int:
    """A P5-format copy of the split with n_users users drawn with the seed (all when None)."""
    out.mkdir(parents=True, exist_ok=True)
    lines = (toys / "sequential_data.txt").read_text().splitlines()
    keep = sorted(random.Random(seed).sample(range(len(lines)), n_users)) if n_users else range(len(lines))
    tmp = out / "sequential_data.txt.tmp"
    tmp.write_text("".join(lines[i] + "\n" for i in keep))
    tmp.replace(out / "sequential_data.txt")
    for name in ("datamaps.json", "meta.jsonl"):
        if not (out / name).exists():
            shutil.copyfile(toys / name, out / name)
    return len(keep)


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def pick(rows: list[dict], method: str, family: str, seen: bool) -> dict:
    for r in rows:
        if r["method"] == method and r["family"] == family and r["seen"] == seen and r["kind"] == "ranking":
            return r["metrics"]
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", choices=sorted(TIERS), default="cpu")
    ap.add_argument("--toys", type=Path, default=TOYS, help="P5 Toys directory (sequential_data.txt, datamaps.json, meta.jsonl)")
    ap.add_argument("--work", type=Path, default=None, help="working directory (default runs/quality-<tier>)")
    ap.add_argument("--users", type=int, default=None, help="users in the subset (tier default; 0 = all)")
    ap.add_argument("--eval-users", type=int, default=None, help="users whose test prompts the model answers (tier default; 0 = all)")
    ap.add_argument("--max-steps", type=int, default=None, help="override the recipe's step budget")
    ap.add_argument("--beams", type=int, default=20, help="beams for sequential all-item ranking")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="start over instead of reusing finished stages")
    a = ap.parse_args()
    tier = TIERS[a.tier]
    if a.tier == "gpu":
        import torch

        if not torch.cuda.is_available():
            sys.exit("the gpu tier needs CUDA (torch.cuda.is_available() is False)")
    n_users = tier["users"] if a.users is None else (a.users or None)
    eval_users = tier["eval_users"] if a.eval_users is None else (a.eval_users or None)
    work = (a.work or ROOT / "runs" / f"quality-{a.tier}").resolve()
    if a.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    data, ckpt, preds = work / "data", work / "ckpt", work / "predictions"
    preds.mkdir(exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    times: dict[str, float] = {}

    def timed(stage: str, done: Path, args: list[str]) -> None:
        if done.exists():
            print(f"== {stage}: reusing {done}", file=sys.stderr)
            return
        t = time.perf_counter()
        sh(stage, args, log)
        times[stage] = round(time.perf_counter() - t, 1)

    t0 = time.perf_counter()
    kept = subset(a.toys, work / "source", n_users, a.seed)
    timed("textualize", data / "manifest.json", ["textualize", "amazon", "--category", "toys", "--data-dir", str(work / "source"),
                                                "--out", str(data), "--seed", str(a.seed), "--quiet"])
    timed("build-entities", data / "entities.parquet", ["build-entities", "--data", str(data), "--quiet"])
    steps = [] if a.max_steps is None else ["--max-steps", str(a.max_steps)]
    timed("pretrain", ckpt / "quality-pretrain-done", ["pretrain", "--data", str(data), "--config", str(ROOT / tier["recipe"]),
                                                    "--out", str(ckpt), "--seed", str(a.seed), *steps])
    (ckpt / "quality-pretrain-done").touch()  # the run reached the recipe's step budget (a stopped run exits non-zero)
    limit = [] if eval_users is None else ["--users", str(eval_users)]
    model_preds = {}
    for family, extra in (("sequential", ["--beams", str(a.beams)]), ("direct", ["--kind", "rank"])):
        out = preds / f"recsysllm-{family}.parquet"
        timed(f"infer {family}", out, ["infer", "--data", str(data), "--checkpoint", str(ckpt), "--split", "test", "--family", family,
                                      *limit, "--top-k", "10", *extra, "--batch-size", str(tier["batch"]), "--out", str(out), "--quiet"])
        model_preds[family] = out
    timed("popularity", preds / "popularity.parquet", ["baseline", "popularity", "--data", str(data), "--out", str(preds / "popularity.parquet"), "--quiet"])
    timed("sasrec", preds / "sasrec.parquet", ["baseline", "sasrec", "--data", str(data), "--out", str(preds / "sasrec.parquet"),
                                               "--seed", str(a.seed), "--quiet"])
    table: dict[str, dict] = {}
    for family, out in model_preds.items():
        raw = sh(f"score {family}", ["score", "--data", str(data), "--task", family, "--common-prompts", "--json", "--compare",
                                    str(out), str(preds / "popularity.parquet"), str(preds / "sasrec.parquet")], log)
        rows = json.loads(raw)
        rows = rows["rows"] if isinstance(rows, dict) else rows
        names = {"recsysllm": out.stem, "popularity": "popularity", "sasrec": "sasrec"}
        for label, name in names.items():
            for seen in (True, False):
                m = pick(rows, name, family, seen)
                if m:
                    table.setdefault(family, {})[f"{label} {'seen' if seen else 'unseen'}"] = m
    checks = []
    for seen in ("seen", "unseen"):
        for family, metric in (("sequential", "HR@10"), ("direct", "HR@1")):
            ours = table.get(family, {}).get(f"recsysllm {seen}", {}).get(metric)
            pop = table.get(family, {}).get(f"popularity {seen}", {}).get(metric)
            if ours is not None and pop is not None:
                checks.append({"name": f"{family} {metric} ({seen} templates) beats popularity", "ours": ours, "popularity": pop, "ok": ours > pop})
    with open(data / "manifest.json") as f:
        manifest = json.load(f)
    result = {
        "stage": "quality", "tier": a.tier, "machine": machine(),
        "setup": {"source": str(a.toys), "subset_users": kept, "subset_seed": a.seed, "eval_users": eval_users,
                  "recipe": tier["recipe"], "max_steps_override": a.max_steps, "sequential_beams": a.beams,
                  "item_scoring": "constrained", "history_excluded": False, "rows": manifest.get("rows")},
        "seconds": times, "total_seconds": round(time.perf_counter() - t0, 1),
        "results": table, "checks": checks,
    }
    if a.tier == "gpu":
        result["paper_table4_toys"] = {"metrics": ["HR@5", "NDCG@5", "HR@10", "NDCG@10"], **PAPER_TOYS}
    metrics_file = ckpt / "metrics.jsonl"  # training loss, first and last step
    if metrics_file.exists():
        losses = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
        result["training"] = {"first": losses[0] if losses else None, "last": losses[-1] if losses else None}
    dest = HERE / "results" / f"quality-{a.tier}.json"
    tmp = dest.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    tmp.replace(dest)
    for family, rows in table.items():
        print(f"\n{family} (test, {eval_users or 'all'} users)")
        keys = ["HR@1", "HR@5", "NDCG@5", "HR@10", "NDCG@10"]
        print(f"{'method':<22}" + "".join(f"{k:>9}" for k in keys))
        for name, m in rows.items():
            print(f"{name:<22}" + "".join(f"{m.get(k, float('nan')):>9.4f}" for k in keys))
    for c in checks:
        print(f"{'ok  ' if c['ok'] else 'MISS'} {c['name']}: {c['ours']:.4f} vs {c['popularity']:.4f}")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
