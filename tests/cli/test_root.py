"""Root CLI: --help, --version, and no torch import for help screens."""

from __future__ import annotations

import subprocess
import sys

from recsys_cli import __version__
from tests.conftest import run_cli

PROBE = (
    "import sys\n"
    "from recsys_cli.main import main\n"
    "try:\n"
    "    main({args!r})\n"
    "except SystemExit as e:\n"
    "    assert e.code in (0, None), e.code\n"
    "assert 'torch' not in sys.modules, 'torch was imported'\n"
    "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
)


def _probe(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True, timeout=120)


def test_version():
    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"recsys {__version__}"


def test_help_lists_textualize():
    code, out, _ = run_cli("--help")
    assert code == 0 and "textualize" in out


def test_help_screens_do_not_import_torch():
    for args in (
        ["--help"],
        ["textualize", "--help"],
        ["textualize", "amazon", "--help"],
        ["textualize", "table", "--help"],
        ["--version"],
    ):
        proc = _probe(args)
        assert proc.returncode == 0, f"{args}: {proc.stderr[-500:]}"
