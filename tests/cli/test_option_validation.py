"""Option validation: every numeric option is checked while the command line is parsed, and every
usage error is one line on stderr with exit code 2, nothing written, no traceback.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/cli/test_option_validation.py

Parse-time failures stop before a command body runs, so these tests import no torch (one test
checks that in a fresh interpreter) and take about a second in all.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_cli.options import RECIPE_RANGES, Range
from tests.conftest import ROOT, TOYS, run_cli

TINY_RECIPE = str(ROOT / "recipes" / "pretrain" / "tiny-cpu.yaml")


def _tree(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root` (directories by name)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A run directory with a file of its own, an output path that must not appear."""
    (tmp_path / "R").mkdir()
    (tmp_path / "R" / "notes.txt").write_text("a user's file\n")
    return tmp_path


def _commands(work: Path) -> dict[str, list[str]]:
    """Each command with its required options; the bad option is appended to these."""
    data, out = str(work / "R"), str(work / "out")
    return {
        "pretrain": ["pretrain", "--data", data, "--out", out],
        "pretrain-recipe": ["pretrain", "--data", data, "--out", out, "--config", TINY_RECIPE],
        "infer": ["infer", "--data", data, "--checkpoint", "none", "--out", out],
        "sasrec": ["baseline", "sasrec", "--data", data, "--out", out],
        "mf": ["baseline", "mf", "--data", data, "--out", out],
        "itemknn": ["baseline", "itemknn", "--data", data, "--out", out],
        "popularity": ["baseline", "popularity", "--data", data, "--out", out],
        "textualize": ["textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--out", out],
        "mask-preview": ["mask-preview", "--data", data],
        "build-entities": ["build-entities", "--data", data],
        "show-answers": ["show", "answers", "--data", data, "-p", str(work / "p.parquet")],
        "show-user": ["show", "user", "--data", data, "-p", str(work / "p.parquet")],
    }


# (command, option, bad value, the range the message must state)
OUT_OF_RANGE = [
    ("pretrain", "--seed", "-5", "0<=x<=4294967295"),
    ("pretrain", "--max-steps", "0", "x>=1"),
    ("pretrain", "--max-steps", "-3", "x>=1"),
    ("pretrain", "--batch-size", "0", "x>=1"),
    ("pretrain", "--lr", "-1", "x>0"),
    ("pretrain", "--lr", "nan", "x>0"),
    ("pretrain", "--lora-rank", "0", "x>=1"),
    ("pretrain", "--lora-dropout", "1", "0<=x<1"),
    ("pretrain", "--max-length", "8", "x>=16"),
    ("pretrain-recipe", "--lr", "0", "x>0"),  # a flag's value is blamed on the flag, not on the recipe
    ("pretrain-recipe", "--batch-size", "0", "x>=1"),
    ("infer", "--top-k", "0", "x>=1"),
    ("infer", "--rerank-k", "0", "x>=1"),
    ("infer", "--fusion", "1.5", "0<=x<=1"),
    ("infer", "--batch-size", "0", "x>=1"),
    ("infer", "--seed", "-1", "0<=x<=4294967295"),
    ("sasrec", "--top-k", "201", "1<=x<=200"),
    ("sasrec", "--max-epochs", "0", "x>=1"),
    ("sasrec", "--lr", "-0.1", "x>0"),
    ("sasrec", "--dropout", "1", "0<=x<1"),
    ("sasrec", "--negatives", "-1", "x>=0"),
    ("mf", "--dim", "0", "x>=1"),
    ("itemknn", "--window", "0", "x>=1"),
    ("popularity", "--top-k", "0", "1<=x<=200"),
    ("textualize", "--seed", "-5", "0<=x<=4294967295"),
    ("textualize", "--min-user-items", "2", "x>=3"),
    ("textualize", "--docs-per-user", "0", "x>=1"),
    ("mask-preview", "-n", "0", "x>=1"),
    ("build-entities", "--num-perm", "8", "16<=x<=1024"),
    ("build-entities", "--threshold", "1.5", "0.1<=x<=1"),
    ("show-answers", "-n", "0", "x>=1"),
    ("show-user", "-k", "0", "x>=1"),
]


