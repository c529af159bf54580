"""Code shape, read with ast and tokenize (nothing is imported, no torch):

* no module over 400 lines, no line over 120 characters, no function over 80 lines (its `def` line
  to its last line, docstring included): in recsys_cli, bench, scripts and tests (SHAPED);
* in recsys_cli, no function with more than 12 parameters (a method's `self` / `cls` not counted), except Typer
  command signatures, where every parameter is a command-line option or argument: `Annotated[...]`
  written out, or an `Annotated` alias of recsys_cli/options.py (DataDir, ...) or of its own module;
* HR/NDCG's log2 discount is computed only in recsys_cli/evaluation/metrics.py (recsys_cli and bench/).

    .venv/bin/python -m pytest -q tests/test_code_shape.py -p no:xdist
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "recsys_cli"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
MAX_PARAMETERS = 12
MAX_LINE_CHARS = 120
METRICS_MODULE = "recsys_cli/evaluation/metrics.py"
# the NDCG discount: log2(...), or a natural log divided by log(2)
LOG_DISCOUNT = re.compile(r"\blog2\s*\(|/\s*(?:np\.|math\.|torch\.)?log\s*\(\s*2(?:\.0*)?\s*\)")
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
SHAPED = ("recsys_cli", "bench", "scripts", "tests")  # where the length rules hold


def py_files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py") if "__pycache__" not in p.parts)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def code_only(src: str) -> list[str]:
    """The source's lines with strings (docstrings included) and comments blanked out."""
    lines = src.splitlines()
    chars = [list(line) for line in lines]
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in (tokenize.STRING, tokenize.COMMENT):
            continue
        (r0, c0), (r1, c1) = tok.start, tok.end
        for r in range(r0, r1 + 1):
            a, b = (c0 if r == r0 else 0), (c1 if r == r1 else len(lines[r - 1]))
            chars[r - 1][a:b] = " " * (b - a)
    return ["".join(c) for c in chars]


def annotated_aliases(path: Path) -> set[str]:
    """Module-level names bound to `Annotated[...]` (e.g. `DataDir = Annotated[Path, typer.Option(...)]`)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and _is_annotated(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _is_annotated(node: ast.expr | None) -> bool:
    if not isinstance(node, ast.Subscript):
        return False
    base = node.value
    return (isinstance(base, ast.Name) and base.id == "Annotated") or (
        isinstance(base, ast.Attribute) and base.attr == "Annotated"
    )


def parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool = False) -> list[ast.arg]:
    """The parameters a caller passes: all of them, less a method's bound `self` / `cls`."""
    a = fn.args
    params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x is not None)]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if method and not static and params and params[0].arg in ("self", "cls"):
        return params[1:]
    return params


def is_command_signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, aliases: set[str]) -> bool:
    """Every parameter is a Typer option/argument: `Annotated[...]` or one of `aliases`."""
    params = parameters(fn)

    def cli_param(p: ast.arg) -> bool:
        ann = p.annotation
        named = isinstance(ann, (ast.Name, ast.Attribute)) and ast.unparse(ann) in aliases
        return _is_annotated(ann) or named

    return bool(params) and all(cli_param(p) for p in params)


def functions(path: Path) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, FUNCTIONS)]


def methods(path: Path) -> set[tuple[str, int]]:
    """(name, line) of every function defined directly in a class body."""
    return {
        (f.name, f.lineno)
        for c in ast.walk(ast.parse(path.read_text()))
        if isinstance(c, ast.ClassDef)
        for f in c.body
        if isinstance(f, FUNCTIONS)
    }


def long_modules() -> list[str]:
    out = []
    for p in py_files(*SHAPED):
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES:
            out.append(f"{rel(p)}: {n} lines")
    return out


def long_functions() -> list[str]:
    out = []
    for p in py_files(*SHAPED):
        for fn in functions(p):
            n = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if n > MAX_FUNCTION_LINES:
                out.append(f"{rel(p)}:{fn.lineno} {fn.name}: {n} lines")
    return out


