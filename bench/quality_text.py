"""Rating, explanation and review on real raw reviews, and zero-shot direct recommendation on
full Toys: the families bench/quality.py (sequential) does not cover.

    python bench/quality_text.py                              # MI 2014 + Gift Cards 2018 + Toys zero-shot
    python bench/quality_text.py --only gift --steps 20 --users 50   # smaller
Writes bench/results/quality-text-cpu.json and one PNG per dataset and family
(bench/results/quality-text-<name>-<family>.png).

Protocol (fixed before any test figure was seen):
* the full review file is textualized (5-core users); MF, global-mean, user-mean and the
  retrieval baseline train on the training part (every valid/test (user, item) pair left out);
* the embedded SmolLM2-135M gets `--steps` LoRA steps of the CPU recipe on all training data;
* `--users` test users drawn with --seed; per user one seen and one unseen rating prompt
  (star prompts, not like/dislike), a seen and an unseen explanation prompt without the feature
  hint and the same with it, and a seen and an unseen review-summary prompt;
* rating rows: the expected star (`recsysllm`, `zero-shot`), its argmax, the old greedy text + parser
  (`-generate`), and the expected star after the temperature + star-bias calibration fitted on
  VALIDATION star prompts of --calib-users users (`-calibrated`, `infer --rating-calibration`);
* explanation and review rows: the adapter with infer's decoding defaults (inference/textgen.py,
  chosen on validation by bench/text_decoding.py), the same with no repetition penalty and the
  whole adapter (`recsysllm-n2-whole`, the defaults before), the same adapter with `--text-decoding plain`
  (the decoding before issue 29), the base model with the defaults; `text_checks` counts each
  file's answers that are empty or hold no letter or digit;
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
from common import RESULTS, loadavg
from qlib import ROOT, SHARED, Runner

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.predictions import read_predictions, write_predictions
from recsys_cli.inference import textgen

DATASETS = {
    "mi": ("musical_instruments", SHARED / "amazon" / "musical_instruments"),
    "gift": ("gift_cards", SHARED / "amazon" / "gift_cards"),
}
RECIPE = ROOT / "recipes" / "pretrain" / "smollm2-cpu.yaml"
HINT = ["explanation-3", "explanation-5", "explanation-7"]  # explain_feature templates (seen)
NO_HINT = ["explanation-1", "explanation-2", "explanation-4", "explanation-6", "explanation-8"]
SUBSETS = ("rating", "explanation-no-hint", "explanation-hint", "review")
SUMMARY = ["review-1", "review-2", "review-3", "review-6", "review-8", "review-9"]


def _score(run: Runner, R: Path, files: list[Path], task: str, p5: bool, plot: Path | None = None) -> list[dict]:
    args = ["score", "--data", R, "--task", task, "--common-prompts", "--compare", *files]
    if p5:
        args.append("--p5-compatible")
    if plot is not None:
        args += ["--plot", plot]
    return run.json(f"score {task}{' p5' if p5 else ''} {R.parent.name}", args)["rows"]


def _rating_variants(run: Runner, R: Path, ckpt, P: Path, idfile: Path, method: str, name: str, a) -> list[Path]:
    """The other rating scorings of one model (the default file is the expected star): the argmax, the old
    greedy text + parser, and the expected star after the calibration fitted on VALIDATION rating prompts
    (star prompts of up to --calib-users users, `infer --rating-calibration`; test is never used to fit)."""
    users = qlib.sample_users(R, a.calib_users, a.seed + 1)
    valid_ids = qlib.write_ids(P / "valid-ids.txt", qlib.prompt_ids(R, users, "valid", "rating", True))
    valid = P / f"{method}-valid.parquet"
    common = ["infer", "--data", R, "--checkpoint", ckpt, "--batch-size", 8, "--quiet"]
    run.run(
        f"infer {method} rating valid {name}",
        [*common, "--split", "valid", "--prompt-ids", valid_ids, "--out", valid],
        valid,
    )
    out = []
    variants = {
        "argmax": ["--rating-scoring", "argmax"],
        "generate": ["--rating-scoring", "generate", "--max-new-tokens", 8],
        "calibrated": ["--rating-calibration", valid],
    }
    for variant, args in variants.items():
        if method == "zero-shot" and variant != "calibrated":
            continue
        dest = P / f"{method}-{variant}.parquet"
        run.run(
            f"infer {method}-{variant} rating {name}",
            [*common, "--split", "test", "--prompt-ids", idfile, *args, "--out", dest],
            dest,
        )
        out.append(dest)
    return out


def rating_diagnostics(R: Path, path: Path) -> dict:
    """Per file: gold and predicted means, the mean star distribution (scores p_1..p_5), and the confusion
    of gold star (rows) against the predicted star rounded to the nearest (columns), seen and unseen."""
    gold = pl.read_parquet(R / schemas.PROMPTS, columns=["prompt_id", "target", "seen"])
    df = read_predictions(path, None).select("prompt_id", "output", "scores").join(gold, on="prompt_id")
    df = df.filter(pl.col("target").is_in(["1", "2", "3", "4", "5"]))
    out = {}
    for seen in (True, False):
        d = df.filter(pl.col("seen") == seen)
        pred = d["output"].cast(pl.Float64, strict=False)
        g = d["target"].cast(pl.Int64)
        conf = [[0] * 5 for _ in range(5)]
        for gi, pi in zip(g.to_list(), pred.to_list()):
            if pi is not None:
                conf[gi - 1][min(4, max(0, int(round(pi)) - 1))] += 1
        dist = [s for s in d["scores"].to_list() if s is not None and len(s) == 5]
        out["seen" if seen else "unseen"] = {
            "n": d.height,
            "unparsable": int(pred.is_null().sum()),
            "gold_mean": g.mean(),
            "pred_mean": pred.mean(),
            "mean_p": [sum(s[i] for s in dist) / len(dist) for i in range(5)] if dist else None,
            "confusion": conf,
        }
    return out


def _infer_methods(run: Runner, R: Path, C: Path, P: Path, idfile: Path, subset: str, name: str, a) -> list[Path]:
    """The adapter and the base model (zero-shot) answer the subset's prompts with infer's defaults;
    text subsets add the adapter with the decoding from before issue 29 (`--text-decoding plain`)
    and with the defaults of stops 35-36 (bigram blocking and a minimum length, but no repetition
    penalty and the whole adapter: `recsysllm-n2-whole`)."""
    methods: list[tuple[str, object, list]] = [("recsysllm", C, []), ("zero-shot", "none", [])]
    if subset != "rating":
        methods.insert(1, ("recsysllm-plain", C, ["--text-decoding", "plain"]))
        methods.insert(2, ("recsysllm-n2-whole", C, ["--repetition-penalty", "0", "--text-adapter-scale", "1"]))
    files = []
    for method, ckpt, extra in methods:
        dest = P / f"{method}.parquet"
        args = ["infer", "--data", R, "--checkpoint", ckpt, "--split", "test", "--prompt-ids", idfile]
        args += ["--max-new-tokens", a.max_new_tokens, "--batch-size", 8, *extra, "--out", dest, "--quiet"]
        run.run(f"infer {method} {subset} {name}", args, dest)
        files.append(dest)
        if subset == "rating":
            files += _rating_variants(run, R, ckpt, P, idfile, method, name, a)
    return files


def text_checks(path: Path) -> dict:
    """Per text file: answers, those that are empty or hold no letter or digit, and the mean word count."""
    outs = [o or "" for o in read_predictions(path, None)["output"].to_list()]
    return {
        "n": len(outs),
        "empty_or_punctuation_only": sum(not textgen.has_word(o) for o in outs),
        "mean_words": round(sum(len(o.split()) for o in outs) / max(len(outs), 1), 2),
    }


def _text_dataset(run: Runner, name: str, a, work: Path) -> dict:
    category, raw = DATASETS[name]
    R, C, P = work / name / "R", work / name / "ckpt", work / name / "pred"
    run.run(
        f"textualize {name}",
        ["textualize", "amazon", "--category", category, "--data-dir", raw, "--out", R, "--seed", a.seed, "--quiet"],
        R / schemas.MANIFEST,
    )
    run.run(f"entities {name}", ["build-entities", "--data", R, "--quiet"], R / schemas.ENTITIES)
    base = {
        "mf": ["mf", "--seed", a.seed],
        "global-mean": ["mean", "--by", "global"],
        "user-mean": ["mean", "--by", "user"],
        "retrieval": ["retrieval"],
    }
    for method, args in base.items():
        run.run(
            f"baseline {method} {name}",
            ["baseline", *args, "--data", R, "--out", P / f"{method}.parquet", "--quiet"],
            P / f"{method}.parquet",
        )
    run.run(
        f"pretrain {name}",
        ["pretrain", "--data", R, "--config", RECIPE, "--out", C, "--max-steps", a.steps, "--seed", a.seed, "--quiet"],
        C / schemas.CKPT_CONFIG,
    )
    users = qlib.sample_users(R, a.users, a.seed)
    sets = {
        "rating": qlib.prompt_ids(R, users, "test", "rating", True)
        + qlib.prompt_ids(R, users, "test", "rating", False),
        "explanation-no-hint": qlib.prompt_ids(R, users, "test", "explanation", True, NO_HINT)
        + qlib.prompt_ids(R, users, "test", "explanation", False, ["explanation-9"]),
        "explanation-hint": qlib.prompt_ids(R, users, "test", "explanation", True, HINT)
        + qlib.prompt_ids(R, users, "test", "explanation", False, ["explanation-10"]),
        "review": qlib.prompt_ids(R, users, "test", "review", True, SUMMARY)
        + qlib.prompt_ids(R, users, "test", "review", False, SUMMARY),
    }
    out: dict = {"users": len(users), "steps": a.steps, "prompts": {k: len(v) for k, v in sets.items()}, "tables": {}}
    for subset, ids in sets.items():
        if not ids or subset not in a.families:
            continue
        idfile = qlib.write_ids(P / subset / "ids.txt", ids)
        files = _infer_methods(run, R, C, P / subset, idfile, subset, name, a)
        family = subset.split("-")[0]
        files += [
            P / f"{m}.parquet" for m in (("mf", "global-mean", "user-mean") if family == "rating" else ("retrieval",))
        ]
        plot = (
            RESULTS / f"{Path(a.out).stem.removesuffix('-cpu')}-{name}-{subset}.png"
        )  # the methods side by side, one PNG per family
        if family == "rating":
            out["rating_diagnostics"] = {f.stem: rating_diagnostics(R, f) for f in files}
        else:
            out.setdefault("text_checks", {})[subset] = {
                f.stem: text_checks(f) for f in files if f.parent.name == subset
            }
        out["tables"][subset] = {
            "standard": _score(run, R, files, family, False, plot=plot),
            "p5_compatible": _score(run, R, files, family, True),
        }
    return out


def _random_order(R: Path, ids: list[str], seed: int, rnd: Path) -> Path:
    """Write the prompts' candidates in a seeded random order as a predictions file at `rnd`."""
    prompts = pl.read_parquet(
        R / schemas.PROMPTS, columns=["prompt_id", "family", "template_id", "seen", "candidates"]
    ).filter(pl.col("prompt_id").is_in(ids))
    rng = random.Random(seed)
    lists = [rng.sample(list(c), len(c)) for c in prompts["candidates"].to_list()]
    random_rows = pl.DataFrame(
        {
            "prompt_id": prompts["prompt_id"],
            "family": prompts["family"],
            "template_id": prompts["template_id"],
            "seen": prompts["seen"],
            "output": [x[0] for x in lists],
            "ranked": lists,
            "scores": [[0.0] * len(x) for x in lists],
            "valid": [True] * len(lists),
        }
    )
    write_predictions(rnd, random_rows)  # the candidates in a seeded random order
    return rnd


