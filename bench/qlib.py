"""Shared pieces of the quality benchmarks (bench/quality.py, bench/quality_text.py): running
`recsys` commands as a user would, reusing finished stages, seeded samples, per-prompt ranks
and paired-bootstrap intervals. The machine description and the result writer live in
bench/common.py; `qlib.machine`, `qlib.write_json` and `qlib.write_result` are the same functions.

    python -c "import sys; sys.path.insert(0, 'bench'); import qlib; print(qlib.machine())"
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
from common import HERE, ROOT, machine, write_json, write_result  # noqa: F401  (re-exported for bench/quality*.py)

SHARED = ROOT.parent / "shared" / "data"

# the bench scripts call qlib.paired_bootstrap; the one implementation is the product's
from recsys_cli.artifacts import schemas  # noqa: E402
from recsys_cli.artifacts.predictions import read_predictions  # noqa: E402
from recsys_cli.data import templates  # noqa: E402
from recsys_cli.evaluation.bootstrap import paired_bootstrap as paired_bootstrap  # noqa: E402
from recsys_cli.evaluation.metrics import ranking_from_ranks, truth_ranks  # noqa: E402


class Runner:
    """Runs `recsys ...` stages, logging to work/log.txt; a stage whose `done` file exists is reused."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = self.work / "log.txt"
        # stage -> seconds, kept in work/seconds.json so a continued run reports every stage's time
        self.times = self.work / "seconds.json"
        self.seconds: dict[str, float] = json.loads(self.times.read_text()) if self.times.exists() else {}
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def run(self, stage: str, args: list[str], done: Path | None = None, timeout: float | None = None) -> str:
        if done is not None and Path(done).exists():
            print(f"== {stage}: reusing {done}", file=sys.stderr, flush=True)
            return ""
        t = time.perf_counter()
        print(f"== {stage}: recsys {' '.join(map(str, args))}", file=sys.stderr, flush=True)
        with self.log.open("a") as err:
            err.write(f"\n== {stage}: recsys {' '.join(map(str, args))}\n")
            err.flush()
            proc = subprocess.run(
                [sys.executable, "-m", "recsys_cli.main", *map(str, args)],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                timeout=timeout,
            )
        if proc.returncode != 0:
            sys.exit(f"{stage} failed (exit {proc.returncode}); see {self.log}")
        self.seconds[stage] = round(time.perf_counter() - t, 1)
        write_json(self.times, self.seconds)
        print(f"   {stage}: {self.seconds[stage]:.0f} s", file=sys.stderr, flush=True)
        return proc.stdout

    def json(self, stage: str, args: list[str]) -> dict:
        return json.loads(self.run(stage, [*args, "--json"]))


def sample_users(data: Path, n: int, seed: int) -> list[str]:
    """n users of the textualized directory, drawn with the seed (sorted by user id order)."""
    users = pl.read_parquet(Path(data) / schemas.SEQUENCES, columns=["user_id"])["user_id"].to_list()
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(users), size=min(n, len(users)), replace=False).tolist())
    return [users[i] for i in pick]


def prompt_ids(
    data: Path,
    users: list[str],
    split: str,
    family: str,
    seen: bool,
    kind_templates: list[str] | None = None,
    one_per_user: bool = True,
) -> list[str]:
    """The prompts of `users` of one family / seen flag (the first template in id order per user);
    templates whose answer is yes/no (data/templates.py) are left out."""
    p = pl.read_parquet(
        Path(data) / schemas.PROMPTS,
        columns=["prompt_id", "family", "template_id", "seen", "split", "user_id"],
    )
    p = p.filter(
        (pl.col("split") == split)
        & (pl.col("family") == family)
        & (pl.col("seen") == seen)
        & pl.col("user_id").is_in(users)
    )
    p = p.filter(templates.answer_types(p["template_id"], str(Path(data) / schemas.PROMPTS)) != templates.YES_NO_ANSWER)
    if kind_templates is not None:
        p = p.filter(pl.col("template_id").is_in(kind_templates))
    p = p.sort("user_id", "template_id", "prompt_id")
    if one_per_user:
        p = p.unique("user_id", keep="first", maintain_order=True)
    order = {u: i for i, u in enumerate(users)}
    return (
        p.with_columns(o=pl.col("user_id").replace_strict(order, default=0))
        .sort("o", "prompt_id")["prompt_id"]
        .to_list()
    )


def write_ids(path: Path, ids: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(i + "\n" for i in ids))
    tmp.replace(path)
    return path


def _lists(src: Path | dict[str, list[str]]) -> dict[str, list[str]]:
    """prompt_id -> ranked list, from a predictions file or an already built dict."""
    if isinstance(src, dict):
        return src
    df = read_predictions(src, None, strict_lists=False)  # the contract; malformed lists are counted, not refused
    return dict(zip(df["prompt_id"].to_list(), df["ranked"].to_list()))


def ranks(data: Path, preds: Path | dict[str, list[str]], ids: list[str], depth: int = 10) -> np.ndarray:
    """0-based rank of each prompt's target in its list (depth when absent), in `ids` order."""
    prompts = pl.read_parquet(Path(data) / schemas.PROMPTS, columns=["prompt_id", "item_id"])
    truth = dict(zip(prompts["prompt_id"].to_list(), prompts["item_id"].to_list()))
    lists = _lists(preds)
    ranked = pl.Series([list(lists.get(pid) or []) for pid in ids], dtype=pl.List(pl.Utf8))
    return truth_ranks(ranked, pl.Series([truth[pid] for pid in ids], dtype=pl.Utf8), depth)


def list_check(data: Path, src: Path | dict[str, list[str]], ids: list[str], depth: int = 10) -> dict[str, int]:
    """How many of the `ids` lists are well formed: at least `depth` entries (so HR@depth is defined),
    every entry a catalogue item, no item twice. `ok` counts the prompts that pass all three."""
    items = set(pl.read_parquet(Path(data) / schemas.ITEMS, columns=["item_id"])["item_id"].to_list())
    lists = _lists(src)
    out = {"lists": 0, "ok": 0, "short": 0, "unknown_item": 0, "duplicate": 0}
    for pid in ids:
        lst = list(lists.get(pid) or [])
        out["lists"] += 1
        short, unknown, dupe = len(lst) < depth, any(i not in items for i in lst), len(set(lst)) != len(lst)
        out["short"] += short
        out["unknown_item"] += unknown
        out["duplicate"] += dupe
        out["ok"] += not (short or unknown or dupe)
    return out


def prompts_in(src: Path | dict, ids: list[str]) -> list[str]:
    """The ids of `ids` that a predictions file (or {prompt_id: list}) answers, in order."""
    have = set(src) if isinstance(src, dict) else set(read_predictions(src, None, strict_lists=False)["prompt_id"])
    return [i for i in ids if i in have]


def metrics(rank: np.ndarray) -> dict[str, float]:
    """HR@1/5/10 and NDCG@5/10 from 0-based ranks (recsys_cli/evaluation/metrics.py), with the count."""
    return {"n": int(len(rank)), **ranking_from_ranks(rank)}
