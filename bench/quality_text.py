"""Rating, explanation and review on real raw reviews, and zero-shot direct recommendation on
full Toys: the families bench/quality.py (sequential) does not cover.

    python bench/quality_text.py                              # MI 2014 + Gift Cards 2018 + Toys zero-shot
    python bench/quality_text.py --only gift --steps 20 --users 50   # smaller
Writes bench/results/quality-text-cpu.json and one PNG per dataset and family (bench/results/quality-text-<name>-<family>.png).

Protocol (fixed before any test figure was seen):
* the full review file is textualized (5-core users); MF, global-mean, user-mean and the
  retrieval baseline train on the training part (every valid/test (user, item) pair left out);
* the embedded SmolLM2-135M gets `--steps` LoRA steps of the CPU recipe on all training data;
* `--users` test users drawn with --seed; per user one seen and one unseen rating prompt
  (star prompts, not like/dislike), a seen and an unseen explanation prompt without the feature
  hint and the same with it, and a seen and an unseen review-summary prompt;
* every method answers the same prompts (`score --common-prompts`); the base model without an
  adapter (`--checkpoint none`) is the zero-shot row; metrics standard and --p5-compatible;
* zero-shot direct: the base model ranks each sampled full-Toys test user's 100 candidates
  (one seen rank prompt per user) against popularity and a seeded random order.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import polars as pl

import qlib
from qlib import ROOT, SHARED, Runner

DATASETS = {
    "mi": ("musical_instruments", SHARED / "amazon" / "musical_instruments"),
    "gift": ("gift_cards", SHARED / "amazon" / "gift_cards"),
}
RECIPE = ROOT / "recipes" / "pretrain" / "smollm2-cpu.yaml"
HINT = ["explanation-3", "explanation-5", "explanation-7"]  # explain_feature templates (seen)
NO_HINT = ["explanation-1", "explanation-2", "explanation-4", "explanation-6", "explanation-8"]
SUMMARY = ["review-1", "review-2", "review-3", "review-6", "review-8", "review-9"]


def _score(run: Runner, R: Path, files: list[Path], task: str, p5: bool, plot: Path | None = None) -> list[dict]:
    args = ["score", "--data", R, "--task", task, "--common-prompts", "--compare", *files]
    if p5:
        args.append("--p5-compatible")
    if plot is not None:
        args += ["--plot", plot]
    return run.json(f"score {task}{' p5' if p5 else ''} {R.parent.name}", args)["rows"]


def _text_dataset(run: Runner, name: str, a, work: Path) -> dict:
    category, raw = DATASETS[name]
    R, C, P = work / name / "R", work / name / "ckpt", work / name / "pred"
    run.run(f"textualize {name}", ["textualize", "amazon", "--category", category, "--data-dir", raw, "--out", R, "--seed", a.seed, "--quiet"], R / "manifest.json")
    run.run(f"entities {name}", ["build-entities", "--data", R, "--quiet"], R / "entities.parquet")
    base = {"mf": ["mf", "--seed", a.seed], "global-mean": ["mean", "--by", "global"], "user-mean": ["mean", "--by", "user"], "retrieval": ["retrieval"]}
    for method, args in base.items():
        run.run(f"baseline {method} {name}", ["baseline", *args, "--data", R, "--out", P / f"{method}.parquet", "--quiet"], P / f"{method}.parquet")
    run.run(f"pretrain {name}", ["pretrain", "--data", R, "--config", RECIPE, "--out", C, "--max-steps", a.steps, "--seed", a.seed, "--quiet"],
            C / "recsys_checkpoint.json")
    users = qlib.sample_users(R, a.users, a.seed)
    sets = {
        "rating": qlib.prompt_ids(R, users, "test", "rating", True) + qlib.prompt_ids(R, users, "test", "rating", False),
        "explanation-no-hint": qlib.prompt_ids(R, users, "test", "explanation", True, NO_HINT)
        + qlib.prompt_ids(R, users, "test", "explanation", False, ["explanation-9"]),
        "explanation-hint": qlib.prompt_ids(R, users, "test", "explanation", True, HINT)
        + qlib.prompt_ids(R, users, "test", "explanation", False, ["explanation-10"]),
        "review": qlib.prompt_ids(R, users, "test", "review", True, SUMMARY) + qlib.prompt_ids(R, users, "test", "review", False, SUMMARY),
    }
    out: dict = {"users": len(users), "steps": a.steps, "prompts": {k: len(v) for k, v in sets.items()}, "tables": {}}
    for subset, ids in sets.items():
        if not ids:
            continue
        idfile = qlib.write_ids(P / subset / "ids.txt", ids)
        files = []
        for method, ckpt in (("recsysllm", C), ("zero-shot", "none")):
            dest = P / subset / f"{method}.parquet"
            run.run(f"infer {method} {subset} {name}", ["infer", "--data", R, "--checkpoint", ckpt, "--split", "test", "--prompt-ids", idfile,
                                                         "--max-new-tokens", a.max_new_tokens, "--batch-size", 8, "--out", dest, "--quiet"], dest)
            files.append(dest)
        family = subset.split("-")[0]
        files += [P / f"{m}.parquet" for m in (("mf", "global-mean", "user-mean") if family == "rating" else ("retrieval",))]
        plot = ROOT / "bench" / "results" / f"quality-text-{name}-{subset}.png"  # the methods side by side, one PNG per family
        out["tables"][subset] = {"standard": _score(run, R, files, family, False, plot=plot), "p5_compatible": _score(run, R, files, family, True)}
    return out


def _zero_shot_direct(run: Runner, a, work: Path) -> dict:
    R, P = work / "toys" / "R", work / "toys" / "pred"
    run.run("textualize toys", ["textualize", "amazon", "--category", "toys", "--data-dir", SHARED / "amazon" / "toys", "--out", R, "--seed", a.seed, "--quiet"],
            R / "manifest.json")
    run.run("entities toys", ["build-entities", "--data", R, "--quiet"], R / "entities.parquet")
    users = qlib.sample_users(R, 2000, a.seed)[: a.direct_users]  # the first of the quality bench's 2,000 users
    ids = qlib.prompt_ids(R, users, "test", "direct", True, ["direct-1", "direct-2", "direct-5", "direct-7"])
    idfile = qlib.write_ids(P / "ids.txt", ids)
    zs = P / "zero-shot.parquet"
    run.run("infer zero-shot direct", ["infer", "--data", R, "--checkpoint", "none", "--split", "test", "--prompt-ids", idfile, "--top-k", 10,
                                       "--out", zs, "--quiet"], zs)
    pop = P / "popularity.parquet"
    run.run("baseline popularity toys", ["baseline", "popularity", "--data", R, "--out", pop, "--top-k", 100, "--quiet"], pop)
    rnd = P / "random.parquet"
    prompts = pl.read_parquet(R / "prompts.parquet", columns=["prompt_id", "family", "template_id", "seen", "candidates"]).filter(pl.col("prompt_id").is_in(ids))
    rng = random.Random(a.seed)
    lists = [rng.sample(list(c), len(c)) for c in prompts["candidates"].to_list()]
    pl.DataFrame({"prompt_id": prompts["prompt_id"], "family": prompts["family"], "template_id": prompts["template_id"], "seen": prompts["seen"],
                  "output": [x[0] for x in lists], "ranked": lists, "scores": [[0.0] * len(x) for x in lists], "valid": [True] * len(lists)}).write_parquet(rnd)
    rows = _score(run, R, [zs, pop, rnd], "direct", False, plot=ROOT / "bench" / "results" / "quality-text-toys-direct.png")
    return {"users": len(users), "prompts": len(ids), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("mi", "gift", "toys"), nargs="*", default=["mi", "gift", "toys"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--direct-users", type=int, default=300)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "quality-text")
    a = ap.parse_args()
    run = Runner(a.work)
    result = {"stage": "quality-text", "machine": qlib.machine(), "settings": {k: str(v) for k, v in vars(a).items()}, "datasets": {}}
    for name in a.only:
        result["datasets"][name] = _zero_shot_direct(run, a, a.work) if name == "toys" else _text_dataset(run, name, a, a.work)
    result["seconds"] = run.seconds
    result["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    dest = qlib.write_result("quality-text-cpu.json", result)
    print(json.dumps({k: v for k, v in result.items() if k != "datasets"}, indent=2), file=sys.stderr)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
