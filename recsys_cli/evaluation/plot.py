"""`recsys score --plot FILE.png`: grouped bars, one panel per task family, one bar group
per metric, one bar per method and template group (unseen bars hatched). matplotlib is an
optional dependency (`pip install 'recsys[plot]'`).
"""

from __future__ import annotations

from pathlib import Path

from recsys_cli.errors import RecsysError
from recsys_cli.evaluation.tables import NOT_RANKED, columns_for, group_rows


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RecsysError("--plot needs matplotlib: pip install 'recsys[plot]'", 2)
    return plt


def image_format(path: Path) -> str:
    """The format matplotlib writes for `path`: its extension, png without one."""
    return Path(path).suffix[1:].lower() or "png"


def check_format(path: Path) -> None:
    """Refuse, before any scoring, a --plot extension matplotlib cannot write."""
    plt = _pyplot()
    fig = plt.figure()
    known = sorted(fig.canvas.get_supported_filetypes())
    plt.close(fig)
    if image_format(path) not in known:
        raise RecsysError(f"--plot {path}: expected an image file name ending in one of .{', .'.join(known)}", 2)


def plot_rows(rows: list[dict], path: Path) -> None:
    """Draw `rows` into `path` atomically; it replaces only recsys's own plot (artifacts/outputs.py)."""
    from recsys_cli.artifacts import outputs

    plt = _pyplot()
    groups = group_rows(rows)
    if not groups:
        raise RecsysError("--plot: nothing to plot (no scored rows)", 2)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 3.2 * len(groups)), squeeze=False)
    for ax, (fam, fam_rows) in zip(axes[:, 0], groups.items()):
        cols = [c for c in columns_for(fam_rows) if c not in NOT_RANKED]
        width = 0.8 / max(len(fam_rows), 1)
        for j, r in enumerate(fam_rows):
            xs = [i + j * width for i in range(len(cols))]
            ys = [float(r["metrics"].get(c) or 0.0) for c in cols]
            label = f"{r['method']} ({'seen' if r['seen'] else 'unseen'})"
            ax.bar(xs, ys, width, label=label, hatch=None if r["seen"] else "//", color=f"C{j // 2 % 10}")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cols))], cols)
        ax.set_title(fam)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    try:
        with outputs.write_file(path, outputs.PLOT, suffix=f".{image_format(path)}") as tmp:
            fig.savefig(tmp, dpi=100, format=image_format(path))
    finally:
        plt.close(fig)
