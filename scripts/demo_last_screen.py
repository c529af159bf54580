"""The last screen of `make demo` (scripts/demo.sh): text answers beside their references, then one
user picked by seed with their history, SASRec's top 5, the fused ranking's top 5 and the
held-out next item's rank in each list.

    python scripts/demo_last_screen.py --data runs/demo/toys --sasrec runs/demo/predictions/sasrec.parquet \
        --rerank runs/demo/predictions/llm-rerank.sequential.parquet --text-data runs/demo/gift_cards \
        --text runs/demo/predictions/gift.rating.parquet runs/demo/predictions/gift.explanation.parquet

The user is drawn with --seed from the users that have a sequential test prompt in both files,
sorted by id: never by how well any list does for them. The fused ranking is the rerank run's
LLM scores fused with SASRec's (inference/fusion.py, the rerank run's K) at the weight W that
bench/quality.py found best on validation prompts (bench/results/quality-ranker-cpu.json); the demo never
picks W on its own test prompts. A rerank run already made with --fusion W < 1 is shown as is.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import polars as pl
from rich.table import Table

from recsys_cli import console
from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.data import split as loo
from recsys_cli.evaluation.examples import answers
from recsys_cli.evaluation.tune import fused_rankings

ROOT = Path(__file__).resolve().parents[1]
CHOSEN = ROOT / "bench" / "results" / "quality-ranker-cpu.json"  # tuning.best.w: the best fusion on validation


def _short(text: str, limit: int = 140) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def calibration_note(path: Path) -> str:
    """ ", calibrated on validation (T = ...)" when the file's ratings went through a validation
    calibration (`infer --rating-calibration`), else "": T = 0 says validation found no per-prompt
    signal, so every answer is the validation star prior."""
    cal = ((provenance.read(path) or {}).get("extra") or {}).get("rating_calibration")
    return f", calibrated on validation (T = {float(cal['temperature']):.2f})" if isinstance(cal, dict) else ""


def text_rows(data: Path, files: list[Path], n: int) -> list[tuple[str, str, str, str]]:
    """(task, the prompt's end, the model's answer, the reference) of the first `n` prompts of each file."""
    rows = []
    for f in files:
        note = calibration_note(f)  # one provenance read per file
        for r in answers(data, f, None, None, n):
            task = f"{r['family']}{note if r['family'] == 'rating' else ''}\n{r['template_id']}"
            rows.append((task, _short(r["prompt"]), r["output"] or "(empty)", r["reference"]))
    return rows


def text_examples(data: Path, files: list[Path], n: int) -> None:
    t = Table(title=f"Text answers on {data.name} test prompts (first {n} of each file, prompt order)")
    for col in ("task", "prompt (end)", "model answer", "reference"):
        t.add_column(col)
    for row in text_rows(data, files, n):
        t.add_row(*row)
    console.print_table(t)


def validation_w(path: Path, scorer: str | None = None) -> float | None:
    """The fusion weight of the best validation row (NDCG@10) of `scorer` (any scorer: None)."""
    try:
        rows = [r for r in json.loads(path.read_text())["tuning"]["rows"] if scorer in (None, r["scorer"])]
        return float(max(rows, key=lambda r: r["NDCG@10"])["w"]) if rows else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _lists(path: Path) -> dict[str, list[str]]:
    df = pl.read_parquet(path, columns=["prompt_id", "ranked"]).filter(pl.col("ranked").is_not_null())
    return dict(zip(df["prompt_id"].to_list(), df["ranked"].to_list()))


def fused(data: Path, rerank: Path, sasrec: Path) -> tuple[dict[str, list[str]], str]:
    """prompt_id -> the fused list, and how it was made."""
    settings = (provenance.read(rerank) or {}).get("settings") or {}
    k, w_run = settings.get("rerank_k"), settings.get("fusion")
    if w_run != 1.0:
        return _lists(rerank), f"rerank top {k}, fusion W={w_run} (as run)"
    w = validation_w(CHOSEN, settings.get("item_scoring"))
    if w is None:
        return _lists(rerank), f"LLM rerank of SASRec's top {k} (W=1; no validation-chosen W in {CHOSEN.name})"
    return fused_rankings(
        data, rerank, sasrec, w, settings.get("split", "test")
    ), f"rerank top {k} fused with SASRec, W={w:g} (chosen on validation, {CHOSEN.name})"


def rank_text(ranked: list[str], item: str) -> str:
    return f"rank {ranked.index(item) + 1}" if item in ranked else f"not in top {len(ranked)}"


def user_screen(data: Path, sasrec: Path, rerank: Path, seed: int, k: int, history: int) -> None:
    prompts = read_artifact(data, schemas.PROMPTS, ["prompt_id", "family", "split", "user_id", "item_id"])
    ret, (fus, how) = _lists(sasrec), fused(data, rerank, sasrec)
    cands = prompts.filter(
        (pl.col("family") == "sequential")
        & (pl.col("split") == "test")
        & pl.col("prompt_id").is_in(list(set(ret) & set(fus)))
    )
    users = sorted(set(cands["user_id"].to_list()))
    if not users:
        raise SystemExit(f"{rerank}: no sequential test prompt shared with {sasrec}")
    user = random.Random(seed).choice(users)
    row = cands.filter(pl.col("user_id") == user).sort("prompt_id").row(0, named=True)
    items = read_artifact(data, schemas.ITEMS, ["item_id", "title"])
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    seqs = read_artifact(data, schemas.SEQUENCES).filter(pl.col("user_id") == user)
    past = loo.history(seqs["items"][0].to_list(), "test", row["item_id"]) if seqs.height else []
    a, b = ret[row["prompt_id"]], fus[row["prompt_id"]]
    console.out.print(
        f"user {user} (drawn with seed {seed} from {len(users)} test users) · prompt {row['prompt_id']}",
        highlight=False,
    )
    t = Table(title=f"user {user}: history and top {k}")
    t.add_column(f"history (last {min(history, len(past))} of {len(past)}, oldest first)")
    t.add_column(f"SASRec top {k}")
    t.add_column(f"fused top {k}")
    shown = past[-history:]
    for i in range(max(len(shown), k)):
        cells = [titles.get(shown[i], shown[i]) if i < len(shown) else ""]
        cells += [f"{i + 1}. {titles.get(x[i], x[i])}" if i < min(k, len(x)) else "" for x in (a, b)]
        t.add_row(*cells)
    console.print_table(t)
    held = titles.get(row["item_id"], row["item_id"])
    console.out.print(f"fused: {how}", highlight=False)
    console.out.print(
        f"held-out next item: {held} · SASRec: {rank_text(a, row['item_id'])} · fused: {rank_text(b, row['item_id'])}",
        highlight=False,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="The textualized ranking data (Toys).")
    ap.add_argument("--sasrec", type=Path, required=True)
    ap.add_argument(
        "--rerank", type=Path, required=True, help="`recsys infer --candidates-from SASREC` on sequential test prompts."
    )
    ap.add_argument("--text-data", type=Path, required=True)
    ap.add_argument("--text", type=Path, nargs="+", required=True, help="Predictions of rating / explanation prompts.")
    ap.add_argument("--examples", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--history", type=int, default=10)
    a = ap.parse_args()
    text_examples(a.text_data, a.text, a.examples)
    user_screen(a.data, a.sasrec, a.rerank, a.seed, a.k, a.history)


if __name__ == "__main__":
    main()
