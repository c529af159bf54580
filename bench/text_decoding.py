"""Explanation and review decoding before and after issue 29, on VALIDATION prompts: picks the
`recsys infer` text defaults (inference/textgen.py DEFAULT).

    python bench/text_decoding.py                       # MI 2014 + Gift Cards 2018, 40 LoRA steps, 24 users
    python bench/text_decoding.py --datasets gift --users 8 --steps 10  # smaller
Writes bench/results/text-decoding.json and prints one table per dataset and their mean.

Protocol (fixed before any figure was seen; MI 2014 added when the repetition penalty was):
* each dataset's raw reviews are textualized (MI 2014: items are bare ASINs, no titles; Gift Cards
  2018: titled items); the embedded SmolLM2-135M gets `--steps` LoRA steps of
  recipes/pretrain/smollm2-cpu.yaml on the training part (the CPU tier of bench/quality_text.py);
* `--users` validation users drawn with --seed; per user the first explanation prompt and the
  first review-summary prompt (templates whose answer is text, not a star);
* every decoding below answers the same prompts with --max-new-tokens 32 (bench/quality_text.py's
  limit): `plain` is the decoding before issue 29 (greedy, nothing blocked);
* metrics per family: BLEU-4 and ROUGE-L (x100, evaluation/metrics.text_metrics, standard
  conventions) and the share of outputs that are empty or hold no letter or digit;
* `s0` (`--text-adapter-scale 0`) is a reference row, never chosen;
* `--set KEY=VALUE` passes recipe overrides to pretrain (use a fresh --work and --out for each);
* the chosen decoding (never `plain`) has no such output and the highest ROUGE-L averaged over
  the two families and the datasets (ties: BLEU-4, then the earlier, cheaper row). Test prompts
  are not read.
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
DATASETS = {  # name -> (textualize category, raw review folder): 2014 ASIN-only items and 2018 titled ones
    "mi": ("musical_instruments", SHARED / "amazon" / "musical_instruments"),
    "gift": ("gift_cards", SHARED / "amazon" / "gift_cards"),
}
SUMMARY = ["review-1", "review-2", "review-3", "review-6", "review-8", "review-9"]  # text answers (not stars)
FAMILIES = {"explanation": None, "review": SUMMARY}


def options(
    method: str, n: int, min_new: int, rp: float = 0, scale: float = 1, alpha: float | None = None
) -> list[str]:
    """Every text-decoding option of `recsys infer` spelled out, so a row means its name whatever
    the defaults are (inference/textgen.DEFAULT)."""
    out = ["--text-decoding", method, "--no-repeat-ngram", str(n), "--min-new-tokens", str(min_new)]
    out += ["--repetition-penalty", f"{rp:g}", "--text-adapter-scale", f"{scale:g}"]
    return out + ([] if alpha is None else ["--text-beams", "4", "--length-penalty", f"{alpha:g}"])


# name -> recsys infer options; `plain` first (the reference), then cheaper before dearer
DECODINGS = {
    "plain (before)": ["--text-decoding", "plain"],  # the whole adapter, nothing blocked
    "greedy n3 min4": options("greedy", 3, 4),
    "greedy n2 min4": options("greedy", 2, 4),  # the default of stops 35-36
    "greedy n3 min8": options("greedy", 3, 8),
    "beam4 n3 min4 a0": options("beam", 3, 4, alpha=0),
    "beam4 n3 min4 a1": options("beam", 3, 4, alpha=1),
    **{f"greedy n2 min4 rp{rp:g}": options("greedy", 2, 4, rp) for rp in (0.5, 1, 2)},
    "greedy n3 min4 rp2": options("greedy", 3, 4, 2),
    # the same adapter with its LoRA deltas scaled while text is written (--text-adapter-scale)
    **{f"greedy n2 min4 rp2 s{s:g}": options("greedy", 2, 4, 2, s) for s in (0.5, 0.25)},
    # scale 0: no LoRA delta, but the trained rows of the new tokens and the intra table stay (not the
    # base model: bench/quality_text.py's zero-shot row is `--checkpoint none`); a reference, never chosen
    "greedy n2 min4 rp2 s0": options("greedy", 2, 4, 2, 0),
}
REFERENCES = {"plain (before)", "greedy n2 min4 rp2 s0"}


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

    candidates = [(i, item) for i, item in enumerate(rows.items()) if item[0] not in REFERENCES]
    return max(candidates, key=key)[1][0]


def table(rows: dict[str, dict], chosen: str) -> str:
    cols = ("BLEU-4", "ROUGE-L", "degen")
    head = f"{'decoding':<20}" + "".join(f"{f[:6] + ' ' + m:>16}" for f in FAMILIES for m in cols)
    lines = [head + f"{'s/prompt':>10}"]
    for name, r in rows.items():
        cells = "".join(f"{r['families'][f][m]:>16}" for f in FAMILIES for m in ("BLEU-4", "ROUGE-L", "degenerate"))
        lines.append(f"{name + (' *' if name == chosen else ''):<20}{cells}{r['seconds_per_prompt']:>10}")
    return "\n".join(lines)


def prepare(run: Runner, a, name: str) -> tuple[Path, Path]:
    """One dataset's textualized reviews, entities and `--steps`-step adapter (reused when done)."""
    category, raw = DATASETS[name]
    R, C = a.work / name / "R", a.work / name / "ckpt"
    textualize = ["textualize", "amazon", "--category", category, "--data-dir", raw, "--out", R, "--seed", a.seed]
    run.run(f"textualize {name}", [*textualize, "--quiet"], R / schemas.MANIFEST)
    run.run(f"entities {name}", ["build-entities", "--data", R, "--quiet"], R / schemas.ENTITIES)
    train = ["pretrain", "--data", R, "--config", RECIPE, "--out", C, "--max-steps", a.steps, "--seed", a.seed]
    train += [arg for kv in a.set for arg in ("--set", kv)]  # recipe overrides (a fresh --work for each)
    run.run(f"pretrain {name}", [*train, "--quiet"], C / schemas.CKPT_CONFIG)
    return R, C


