"""Explanation and review decoding before and after issue 29, on VALIDATION prompts: picks the
`recsys infer` text defaults (inference/textgen.py DEFAULT).

    python bench/text_decoding.py                       # Gift Cards 2018, 40 LoRA steps, 24 users
    python bench/text_decoding.py --users 8 --steps 10  # smaller
Writes bench/results/text-decoding.json and prints one table.

Protocol (fixed before any figure was seen):
* the raw Gift Cards 2018 reviews are textualized; the embedded SmolLM2-135M gets `--steps` LoRA
  steps of recipes/pretrain/smollm2-cpu.yaml on the training part (the CPU tier of
  bench/quality_text.py);
* `--users` validation users drawn with --seed; per user the first explanation prompt and the
  first review-summary prompt (templates whose answer is text, not a star);
* every decoding below answers the same prompts with --max-new-tokens 32 (bench/quality_text.py's
  limit): `plain` is the decoding before issue 29 (greedy, nothing blocked);
* metrics per family: BLEU-4 and ROUGE-L (x100, evaluation/metrics.text_metrics, standard
  conventions) and the share of outputs that are empty or hold no letter or digit;
* the chosen decoding (never `plain`) has no such output and the highest ROUGE-L averaged over
  the two families (ties: BLEU-4, then the earlier, cheaper row). Test prompts are not read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import polars as pl
import qlib
from qlib import ROOT, SHARED, Runner

from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.evaluation.metrics import text_metrics
from recsys_cli.inference import textgen

RECIPE = ROOT / "recipes" / "pretrain" / "smollm2-cpu.yaml"
SUMMARY = ["review-1", "review-2", "review-3", "review-6", "review-8", "review-9"]  # text answers (not stars)
FAMILIES = {"explanation": None, "review": SUMMARY}
BEAM4_N3_MIN4 = "--text-decoding beam --text-beams 4 --no-repeat-ngram 3 --min-new-tokens 4".split()
# name -> recsys infer options; `plain` first (the reference), then cheaper before dearer
DECODINGS = {
    "plain (before)": ["--text-decoding", "plain"],
    "greedy n3 min4": ["--text-decoding", "greedy", "--no-repeat-ngram", "3", "--min-new-tokens", "4"],
    "greedy n2 min4": ["--text-decoding", "greedy", "--no-repeat-ngram", "2", "--min-new-tokens", "4"],
    "greedy n3 min8": ["--text-decoding", "greedy", "--no-repeat-ngram", "3", "--min-new-tokens", "8"],
    "beam4 n3 min4 a0": [*BEAM4_N3_MIN4, "--length-penalty", "0"],
    "beam4 n3 min4 a1": [*BEAM4_N3_MIN4, "--length-penalty", "1"],
}


def valid_prompts(R: Path, users: list[str]) -> dict[str, list[str]]:
    return {fam: qlib.prompt_ids(R, users, "valid", fam, True, templates) for fam, templates in FAMILIES.items()}


def degenerate(text: str | None) -> bool:
    return not textgen.has_word(text or "")


def measure(pred: Path, targets: dict[str, str], ids: list[str]) -> dict:
    df = read_predictions(pred, None).select("prompt_id", "output").filter(pl.col("prompt_id").is_in(ids))
    out = dict(zip(df["prompt_id"].to_list(), df["output"].to_list()))
    hyps = pl.Series([out.get(i) or "" for i in ids], dtype=pl.Utf8)
    m = text_metrics(hyps, pl.Series([targets[i] for i in ids], dtype=pl.Utf8), 4)
    return {
        "BLEU-4": round(m["BLEU-4"], 3),
        "ROUGE-L": round(m["ROUGE-L"], 3),
        "n": len(ids),
        "degenerate": sum(degenerate(h) for h in hyps.to_list()),
        "mean_words": round(sum(len(h.split()) for h in hyps.to_list()) / max(len(ids), 1), 2),
    }


def choose(rows: dict[str, dict]) -> str:
    def key(item):
        i, (_, r) = item
        fams = r["families"].values()
        clean = all(f["degenerate"] == 0 for f in fams)
        rouge = sum(f["ROUGE-L"] for f in fams) / len(fams)
        bleu = sum(f["BLEU-4"] for f in fams) / len(fams)
        return (clean, round(rouge, 6), round(bleu, 6), -i)

    candidates = [(i, item) for i, item in enumerate(rows.items()) if DECODINGS[item[0]][1] != "plain"]
    return max(candidates, key=key)[1][0]


def table(rows: dict[str, dict], chosen: str) -> str:
    cols = ("BLEU-4", "ROUGE-L", "degen")
    head = f"{'decoding':<20}" + "".join(f"{f[:6] + ' ' + m:>16}" for f in FAMILIES for m in cols)
    lines = [head + f"{'s/prompt':>10}"]
    for name, r in rows.items():
        cells = "".join(f"{r['families'][f][m]:>16}" for f in FAMILIES for m in ("BLEU-4", "ROUGE-L", "degenerate"))
        lines.append(f"{name + (' *' if name == chosen else ''):<20}{cells}{r['seconds_per_prompt']:>10}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "text-decoding")
    ap.add_argument("--out", default="text-decoding.json", help="Result file name under bench/results.")
    a = ap.parse_args()
    started = time.perf_counter()
    run = Runner(a.work)
    R, C = a.work / "gift" / "R", a.work / "gift" / "ckpt"
    P = a.work / "gift" / f"pred-{a.users}-users-{a.max_new_tokens}-tokens"  # a rerun with other settings starts anew
    raw = SHARED / "amazon" / "gift_cards"
    run.run(
        "textualize",
        [
            "textualize",
            "amazon",
            "--category",
            "gift_cards",
            "--data-dir",
            raw,
            "--out",
            R,
            "--seed",
            a.seed,
            "--quiet",
        ],
        R / schemas.MANIFEST,
    )
    run.run("entities", ["build-entities", "--data", R, "--quiet"], R / schemas.ENTITIES)
    run.run(
        "pretrain",
        ["pretrain", "--data", R, "--config", RECIPE, "--out", C, "--max-steps", a.steps, "--seed", a.seed, "--quiet"],
        C / schemas.CKPT_CONFIG,
    )
    users = qlib.sample_users(R, a.users, a.seed)
    sets = valid_prompts(R, users)
    ids = [i for fam in FAMILIES for i in sets[fam]]
    idfile = qlib.write_ids(P / "ids.txt", ids)
    prompts = pl.read_parquet(R / schemas.PROMPTS, columns=["prompt_id", "target"])
    prompts = prompts.filter(pl.col("prompt_id").is_in(ids))
    targets = dict(zip(prompts["prompt_id"].to_list(), prompts["target"].to_list()))
    rows: dict[str, dict] = {}
    for name, opts in DECODINGS.items():
        dest = P / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".parquet")
        stage = f"infer {name}"
        run.run(
            stage,
            [
                "infer",
                "--data",
                R,
                "--checkpoint",
                C,
                "--split",
                "valid",
                "--prompt-ids",
                idfile,
                "--max-new-tokens",
                a.max_new_tokens,
                "--precision",
                "auto",
                "--out",
                dest,
                "--quiet",
                *opts,
            ],
            dest,
        )
        rows[name] = {
            "options": opts,
            "seconds_per_prompt": round(run.seconds.get(stage, float("nan")) / len(ids), 3),
            "families": {fam: measure(dest, targets, sets[fam]) for fam in FAMILIES},
            "examples": pl.read_parquet(dest, columns=["prompt_id", "output"]).head(3).to_dicts(),
        }
    chosen = choose(rows)
    print(table(rows, chosen))
    default = textgen.DEFAULT.settings()
    result = {
        "stage": "text-decoding",
        "machine": qlib.machine(),
        "settings": {k: str(v) for k, v in vars(a).items()},
        "dataset": "gift_cards 2018 (validation prompts)",
        "users": len(users),
        "prompts": {fam: len(v) for fam, v in sets.items()},
        "rows": rows,
        "chosen": chosen,
        "chosen_options": DECODINGS[chosen],
        "textgen_default_when_run": default,
        "examples_reference": [{"prompt_id": i, "target": targets[i]} for i in ids[:3]],
        "seconds": run.seconds,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    dest = qlib.write_result(a.out, result)
    print(f"chosen: {chosen} ({' '.join(DECODINGS[chosen])}); textgen.DEFAULT = {json.dumps(default)}", file=sys.stderr)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
