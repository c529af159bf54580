"""Textualize speed and memory: full P5 Toys and a synthetic 10M-interaction table.

    python bench/textualize.py                 # both (the table part takes minutes)
    python bench/textualize.py --only toys     # just the P5 Toys figure
    python bench/textualize.py --interactions 1000000   # a smaller synthetic table

Each run is a separate `recsys textualize ...` process (large inputs fork one helper
process). Printed and written to bench/results/textualize.json with the machine: wall time,
CPU seconds and peak RSS (ru_maxrss) of the main process and of the helper, and the memory
of the whole process tree polled every 0.2 s with psutil: the peak of the summed PSS (pages
shared by the two processes counted once: the real footprint) and of the summed RSS (shared
pages counted twice). The sum of the two per-process peak RSS is the conservative bound.
Targets: Toys <= 10 s and <= 2 GB (main process) with 19,412 users / 11,924 items / 167,597
interactions; 10M-row table <= 180 s and <= 8 GB for the process tree (PSS).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil
from common import RESULTS, ROOT, loadavg, machine, write_json

TOYS = ROOT.parent / "shared" / "data" / "amazon" / "toys"

CHILD = (
    "import json, resource, sys, time\n"
    "from recsys_cli.main import main\n"
    "t = time.perf_counter(); code = 0\n"
    "try:\n    main(sys.argv[1:])\n"
    "except SystemExit as e:\n    code = e.code or 0\n"
    "wall = time.perf_counter() - t\n"
    "sys.stderr.write('\\nBENCH ' + json.dumps({'code': code, 'wall_in_process_s': wall, "
    "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "
    "'cpu_s': resource.getrusage(resource.RUSAGE_SELF).ru_utime + resource.getrusage(resource.RUSAGE_SELF).ru_stime, "
    "'child_peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
    "'child_cpu_s': resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime "
    "+ resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime}) + '\\n')\n"
)


def tree_memory(pid: int, done: threading.Event, peak: dict) -> None:
    """Poll the process tree under `pid` until `done`: peak summed PSS and RSS (MB)."""
    root = psutil.Process(pid)
    while not done.is_set():
        pss = rss = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in procs:
            try:
                m = p.memory_full_info()
            except psutil.Error:
                continue
            pss, rss = pss + m.pss, rss + m.rss
        peak["tree_peak_pss_mb"] = max(peak["tree_peak_pss_mb"], pss / 2**20)
        peak["tree_peak_rss_mb"] = max(peak["tree_peak_rss_mb"], rss / 2**20)
        peak["max_processes"] = max(peak["max_processes"], len(procs))
        done.wait(0.2)


def run(args: list[str]) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    done, peak = threading.Event(), {"tree_peak_pss_mb": 0.0, "tree_peak_rss_mb": 0.0, "max_processes": 0}
    poll = threading.Thread(target=tree_memory, args=(proc.pid, done, peak))
    poll.start()
    stdout, stderr = proc.communicate()
    done.set()
    poll.join()
    wall = time.perf_counter() - t
    line = [x for x in stderr.splitlines() if x.startswith("BENCH ")]
    if proc.returncode != 0 or not line:
        raise SystemExit(f"bench run failed: {stderr[-2000:]}")
    res = json.loads(line[-1][6:]) | {k: round(v, 1) for k, v in peak.items()}
    res["rss_sum_mb"] = round(res["peak_rss_mb"] + res["child_peak_rss_mb"], 1)
    res["wall_s"] = round(wall, 2)
    res["summary"] = json.loads(stdout)
    return res


def memory_line(r: dict) -> str:
    return (
        f"peak RSS {r['peak_rss_mb']:.0f} MB + helper {r['child_peak_rss_mb']:.0f} MB (sum {r['rss_sum_mb']:.0f}); "
        f"process tree peak PSS {r['tree_peak_pss_mb']:.0f} MB, RSS {r['tree_peak_rss_mb']:.0f} MB"
    )


def synthetic(dirpath: Path, n_inter: int, seed: int = 0) -> list[str]:
    """Users with 500 distinct items each (item = (a + b*k) mod a prime catalogue size), ratings,
    increasing timestamps, an item table with titles/categories and a user table with features."""
    rng = np.random.default_rng(seed)
    per_user, n_items = 500, 20011
    n_users = max(1, n_inter // per_user)
    a = rng.integers(0, n_items, n_users)[:, None]
    b = rng.integers(1, n_items, n_users)[:, None]
    items = (a + b * np.arange(per_user)[None, :]) % n_items  # [U, 500], distinct per row
    ts = 1_300_000_000 + np.cumsum(rng.integers(60, 86400, size=(n_users, per_user)), axis=1)
    # the user's own input tables (not recsys artifacts: `textualize table` reads them)
    raw = {
        "interactions": dirpath / "raw-interactions.parquet",
        "items": dirpath / "raw-items.parquet",
        "users": dirpath / "raw-users.parquet",
    }
    pl.DataFrame(
        {
            "user": np.repeat(np.arange(n_users), per_user).astype(str),
            "item": items.reshape(-1).astype(str),
            "ts": ts.reshape(-1),
            "stars": rng.integers(1, 6, n_users * per_user).astype(np.float64),
        }
    ).write_parquet(raw["interactions"])
    cats = np.array(["Board Games", "Puzzles", "Dolls", "Outdoor Play", "Arts & Crafts", "Building Toys", "Card Games"])
    pl.DataFrame(
        {
            "item": np.arange(n_items).astype(str),
            "title": [f"Synthetic toy {i}" for i in range(n_items)],
            "categories": cats[np.arange(n_items) % len(cats)],
        }
    ).write_parquet(raw["items"])
    pl.DataFrame(
        {
            "user": np.arange(n_users).astype(str),
            "age": rng.integers(18, 70, n_users),
            "gender": np.array(["F", "M"])[rng.integers(0, 2, n_users)],
        }
    ).write_parquet(raw["users"])
    return [
        "--interactions",
        str(raw["interactions"]),
        "--items",
        str(raw["items"]),
        "--users",
        str(raw["users"]),
        "--user-col",
        "user",
        "--item-col",
        "item",
        "--time-col",
        "ts",
        "--rating-col",
        "stars",
    ]


QUIET = ["--quiet", "--json"]  # every timed run: no progress bar, the summary as JSON


def _wall_line(label: str, wall: str, target: int, r: dict) -> None:
    """Print one run's wall time against its target, its CPU time and the load."""
    cpu = f"CPU {r['cpu_s']:.1f} s (+ {r['child_cpu_s']:.1f} s in the helper process)"
    print(f"{label}: wall {wall} s (target <= {target}), {cpu}, load {loadavg()[0]:.2f}")


