"""The paper's table layout: one table per task family, one row per method and template
group (seen templates, then unseen ones: the paper's shaded rows), one column per metric.
The best value of each metric column is bold, compared among rows of the same template
group (seen with seen, unseen with unseen), since the two groups are different prompts.
"""

from __future__ import annotations

import math

from rich.table import Table

from recsys_cli.evaluation.bootstrap import format_interval

COLUMNS = {
    "rating": ["RMSE", "MAE", "unparsable", "n"],
    "ranking": ["HR@1", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "validity", "empty", "n"],
    "binary": ["accuracy", "unparsable", "n"],
    "text": ["BLEU-4", "BLEU-2", "ROUGE-1", "ROUGE-2", "ROUGE-L", "empty", "n"],
}
LOWER_IS_BETTER = {"RMSE", "MAE"}
NOT_RANKED = {"n", "empty", "unparsable"}


def group_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """family -> rows, families in first-seen order, rows method-major with seen first."""
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["family"], []).append(row)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for fam, fam_rows in out.items():
        fam_rows.sort(key=lambda r: (methods.index(r["method"]), not r["seen"]))
    return out


def columns_for(fam_rows: list[dict]) -> list[str]:
    kind = fam_rows[0]["kind"]
    present = {k for r in fam_rows for k in r["metrics"]}
    return [c for c in COLUMNS[kind] if c in present]


def best_cells(fam_rows: list[dict], cols: list[str]) -> set[tuple[int, str]]:
    """(row index, column) pairs holding the best value of their column and seen group."""
    best: set[tuple[int, str]] = set()
    for col in cols:
        if col in NOT_RANKED:
            continue
        for seen in (True, False):
            vals = [
                (i, r["metrics"][col])
                for i, r in enumerate(fam_rows)
                if r["seen"] == seen
                and isinstance(r["metrics"].get(col), (int, float))
                and not math.isnan(r["metrics"][col])
            ]
            if len(vals) < 2:
                continue
            target = (min if col in LOWER_IS_BETTER else max)(v for _, v in vals)
            best.update((i, col) for i, v in vals if v == target)
    return best


def fmt(col: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if col in NOT_RANKED:
        return str(int(value))
    if col.startswith(("BLEU", "ROUGE")):
        return f"{value:.4f}"  # already x100, as in the paper
    return f"{value:.4f}"


def paired_columns(fam_rows: list[dict]) -> list[tuple[str, list[str]]]:
    """`score --compare`: (header, one cell per row) for each paired interval against the first file
    (evaluation/compare.py); none when no row has one."""
    first = next((r["vs_first"] for r in fam_rows if r.get("vs_first")), None)
    if first is None:
        return []
    return [
        (
            f"Δ{m} vs {first['against']} [95% CI]",
            [format_interval(r["vs_first"][m]) if r.get("vs_first") else "" for r in fam_rows],
        )
        for m in ("NDCG@10", "HR@10")
    ]


def rich_tables(rows: list[dict], note: str) -> list[Table]:
    tables = []
    for fam, fam_rows in group_rows(rows).items():
        cols = columns_for(fam_rows)
        bold = best_cells(fam_rows, cols)
        table = Table(title=f"{fam}")
        table.add_column("method", no_wrap=True)
        table.add_column("templates", no_wrap=True)
        for c in cols:
            table.add_column(c, justify="right", no_wrap=True)
        paired = paired_columns(fam_rows)
        for header, _ in paired:
            table.add_column(header, justify="right")
        for i, r in enumerate(fam_rows):
            cells = [fmt(c, r["metrics"].get(c)) for c in cols]
            cells = [f"[bold]{v}[/bold]" if (i, c) in bold else v for v, c in zip(cells, cols)]
            cells += [values[i] for _, values in paired]
            table.add_row(r["method"], "seen" if r["seen"] else "unseen", *cells, style=None if r["seen"] else "dim")
        tables.append(table)
    if tables:
        tables[-1].caption, tables[-1].caption_justify = note, "left"
    return tables


def markdown(rows: list[dict], note: str) -> str:
    parts = []
    for fam, fam_rows in group_rows(rows).items():
        cols = columns_for(fam_rows)
        bold = best_cells(fam_rows, cols)
        parts.append(f"### {fam}\n")
        paired = paired_columns(fam_rows)
        parts.append("| method | templates | " + " | ".join(cols + [h for h, _ in paired]) + " |")
        parts.append("|---|---|" + "---:|" * (len(cols) + len(paired)))
        for i, r in enumerate(fam_rows):
            cells = [fmt(c, r["metrics"].get(c)) for c in cols]
            cells = [f"**{v}**" if (i, c) in bold else v for v, c in zip(cells, cols)]
            cells += [values[i] for _, values in paired]
            parts.append(f"| {r['method']} | {'seen' if r['seen'] else 'unseen'} | " + " | ".join(cells) + " |")
        parts.append("")
    parts.append(f"_{note}_\n")
    return "\n".join(parts)