def _one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, (code, err)
    assert out == "", out
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("command", "option", "value", "allowed"), OUT_OF_RANGE, ids=[f"{c}{o}={v}" for c, o, v, _ in OUT_OF_RANGE]
)
def test_out_of_range_is_one_line_naming_option_and_range(work, command, option, value, allowed):
    before = _tree(work)
    line = _one_line_error(*run_cli(*_commands(work)[command], option, value))
    assert line.startswith(f"Error: {option}"), line
    assert value in line or str(float(value)) in line, line  # the value as given, or as the float it parsed to
    assert allowed in line, line
    assert _tree(work) == before  # nothing written, nothing changed


def test_seed_message_is_exact(work):
    _, out, err = run_cli(*_commands(work)["mask-preview"], "--seed", "-5")
    assert (out, err) == ("", "Error: --seed: -5 is not in the range 0<=x<=4294967295\n")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (
            ["show", "answers", "--data", "R", "-p", "p.parquet", "--bogus"],
            ["No such option: --bogus", "recsys show answers --help"],
        ),
        (["pretrain", "--data", "R", "--sede", "1"], ["No such option: --sede", "--seed"]),
        (["--bogus"], ["No such option: --bogus"]),
        (["show", "answers", "--data", "R"], ["--predictions"]),  # a missing required option
        (["show"], ["Missing command", "recsys show --help"]),
        (["show", "bogus"], ["bogus"]),
        (["pretrain", "--data", "R", "--max-steps", "many"], ["--max-steps", "integer"]),
        (["infer", "--data", "R", "--checkpoint", "none", "--fusion", "half"], ["--fusion", "number"]),
        (["pretrain", "--data", "R", "--max-steps"], ["--max-steps", "argument"]),
    ],
)
def test_usage_errors_are_one_line(args, names):
    line = _one_line_error(*run_cli(*args))
    for name in names:
        assert name in line, line


def test_bad_choice_is_one_line(work):
    line = _one_line_error(*run_cli(*_commands(work)["infer"], "--precision", "fp8"))
    assert line.startswith("Error: --precision: ") and "fp8" in line, line


def test_recipe_values_name_the_recipe_file_and_key(work):
    recipe = work / "bad.yaml"
    recipe.write_text("model:\n  name: fixtures/tiny-model\ntrain:\n  lr: -1\n  max_steps: 2\n")
    before = _tree(work)
    line = _one_line_error(*run_cli(*_commands(work)["pretrain"], "--config", str(recipe)))
    assert line == f"Error: {recipe}, line 4: train.lr in the range x>0; got -1", line
    recipe.write_text("train:\n  max_steps: 0\n")
    line = _one_line_error(*run_cli(*_commands(work)["pretrain"], "--config", str(recipe)))
    assert line == f"Error: {recipe}, line 2: train.max_steps in the range x>=1; got 0", line
    recipe.write_text("model:\n  positions: rope\n")
    line = _one_line_error(*run_cli(*_commands(work)["pretrain"], "--config", str(recipe)))
    assert line == f"Error: {recipe}, line 2: model.positions one of glm, linear; got 'rope'", line
    # --set values come from the command line, not from the recipe
    line = _one_line_error(*run_cli(*_commands(work)["pretrain-recipe"], "--set", "train.batch_size=0"))
    assert line == "Error: command line: train.batch_size in the range x>=1; got 0", line
    after = _tree(work)
    assert {k: after[k] for k in after if k != "bad.yaml"} == {k: before[k] for k in before if k != "bad.yaml"}


def test_every_pretrain_flag_has_its_recipe_keys_range():
    """The flags and the recipe check one table: a flag's range is its key's."""
    from recsys_cli.commands.pretrain import FLAG_KEYS

    numeric = {flag: key for flag, key in FLAG_KEYS.items() if key in RECIPE_RANGES}
    assert {"max_steps", "lr", "batch_size", "lora_rank", "seed"} <= set(numeric)
    for flag, key in numeric.items():
        option = "--" + flag.replace("_", "-")
        rule = RECIPE_RANGES[key]
        low = rule.low - 1 if not rule.low_open else rule.low
        value = str(int(low) if float(low).is_integer() else low)
        line = _one_line_error(*run_cli("pretrain", "--data", "R", option, value))
        assert line.startswith(f"Error: {option}: ") and rule.text in line, line


