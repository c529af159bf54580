"""Collect every stage's speed figures into one report, bench/results/speed.json.

    python bench/speed.py            # merge the committed per-stage results
    python bench/speed.py --run      # re-run the quick stage benches first (minutes)

Each stage bench (bench/textualize.py, bench/entities.py, bench/masking.py, bench/pretrain.py,
bench/infer.py, bench/score.py, bench/sasrec.py) writes bench/results/<stage>.json with its
own figures, targets and the machine it ran on; this script puts them side by side.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STAGES = ["textualize", "entities", "masking", "pretrain", "infer", "score", "sasrec"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run each stage bench before collecting")
    args = ap.parse_args()
    if args.run:
        for stage in STAGES:
            script = HERE / f"{stage}.py"
            if script.exists():
                subprocess.run([sys.executable, str(script)], check=False)
    report: dict[str, object] = {}
    table = Table(title="recsys speed report")
    for col in ("stage", "figure", "value", "target", "ok"):
        table.add_column(col)
    for stage in STAGES:
        path = RESULTS / f"{stage}.json"
        if not path.exists():
            table.add_row(stage, "(no result file)", "", "", "")
            continue
        data = json.loads(path.read_text())
        report[stage] = data
        for check in data.get("checks", []):
            table.add_row(stage, check["name"], f"{check['value']}", f"{check.get('target', '')}", "yes" if check.get("ok") else "NO")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    Console().print(table)


if __name__ == "__main__":
    main()