def imported_aliases(path: Path) -> set[str]:
    """`mod.Name` for every `Annotated` alias of a recsys_cli module imported as `mod`
    (e.g. `from recsys_cli.inference import infer_options as flags` gives `flags.CheckpointOpt`)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recsys_cli"):
            for a in node.names:
                target = ROOT / Path(*node.module.split("."), a.name + ".py")
                if target.is_file():
                    out |= {f"{a.asname or a.name}.{n}" for n in annotated_aliases(target)}
    return out


def wide_signatures() -> list[str]:
    shared, out = annotated_aliases(PKG / "options.py"), []
    for p in py_files("recsys_cli"):
        aliases, in_class = shared | annotated_aliases(p) | imported_aliases(p), methods(p)
        for fn in functions(p):
            n = len(parameters(fn, (fn.name, fn.lineno) in in_class))
            if n > MAX_PARAMETERS and not is_command_signature(fn, aliases):
                out.append(f"{rel(p)}:{fn.lineno} {fn.name}: {n} parameters")
    return out


def long_lines() -> list[str]:
    out = []
    for p in py_files(*SHAPED):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if len(line) > MAX_LINE_CHARS:
                out.append(f"{rel(p)}:{i}: {len(line)} characters")
    return out


def log_discounts() -> list[str]:
    out = []
    for p in py_files("recsys_cli", "bench"):
        if rel(p) == METRICS_MODULE:
            continue
        for i, line in enumerate(code_only(p.read_text()), 1):
            if LOG_DISCOUNT.search(line):
                out.append(f"{rel(p)}:{i}: {line.strip()}")
    return out


def test_no_module_over_400_lines():
    assert not long_modules(), "\n".join(long_modules())


def test_no_function_over_80_lines():
    found = long_functions()
    assert not found, f"{len(found)} functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(found)


def test_no_function_over_12_parameters_outside_typer_commands():
    found = wide_signatures()
    assert not found, f"{len(found)} functions over {MAX_PARAMETERS} parameters:\n" + "\n".join(found)


def test_no_line_over_120_characters():
    found = long_lines()
    assert not found, f"{len(found)} lines over {MAX_LINE_CHARS} characters:\n" + "\n".join(found)


def test_ndcg_discount_only_in_metrics():
    found = log_discounts()
    assert not found, f"HR/NDCG computed outside {METRICS_MODULE} (use its per_prompt/ranking_metrics):\n" + "\n".join(
        found
    )
    metrics_code = "\n".join(code_only((ROOT / METRICS_MODULE).read_text()))
    assert LOG_DISCOUNT.search(metrics_code), f"no log2 discount in {METRICS_MODULE}: update METRICS_MODULE"


def test_the_checks_see_what_they_should():
    """The detectors themselves, on small sources: each catches its case and passes the near miss."""
    tree = ast.parse(
        "def cmd(data: DataDir, n: Annotated[int, typer.Option('-n')] = 1): pass\ndef plain(a: int, b): pass\n"
    )
    cmd, plain = [n for n in tree.body if isinstance(n, FUNCTIONS)]
    assert is_command_signature(cmd, {"DataDir"})
    assert not is_command_signature(cmd, set())  # an unknown alias is not an option
    assert not is_command_signature(plain, {"DataDir"})
    assert len(parameters(ast.parse("def f(a, /, b, *c, d, **e): pass").body[0])) == 5
    cls = ast.parse("class C:\n    def m(self, a): pass\n    @staticmethod\n    def s(self, a): pass\n").body[0]
    m, st = cls.body
    assert [len(parameters(m, True)), len(parameters(st, True)), len(parameters(m))] == [1, 2, 2]
    assert {"DataDir", "Seed", "Quiet"} <= annotated_aliases(PKG / "options.py")
    assert {"Out", "Strict"} <= annotated_aliases(PKG / "commands" / "textualize.py")
    assert "flags.CheckpointOpt" in imported_aliases(PKG / "commands" / "infer.py")
    blanked = code_only("x = 1  # log2(n)\ny = 'log2(n)'\n")
    assert [line.rstrip() for line in blanked] == ["x = 1", "y ="] and [len(b) for b in blanked] == [16, 13]
    for hit in ("1.0 / np.log2(rank + 2)", "math.log2(r + 2)", "np.log(r + 2) / np.log(2)", "x / math.log(2.0)"):
        assert LOG_DISCOUNT.search(hit), hit
    for miss in ("np.log(p)", "dialog2(x)", "log_2 = 3"):
        assert not LOG_DISCOUNT.search(miss), miss


# directory swaps (a whole tree renamed into place) live where their rule does; a single file is
# always written through artifacts/outputs.py (atomic_file / write_file)
DIRECTORY_SWAPS = {
    "recsys_cli/artifacts/io.py": "atomic_dir: a staged directory",
    "recsys_cli/artifacts/runswap.py": "textualize's whole-run swap",
    "recsys_cli/artifacts/layout.py": "stale outputs moved aside",
    "recsys_cli/training/state.py": "the resume-state directory",
    "recsys_cli/modeling/registry.py": "the converted embedded model's cache directory",
}


def test_one_atomic_file_writer():
    temp_files = [rel(p) for p in py_files("recsys_cli", "bench", "scripts") if "mkstemp(" in p.read_text()]
    assert temp_files == ["recsys_cli/artifacts/outputs.py"], temp_files
    renames = {rel(p) for p in py_files("recsys_cli", "bench", "scripts") if "os.replace(" in p.read_text()}
    assert renames - {"recsys_cli/artifacts/outputs.py"} <= set(DIRECTORY_SWAPS), renames
