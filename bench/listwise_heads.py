"""Does the listwise pointer head learn where the label head stays at chance? Validation only.

On a work directory that bench/quality.py filled (data, SASRec's validation lists and its lists
for training positions, valid-ids.txt, the protocol's checkpoint `ckpt` with its walker and
listwise validation files), this trains the protocol's recipe, steps, mix and seed once per
variant and reranks the same validation prompts at W = 1 (SASRec's top K, history excluded):

* `mix, labels`: the protocol's checkpoint itself (reused; listwise.head labels);
* `mix, pointer`: the same mix with listwise.head pointer (modeling/pointer.py); its walker is
  scored too, so listwise and walker are compared at one training budget;
* with --listwise-only, both heads again with every example a listwise one (listwise.weight 1):
  does the label head learn when it gets 2.5x the listwise examples? `--pointer-temperatures`
  adds the pointer at other `listwise.temperature` values (cosine / T; the default 0.05 starts
  sharp: its first 10 steps average a loss of 5.5 against ln 20 = 3.0).

Each row has NDCG@10 / HR@10 and paired 95% intervals against the protocol's walker and against
SASRec; `random order` is SASRec's top K in a seeded shuffle (the chance line of a scorer that
only reorders those K).

    python bench/listwise_heads.py --work runs/ranker-gift --category gift_cards
    python bench/listwise_heads.py --work runs/ranker --listwise-only
    python bench/listwise_heads.py --work runs/ranker-gift --category gift_cards \
        --listwise-only --pointer-temperatures 0.2
Results: bench/results/listwise-heads-cpu[-<category>].json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import qlib
from common import RESULTS
from quality import CPU, LockedRunner, mix_sets, rerank
from quality_report import read_ids

from recsys_cli.artifacts.predictions import read_predictions
from recsys_cli.evaluation.bootstrap import format_interval

SCORER = {"walker": ["--item-scoring", "constrained"], "listwise": ["--item-scoring", "listwise"]}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="a bench/quality.py work directory (its ckpt reused)")
    ap.add_argument("--category", default="toys")
    ap.add_argument("--steps", type=int, default=120, help="optimizer steps (the protocol's CPU tier: 120)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--listwise-only", action="store_true", help="also train both heads on listwise examples only")
    ap.add_argument(
        "--pointer-temperatures",
        type=float,
        nargs="*",
        default=[],
        help="with --listwise-only: also the pointer at these listwise.temperature values (default 0.05)",
    )
    return ap.parse_args()


def variants(a) -> dict[str, list[str]]:
    """variant -> the `--set` flags added to the protocol's mix (the labels mix is bench/quality.py's ckpt)."""
    out = {"mix, labels": [], "mix, pointer": ["--set", "listwise.head=pointer"]}
    if a.listwise_only:
        only = ["--set", "rerank.weight=0", "--set", "listwise.weight=1.0"]
        out["listwise only, labels"] = only
        out["listwise only, pointer"] = [*only, "--set", "listwise.head=pointer"]
        for t in a.pointer_temperatures:
            out[f"listwise only, pointer t{t:g}"] = [
                *out["listwise only, pointer"],
                "--set",
                f"listwise.temperature={t}",
            ]
    return out


def checkpoint(run, a, R: Path, P: Path, name: str, extra: list[str]) -> Path:
    if not extra:
        return a.work / "ckpt"  # the protocol's checkpoint, trained by bench/quality.py with the same flags
    ckpt = a.work / f"ckpt-{name.replace(', ', '-').replace(' ', '-')}"
    args = ["pretrain", "--data", R, "--config", qlib.ROOT / CPU, "--out", ckpt, "--max-steps", a.steps]
    args += ["--seed", a.seed, "--quiet", *mix_sets(P / "sasrec-train.parquet", a.k), *extra]
    run.run(f"pretrain {name}", args, ckpt / "train_state")
    return ckpt


def shuffled(R: Path, retr: Path, ids: list[str], k: int, seed: int) -> dict[str, list[str]]:
    """SASRec's top K of each prompt in a seeded random order, its tail kept: the chance line."""
    lists = read_predictions(retr, R)
    lists = lists.filter(lists["prompt_id"].is_in(ids))
    out = {}
    for pid, ranked in zip(lists["prompt_id"].to_list(), lists["ranked"].to_list()):
        head = list(ranked[:k])
        random.Random(f"{seed}:{pid}").shuffle(head)
        out[pid] = head + list(ranked[k:])
    return out


def table(R: Path, files: dict[str, object], retr: Path, ids: list[str], seed: int) -> dict:
    """Metrics of each list, with paired NDCG@10 intervals against the protocol's walker and SASRec."""
    walker = files["mix, labels: walker"]
    out = {"sasrec": qlib.metrics(qlib.ranks(R, retr, ids))}
    for name, src in files.items():
        have = qlib.prompts_in(src, ids)
        r = qlib.ranks(R, src, have)
        out[name] = {
            **qlib.metrics(r),
            "ndcg10_vs_walker": qlib.paired_bootstrap(r, qlib.ranks(R, walker, have), "NDCG@10", seed=seed),
            "ndcg10_vs_sasrec": qlib.paired_bootstrap(r, qlib.ranks(R, retr, have), "NDCG@10", seed=seed),
        }
    return out


def main() -> None:
    a = parse()
    a.work = a.work.resolve()
    run, t0 = LockedRunner(a.work), time.perf_counter()
    R, P, f_valid = a.work / "data", a.work / "predictions", a.work / "valid-ids.txt"
    retr, ids = P / "sasrec-valid.parquet", read_ids(f_valid)
    files: dict[str, object] = {}
    for name, extra in variants(a).items():
        ckpt = checkpoint(run, a, R, P, name, extra)
        slug = "" if not extra else "-" + ckpt.name.removeprefix("ckpt-")
        scorers = ["walker", "listwise"] if "mix" in name else ["listwise"]
        for scorer in scorers:
            out = P / f"valid-{scorer}{slug}-k{a.k}.parquet"
            files[f"{name}: {scorer}"] = rerank(run, R, ckpt, "valid", f_valid, retr, a.k, SCORER[scorer], out, 8)
    files["random order of SASRec's top K"] = shuffled(R, retr, ids, a.k, a.seed)
    result = {
        "stage": "listwise-heads",
        "machine": qlib.machine(),
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
        "setup": {"work": str(a.work), "valid_prompts": len(ids), "steps": a.steps, "k": a.k, "seed": a.seed},
        "valid": table(R, files, retr, ids, a.seed),
        "seconds": run.seconds,
        "total_seconds_this_invocation": round(time.perf_counter() - t0, 1),
    }
    for name, row in result["valid"].items():
        vs = row.get("ndcg10_vs_walker")
        extra = "" if vs is None else f"  vs walker {format_interval(vs)}"
        print(f"{name:40s} NDCG@10 {row['NDCG@10']:.4f}  HR@10 {row['HR@10']:.4f}{extra}")
    name = f"listwise-heads-cpu{'' if a.category == 'toys' else '-' + a.category}.json"
    earlier = RESULTS / name
    if earlier.is_file():  # hand-written notes on earlier rows, and their seconds, stay with the file
        old = json.loads(earlier.read_text())
        result["notes"] = old.get("notes", [])
        result["seconds"] = {**old.get("seconds", {}), **result["seconds"]}
    print(f"wrote {qlib.write_result(name, result)}")


if __name__ == "__main__":
    main()