def _zero_shot_direct(run: Runner, a, work: Path) -> dict:
    R, P = work / "toys" / "R", work / "toys" / "pred"
    run.run(
        "textualize toys",
        [
            "textualize",
            "amazon",
            "--category",
            "toys",
            "--data-dir",
            SHARED / "amazon" / "toys",
            "--out",
            R,
            "--seed",
            a.seed,
            "--quiet",
        ],
        R / schemas.MANIFEST,
    )
    run.run("entities toys", ["build-entities", "--data", R, "--quiet"], R / schemas.ENTITIES)
    users = qlib.sample_users(R, 2000, a.seed)[: a.direct_users]  # the first of the quality bench's 2,000 users
    ids = qlib.prompt_ids(R, users, "test", "direct", True, ["direct-1", "direct-2", "direct-5", "direct-7"])
    idfile = qlib.write_ids(P / "ids.txt", ids)
    zs = P / "zero-shot.parquet"
    run.run(
        "infer zero-shot direct",
        [
            "infer",
            "--data",
            R,
            "--checkpoint",
            "none",
            "--split",
            "test",
            "--prompt-ids",
            idfile,
            "--top-k",
            10,
            "--out",
            zs,
            "--quiet",
        ],
        zs,
    )
    pop = P / "popularity.parquet"
    run.run(
        "baseline popularity toys",
        ["baseline", "popularity", "--data", R, "--out", pop, "--top-k", 100, "--quiet"],
        pop,
    )
    rnd = _random_order(R, ids, a.seed, P / "random.parquet")
    rows = _score(run, R, [zs, pop, rnd], "direct", False, plot=RESULTS / "quality-text-toys-direct.png")
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
    ap.add_argument(
        "--families",
        nargs="*",
        choices=SUBSETS,
        default=list(SUBSETS),
        help="Only these prompt sets (e.g. rating); the datasets' other stages still run once.",
    )
    ap.add_argument(
        "--calib-users", type=int, default=500, help="Users whose VALIDATION star prompts fit the rating calibration."
    )
    ap.add_argument("--out", default="quality-text-cpu.json", help="Result file name under bench/results.")
    a = ap.parse_args()
    run = Runner(a.work)
    result = {
        "stage": "quality-text",
        "machine": qlib.machine(),
        "settings": {k: str(v) for k, v in vars(a).items()},
        "datasets": {},
    }
    for name in a.only:
        result["datasets"][name] = (
            _zero_shot_direct(run, a, a.work) if name == "toys" else _text_dataset(run, name, a, a.work)
        )
    result["seconds"] = run.seconds
    result["loadavg_end"] = loadavg()
    dest = qlib.write_result(a.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "datasets"}, indent=2), file=sys.stderr)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