def decode_all(run: Runner, a, name: str) -> dict:
    """Every decoding on one dataset's validation prompts -> its rows, prompt counts and references."""
    R, C = prepare(run, a, name)
    P = a.work / name / f"pred-{a.users}-users-{a.max_new_tokens}-tokens"  # a rerun with other settings starts anew
    sets = valid_prompts(R, qlib.sample_users(R, a.users, a.seed))
    ids = [i for fam in FAMILIES for i in sets[fam]]
    idfile = qlib.write_ids(P / "ids.txt", ids)
    prompts = pl.read_parquet(R / schemas.PROMPTS, columns=["prompt_id", "target"])
    prompts = prompts.filter(pl.col("prompt_id").is_in(ids))
    targets = dict(zip(prompts["prompt_id"].to_list(), prompts["target"].to_list()))
    rows: dict[str, dict] = {}
    for dec, opts in DECODINGS.items():
        dest = P / (dec.replace(" ", "_").replace("(", "").replace(")", "") + ".parquet")
        stage = f"infer {name} {dec}"
        args = ["infer", "--data", R, "--checkpoint", C, "--split", "valid", "--prompt-ids", idfile]
        args += ["--max-new-tokens", a.max_new_tokens, "--precision", "auto", "--out", dest, "--quiet", *opts]
        run.run(stage, args, dest)
        rows[dec] = {
            "seconds_per_prompt": round(run.seconds.get(stage, float("nan")) / len(ids), 3),
            "families": {fam: measure(dest, targets, sets[fam]) for fam in FAMILIES},
            "examples": pl.read_parquet(dest, columns=["prompt_id", "output"]).head(3).to_dicts(),
        }
    refs = [{"prompt_id": i, "target": targets[i]} for i in ids[:3]]
    logged = [json.loads(line) for line in (C / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [r["val_loss"] for r in logged if "val_loss" in r]  # the recipe's validation prompts, after training
    out = {"prompts": {fam: len(v) for fam, v in sets.items()}, "rows": rows, "examples_reference": refs}
    return {**out, "final_val_loss": round(val[-1], 4) if val else None}


def pooled(per_dataset: dict[str, dict]) -> dict[str, dict]:
    """decoding -> its families' metrics averaged over the datasets (degenerate answers summed)."""
    out = {}
    for dec in DECODINGS:
        rows = [d["rows"][dec] for d in per_dataset.values()]
        fams = {
            fam: {
                "BLEU-4": round(sum(r["families"][fam]["BLEU-4"] for r in rows) / len(rows), 3),
                "ROUGE-L": round(sum(r["families"][fam]["ROUGE-L"] for r in rows) / len(rows), 3),
                "degenerate": sum(r["families"][fam]["degenerate"] for r in rows),
            }
            for fam in FAMILIES
        }
        secs = round(sum(r["seconds_per_prompt"] for r in rows) / len(rows), 3)
        out[dec] = {"families": fams, "seconds_per_prompt": secs}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", choices=tuple(DATASETS), default=list(DATASETS))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Recipe override for pretrain.")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "text-decoding")
    ap.add_argument("--out", default="text-decoding.json", help="Result file name under bench/results.")
    a = ap.parse_args()
    started = time.perf_counter()
    run = Runner(a.work)
    per_dataset = {name: decode_all(run, a, name) for name in a.datasets}
    rows = pooled(per_dataset)
    chosen = choose(rows)
    for name, d in per_dataset.items():
        print(f"{name} (validation)\n{table(d['rows'], chosen)}\n")
    print(f"mean over {', '.join(a.datasets)}\n{table(rows, chosen)}")
    default = textgen.DEFAULT.settings()
    result = {
        "stage": "text-decoding",
        "machine": qlib.machine(),
        "settings": {k: str(v) for k, v in vars(a).items()},
        "datasets": {name: f"{DATASETS[name][0]} (validation prompts)" for name in a.datasets},
        "options": DECODINGS,
        "per_dataset": per_dataset,
        "mean_over_datasets": rows,
        "chosen": chosen,
        "chosen_options": DECODINGS[chosen],
        "textgen_default_when_run": default,
        "seconds": run.seconds,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    dest = qlib.write_result(a.out, result)
    print(f"chosen: {chosen} ({' '.join(DECODINGS[chosen])}); textgen.DEFAULT = {json.dumps(default)}", file=sys.stderr)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
