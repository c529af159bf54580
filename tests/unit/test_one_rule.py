"""One rule, one place: the old duplicated implementations are gone and each rule has one home.

    .venv/bin/python -m pytest -q tests/unit/test_one_rule.py -p no:xdist

Static checks on the source (ast and tokenize; nothing is imported, no torch): the old module
files are absent; one trie class, one `parse_rating`, one `add_special_tokens`; leave-one-out
slicing only in data/split.py; no module over 400 lines; command modules never import each
other; no click. The layering rule "`recsys --help` imports no torch" is tested in
tests/cli/test_root.py.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from tests.conftest import ROOT

PKG = ROOT / "recsys_cli"
MAX_LINES = 400

# implementations that were merged into data/ (trie, dynamic positions, grounding, scoring),
# evaluation/ (baselines moved to recsys_cli/baselines/), and the old models/ package (now modeling/)
OLD_PATHS = [
    "recsys_cli/inference/trie.py",
    "recsys_cli/inference/positions.py",
    "recsys_cli/inference/ground.py",
    "recsys_cli/inference/scoring.py",
    "recsys_cli/evaluation/scoring.py",
    "recsys_cli/evaluation/baselines.py",
    "recsys_cli/evaluation/sasrec.py",
    "recsys_cli/models",
]

# Leave-one-out slices of a sequence: items[:-1] (test history), items[:-2] / items[-2]
# (train part / valid target), items[:-3] / items[-3] (the train-split model), [:-HOLDOUT].
LOO_SLICE = re.compile(r"\[\s*:\s*-\s*(?:[123]|HOLDOUT)\s*\]|\[\s*-\s*[23]\s*\]")
SPLIT_MODULE = "recsys_cli/data/split.py"
# Uses of those slice shapes that are not a leave-one-out split: (file, exact code fragment): why.
# Keep it small; a new slice in one of these files still fails unless its fragment is listed.
LOO_ALLOWED = {
    ("recsys_cli/evaluation/metrics.py", "np.cumsum(per_row)[:-1]"): "row start offsets of a flattened list column",
    ("recsys_cli/data/spans.py", "step[:-1]"): "element start offsets inside a list column's joined text",
    ("recsys_cli/data/textualize.py", "names[:-1]"): "'a, b and c': every name but the last before ' and '",
    (
        "recsys_cli/inference/engine.py",
        "a[:-1][-keep:] + a[-1:], ai[:-1][-keep:] + ai[-1:]",
    ): "prompt truncation keeping the final [gM] token",
    (
        "recsys_cli/baselines/sasrec_train.py",
        "return [p[:-1] for p in parts], [p[1:] for p in parts]",
    ): "next-item shift inside a training part (input = part[:-1], target = part[1:])",
}


def py_files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def code_lines(path: Path) -> dict[int, str]:
    """line number -> the line's code with strings (docstrings included) and comments removed."""
    src = path.read_text()
    lines = src.splitlines()
    blank: dict[int, list[tuple[int, int]]] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                blank.setdefault(r, []).append((c0 if r == r0 else 0, c1 if r == r1 else len(lines[r - 1])))
    out = {}
    for n, line in enumerate(lines, 1):
        chars = list(line)
        for a, b in blank.get(n, []):
            chars[a:b] = " " * (b - a)
        out[n] = "".join(chars)
    return out


def definitions(kind: type, match) -> list[str]:
    hits = []
    for path in py_files("recsys_cli"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, kind) and match(node.name):
                hits.append(f"{rel(path)}:{node.lineno} {node.name}")
    return hits


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, relative ones resolved."""
    package = rel(path)[: -len(".py")].replace("/", ".").rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def test_old_duplicate_modules_are_gone():
    present = [p for p in OLD_PATHS if (ROOT / p).exists()]
    assert not present, present


def test_one_trie_class():
    tries = definitions(ast.ClassDef, lambda name: "Trie" in name)  # case-sensitive: `Retriever` is no trie
    assert [t.split(":")[0] for t in tries] == ["recsys_cli/data/trie.py"], tries


def test_one_rating_parser():
    defs = definitions((ast.FunctionDef, ast.AsyncFunctionDef), lambda name: name == "parse_rating")
    assert [d.split(":")[0] for d in defs] == ["recsys_cli/data/ratings.py"], defs


def test_one_add_special_tokens():
    defs = definitions((ast.FunctionDef, ast.AsyncFunctionDef), lambda name: name == "add_special_tokens")
    assert [d.split(":")[0] for d in defs] == ["recsys_cli/data/special_tokens.py"], defs


def test_leave_one_out_slices_only_in_split():
    hits, used = [], set()
    for path in py_files("recsys_cli"):
        name = rel(path)
        if name == SPLIT_MODULE:
            continue
        for n, line in code_lines(path).items():
            if not LOO_SLICE.search(line):
                continue
            allowed = [key for key in LOO_ALLOWED if key[0] == name and key[1] in line]
            if allowed:
                used.update(allowed)
            else:
                hits.append(f"{name}:{n}: {line.strip()}")
    assert not hits, (
        "leave-one-out slicing outside data/split.py (use its history/train_items/target_position):\n" + "\n".join(hits)
    )
    assert used == set(LOO_ALLOWED), f"stale allow-list entries: {sorted(set(LOO_ALLOWED) - used)}"


def test_split_module_is_the_rule():
    text = (ROOT / SPLIT_MODULE).read_text()
    for name in ("def train_items", "def target_position", "def history", "HOLDOUT = 2"):
        assert name in text, name


def test_no_module_over_400_lines():
    long = [f"{rel(p)}: {n}" for p in py_files("recsys_cli") if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert not long, long


def test_commands_never_import_each_other():
    commands = sorted(p for p in (PKG / "commands").glob("*.py") if p.name != "__init__.py")
    names = {f"recsys_cli.commands.{p.stem}" for p in commands}
    assert len(names) >= 8, names
    bad = []
    for path in commands:
        for line, mod in imported_modules(path):
            # another command module, or the registry package (which imports every command)
            if mod == "recsys_cli.commands" or mod in names or any(mod.startswith(n + ".") for n in names):
                bad.append(f"{rel(path)}:{line} imports {mod}")
    assert not bad, bad


def test_import_click_nowhere():
    bad = [
        f"{rel(p)}:{line}"
        for p in py_files("recsys_cli", "bench", "tests", "scripts")
        for line, mod in imported_modules(p)
        if mod == "click" or mod.startswith("click.")
    ]
    assert not bad, bad


def test_the_scanners_see_what_they_should():
    """The helpers themselves: strings and comments do not count, code does; relative imports resolve."""
    src = ROOT / "recsys_cli" / "data" / "split.py"
    lines = code_lines(src)
    assert not any("items[-1]" in ln for ln in lines.values())  # only in the docstring
    assert any("items[:-HOLDOUT]" in ln and LOO_SLICE.search(ln) for ln in lines.values())
    mods = {m for _, m in imported_modules(PKG / "commands" / "__init__.py")}
    assert {"recsys_cli.commands", "recsys_cli.commands.pretrain"} <= mods  # the registry imports every command
    rel_mods = {m for _, m in imported_modules(PKG / "inference" / "engine.py")}
    assert any(m.startswith("recsys_cli.") for m in rel_mods)