def _at_most(name: str, value, cap) -> dict:
    """A check row: value <= cap."""
    return {"name": name, "value": value, "target": f"<= {cap}", "ok": value <= cap}


def _toys_section(tmp: Path) -> tuple[dict, list[dict]]:
    """Textualize full P5 Toys, print its figures; its result entry and checks."""
    r = run(["textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--out", str(tmp / "toys")] + QUIET)
    s = r["summary"]
    counts = (s["users"], s["items"], s["interactions"])
    print(f"P5 Toys: users/items/interactions {counts}, documents {s['documents']}, prompts {s['prompts']}")
    _wall_line("P5 Toys", f"{r['wall_s']:.2f}", 10, r)
    print(f"P5 Toys: {memory_line(r)} (target: main <= 2048)")
    entry = {k: v for k, v in r.items() if k != "summary"} | {
        "counts": counts,
        "documents": s["documents"],
        "prompts": s["prompts"],
    }
    checks = [
        {
            "name": "P5 Toys counts",
            "value": list(counts),
            "target": [19412, 11924, 167597],
            "ok": counts == (19412, 11924, 167597),
        },
        _at_most("P5 Toys wall s", r["wall_s"], 10),
        _at_most("P5 Toys peak RSS MB", round(r["peak_rss_mb"]), 2048),
    ]
    return entry, checks


def _table_section(tmp: Path, interactions: int) -> tuple[dict, list[dict]]:
    """Generate and textualize the synthetic table, print its figures; its result entry and checks."""
    t = time.perf_counter()
    targs = synthetic(tmp, interactions)
    gen = time.perf_counter() - t
    r = run(["textualize", "table", *targs, "--out", str(tmp / "table")] + QUIET)
    s = r["summary"]
    print(
        f"table ({interactions:,} synthetic interactions, generated in {gen:.1f} s): "
        f"users {s['users']:,}, "
        f"interactions {s['interactions']:,}, documents {s['documents']:,}, prompts {s['prompts']:,}"
    )
    _wall_line("table", f"{r['wall_s']:.1f}", 180, r)
    print(f"table: {memory_line(r)} (target: tree PSS <= 8192)")
    entry = {k: v for k, v in r.items() if k != "summary"} | {
        "interactions": s["interactions"],
        "users": s["users"],
        "documents": s["documents"],
        "prompts": s["prompts"],
    }
    checks = []
    if interactions >= 10_000_000:
        checks = [
            _at_most("10M table wall s", r["wall_s"], 180),
            _at_most("10M table process tree peak PSS MB", round(r["tree_peak_pss_mb"]), 8192),
        ]
    return entry, checks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["toys", "table"])
    ap.add_argument("--interactions", type=int, default=10_000_000)
    args = ap.parse_args()
    result: dict = {"machine": machine(polars=pl.__version__), "checks": []}
    with tempfile.TemporaryDirectory(prefix="bench-textualize-") as tmp:
        tmp = Path(tmp)
        if args.only in (None, "toys"):
            result["toys"], checks = _toys_section(tmp)
            result["checks"] += checks
        if args.only in (None, "table"):
            result["table"], checks = _table_section(tmp, args.interactions)
            result["checks"] += checks
    out = RESULTS / "textualize.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    if args.only:  # keep the other half's figures from an earlier run
        keep = "table" if args.only == "toys" else "toys"
        if keep in old:
            result[keep] = old[keep]
            result["checks"] = [
                c for c in old.get("checks", []) if c["name"].startswith("P5" if keep == "toys" else "10M")
            ] + result["checks"]
    write_json(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