def test_pretrain_shortcuts_come_from_one_table(monkeypatch):
    """SHORTCUTS declares each flag once: --help lists it, and its value lands on its recipe key."""
    from recsys_cli.commands.pretrain import FLAG_KEYS, SHORTCUTS, _overrides

    monkeypatch.setenv("COLUMNS", "300")  # whole option names in the help table

    assert len(SHORTCUTS) == 19 and FLAG_KEYS == {flag: key for flag, (key, _) in SHORTCUTS.items()}
    code, out, _ = run_cli("pretrain", "--help")
    assert code == 0
    for flag in SHORTCUTS:
        assert "--" + flag.replace("_", "-") in out, flag
    given = {flag: None for flag in SHORTCUTS} | {
        "lora_targets": "q_proj, v_proj",
        "lr": 0.01,
        "trust_remote_code": False,
    }
    assert dict(_overrides(given))["lora.targets"] == ["q_proj", "v_proj"]
    assert dict(_overrides(given))["train.lr"] == 0.01 and dict(_overrides(given))["model.trust_remote_code"] is None
    line = _one_line_error(*run_cli("pretrain", "--data", "R", "--precision", "fp16"))
    assert line == "Error: command line: train.precision one of auto, fp32, bf16; got 'fp16'", line


def test_sasrec_flags_take_their_defaults_from_the_config():
    import inspect

    from recsys_cli.baselines.sasrec import SASRecConfig
    from recsys_cli.commands.baseline import SASREC_FLAGS, sasrec

    params, cfg = inspect.signature(sasrec).parameters, SASRecConfig()
    for name in SASREC_FLAGS:
        assert params[name].default == getattr(cfg, name), name
    line = _one_line_error(*run_cli("baseline", "sasrec", "--data", "R", "--patience", "0"))
    assert line.startswith("Error: --patience: 0 is not in the range x>=1"), line


def test_range_text_and_violations():
    assert Range(low=1).text == "x>=1" and Range(low=0, low_open=True).text == "x>0"
    assert Range(low=0, high=1).text == "0<=x<=1" and Range(low=0, high=1, high_open=True).text == "0<=x<1"
    assert Range(high=5).text == "x<=5"
    assert Range(low=1).violation(1) is None and Range(low=1).violation(0) == "0 is not in the range x>=1"
    assert Range(low=0, low_open=True).violation(0.0) is not None
    assert Range(low=0).violation(float("inf")) is not None and Range(low=0).violation(float("nan")) is not None
    assert Range(low=0, high=2**32 - 1).violation(10**40) is not None


def test_help_version_and_no_args_still_work():
    code, out, err = run_cli("--version")
    assert code == 0 and out.startswith("recsys ") and err == ""
    code, out, err = run_cli("pretrain", "--help")
    assert code == 0 and "--max-steps" in out and err == ""
    code, out, err = run_cli("--help")
    assert code == 0 and "textualize" in out
    code, out, err = run_cli()  # no arguments: the help, as before
    assert "Usage" in out and "textualize" in out and "Error" not in err
    code, out, err = run_cli("textualize")
    assert "amazon" in out and "Error" not in err


def test_model_help_lists_no_tiny_random():
    code, out, _ = run_cli("infer", "--help")
    assert code == 0 and "--model" in out and "tiny-random" not in out


CTRL_C_PROBE = """
import os, signal, sys
from recsys_cli.main import main

armed = [True]

def press_ctrl_c(event, args):  # the user presses Ctrl-C at the command's first file access
    if armed[0] and event == "open":
        armed[0] = False
        os.kill(os.getpid(), signal.SIGINT)

signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal, even under a background CI job
sys.addaudithook(press_ctrl_c)
main(sys.argv[1:])
"""


def test_ctrl_c_is_exit_130_and_one_line(work):
    before = _tree(work)
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C_PROBE, *_commands(work)["pretrain-recipe"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.splitlines() == ["Interrupted (Ctrl-C)."], proc.stderr
    assert _tree(work) == before


TORCH_FREE_PROBE = """
import sys
from recsys_cli.main import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert e.code == 2, e.code
assert "torch" not in sys.modules, "torch was imported"
"""


def test_parse_time_errors_import_no_torch(work):
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE_PROBE, *_commands(work)["pretrain"], "--max-steps", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["Error: --max-steps: 0 is not in the range x>=1"]
