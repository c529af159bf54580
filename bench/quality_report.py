"""Tables, must-reach checks and the printed report of bench/quality.py (the ranker protocol):
validation per scorer at W = 1, test per template group, each with a paired 95% interval
against SASRec (bench/qlib.paired_bootstrap -> recsys_cli/evaluation/bootstrap.py).

    python bench/quality.py --tier cpu     # prints these tables, writes bench/results/quality-ranker-cpu.json
"""

from __future__ import annotations

from pathlib import Path

import qlib

COMPARE = ("HR@5", "HR@10", "NDCG@5", "NDCG@10")


def read_ids(path: Path) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if line]


def valid_table(R: Path, files: dict[str, Path], retr: Path, f_valid: Path, seed: int) -> dict:
    """Per scorer: the LLM alone (W = 1) and its best fusion on validation, each against SASRec (paired)."""
    ids = read_ids(f_valid)
    base = qlib.ranks(R, retr, ids)
    table = {"sasrec": qlib.metrics(base)}
    for name, f in files.items():
        have = qlib.prompts_in(f, ids)
        alone = qlib.ranks(R, f, have)
        table[name] = {
            **qlib.metrics(alone),
            "ndcg10_vs_sasrec": qlib.paired_bootstrap(alone, qlib.ranks(R, retr, have), "NDCG@10", seed=seed),
        }
    return table


def test_table(R: Path, lists: dict[str, object], groups: dict[str, list[str]], seed: int) -> dict:
    """Per template group, every list's metrics and its paired interval against SASRec."""
    table: dict[str, dict] = {}
    for group, ids in groups.items():
        for name, src in lists.items():
            have = qlib.prompts_in(src, ids)
            r = qlib.ranks(R, src, have)
            row = qlib.metrics(r)
            if name != "sasrec":
                b = qlib.ranks(R, lists["sasrec"], have)
                row["vs_sasrec"] = {m: qlib.paired_bootstrap(r, b, m, seed=seed) for m in ("NDCG@10", "HR@10")}
            table.setdefault(group, {})[name] = row
    return table


def checks(R: Path, valid: dict, table: dict, lists: dict, all_ids: list[str], speed: dict | None) -> list[dict]:
    """The issue's must-reach lines, each with its figures."""
    out = []
    if "listwise" in valid and "walker" in valid:
        out.append(
            {
                "name": "listwise alone beats the walker alone on validation NDCG@10 (same checkpoint, same budget)",
                "ok": valid["listwise"]["NDCG@10"] > valid["walker"]["NDCG@10"],
                "listwise": valid["listwise"]["NDCG@10"],
                "walker": valid["walker"]["NDCG@10"],
            }
        )
    chosen = next(n for n in lists if n.startswith("chosen"))
    for group, rows in table.items():
        c, s = rows[chosen], rows["sasrec"]
        ci = c.get("vs_sasrec", {}).get("NDCG@10", {"ci95": [0.0, 0.0]})
        out.append(
            {
                "name": f"the chosen method beats SASRec on test ({group}): NDCG@10 and HR@10, "
                "the NDCG@10 interval excludes 0",
                "ok": c["NDCG@10"] > s["NDCG@10"] and c["HR@10"] > s["HR@10"] and ci["ci95"][0] > 0,
                "chosen": {m: c[m] for m in COMPARE},
                "sasrec": {m: s[m] for m in COMPARE},
                "ndcg10_diff_ci95": ci["ci95"],
            }
        )
    forms = {name: qlib.list_check(R, src, qlib.prompts_in(src, all_ids)) for name, src in lists.items()}
    out.append(
        {
            "name": "100% valid, distinct item ids (>= 10 per list) in every test list",
            "ok": all(f["ok"] == f["lists"] for f in forms.values()),
            "lists": forms,
        }
    )
    if speed:
        out.append(
            {
                "name": "listwise K=20 >= 5x faster per prompt than the walker (bench/listwise_speed.py, same run)",
                "ok": speed.get("speedup", 0) >= 5,
                "value": speed.get("speedup"),
                "machine": speed.get("machine"),
            }
        )
    return out


def report(table: dict, valid: dict, checks_: list[dict], tuning: dict) -> None:
    print(f"\nvalidation ({next(iter(valid.values()))['n']} prompts), W = 1 unless SASRec")
    for name, m in valid.items():
        ci = m.get("ndcg10_vs_sasrec")
        extra = f"   {ci['diff']:+.4f} [{ci['ci95'][0]:+.4f}, {ci['ci95'][1]:+.4f}]" if ci else ""
        print(f"{name:<28}" + "".join(f"{m[k]:>9.4f}" for k in COMPARE) + extra)
    print(f"tune: best {tuning['best']['scorer']} K={tuning['best']['k']} W={tuning['best']['w']}; {tuning['outcome']}")
    for group, rows in table.items():
        print(f"\nsequential, {group} templates (test, history excluded)")
        print(f"{'method':<44}{'n':>6}" + "".join(f"{k:>9}" for k in COMPARE) + "   NDCG@10 vs SASRec [95% CI]")
        for name, m in rows.items():
            ci = m.get("vs_sasrec", {}).get("NDCG@10")
            extra = f"   {ci['diff']:+.4f} [{ci['ci95'][0]:+.4f}, {ci['ci95'][1]:+.4f}]" if ci else ""
            print(f"{name:<44}{m['n']:>6}" + "".join(f"{m[k]:>9.4f}" for k in COMPARE) + extra)
    for c in checks_:
        print(f"{'ok  ' if c['ok'] else 'MISS'} {c['name']}")
