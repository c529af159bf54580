"""`recsys textualize` replaces a run as a whole (issue 26 item 2, and its part of item 1):
Ctrl-C on a terminal at any stage exits within 2 s with code 130 and one line, and leaves the
complete old run or the complete new one (never a mix, no temporary file, no process); one writer
per directory; commands refuse a directory without a manifest and a mix of two runs; --force
never replaces a user's file that merely has an artifact's name.

    python -m pytest tests/cli/test_textualize_atomic.py -q
    python bench/textualize_interrupt.py        # the same Ctrl-C check, 20 tries, on full Toys
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys_cli.artifacts import io, layout, outputs, runswap, schemas
from recsys_cli.errors import RecsysError
from tests.conftest import ROOT, TOYS, run_cli

sys.path.insert(0, str(ROOT / "bench"))
import textualize_interrupt as ti  # noqa: E402  (the pty harness, shared with the benchmark)

RUN_FILES = (*schemas.TEXTUALIZE_FILES, schemas.MANIFEST)


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _toys(out: Path, *more: str):
    return run_cli(
        "textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--out", str(out), "--quiet", *more
    )


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """The Toys fixture with its 300 users repeated 15 times: textualize takes a few seconds."""
    return ti.enlarged_toys(tmp_path_factory.mktemp("big") / "toys", 15)


@pytest.fixture(scope="module")
def references(big_input, tmp_path_factory):
    """Clean runs of the big input: --seed 0 (the old run), --seed 1 (the new one)."""
    return ti.reference_runs(big_input, tmp_path_factory.mktemp("refs"))


def test_ctrl_c_at_every_stage_leaves_the_old_or_the_new_run(big_input, references, tmp_path):
    old_dir, old, new, seconds = references
    assert old != new and set(old) >= set(RUN_FILES)
    tries = 5
    for k in range(tries):
        delay = ti.START_S + (seconds + 0.2) * k / (tries - 1)  # start-up ... the last renames
        out = tmp_path / f"R{k}"
        fresh = k == 2  # one try into a directory that does not exist yet
        if not fresh:
            shutil.copytree(old_dir, out)
        result = ti.interrupt(ti.textualize_args(big_input, out, 1), delay)
        assert ti.judge(result, out, {} if fresh else old, new, quiet=True) == [], (k, delay, result["output"][-300:])
        if result["exit_s"] is not None and result["code"] != 0:  # 0: the run had finished (judge: new run)
            assert result["code"] == 130 and ti.output_lines(result["output"]) == ["Interrupted (Ctrl-C)."]
            assert result["exit_s"] <= ti.EXIT_LIMIT_S


def test_sigterm_leaves_the_old_run_and_nothing_else(big_input, references, tmp_path):
    old_dir, old, _, seconds = references
    out = tmp_path / "R"
    shutil.copytree(old_dir, out)
    proc = subprocess.Popen(ti.textualize_args(big_input, out, 1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(seconds / 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=ti.EXIT_LIMIT_S + 5)
    assert proc.returncode == 143 and err == b""  # SIGTERM: no line (it is not a Ctrl-C), no traceback
    assert ti.tree(out) == old and ti.temp_leftovers(out) == []


def test_a_second_writer_is_refused_by_the_lock(big_input, references, tmp_path):
    _, _, new, _ = references
    out = tmp_path / "R"
    first = subprocess.Popen(ti.textualize_args(big_input, out, 1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_locked(out / outputs.LOCK)
        code, _, err = _toys(out, "--seed", "2")
        assert code == 2 and len(err.strip().splitlines()) == 1
        assert err.startswith("Error: ") and "another recsys command is writing" in err
    finally:
        _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    assert ti.tree(out) == new  # the first writer's run, whole


def _wait_until_locked(lock: Path, limit_s: float = 10.0) -> None:
    until = time.monotonic() + limit_s
    while time.monotonic() < until:
        if lock.exists():
            fd = os.open(lock, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                return
            finally:
                os.close(fd)
        time.sleep(0.02)
    raise AssertionError("the first textualize never took the lock")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Small clean runs of the Toys fixture with --seed 0 and --seed 1."""
    base = tmp_path_factory.mktemp("two")
    for seed in (0, 1):
        assert _toys(base / f"s{seed}", "--seed", str(seed))[0] == 0
    return base / "s0", base / "s1"


@pytest.mark.parametrize("broken", ["no manifest", "mixed"])
def test_commands_refuse_an_incomplete_or_mixed_run(two_runs, tiny_model, tmp_path, broken):
    old, new = two_runs
    data = tmp_path / "R"
    shutil.copytree(old, data)
    if broken == "no manifest":
        (data / schemas.MANIFEST).unlink()
        expect = f"{data}: not a complete recsys run (no manifest.json); run `recsys textualize ... --out {data}`"
    else:  # what an interrupt between two renames used to leave: the new corpus beside the old rest
        shutil.copy(new / schemas.CORPUS, data / schemas.CORPUS)
        expect = f"{data / schemas.CORPUS}: is not the file {data / schemas.MANIFEST} records"
    before = ti.tree(data)
    for args in (["mask-preview", "-n", "1"], ["build-entities"]):
        code, out, err = run_cli(*args, "--data", str(data), "--model", tiny_model, "--quiet")
        assert code == 2 and err.startswith("Error: ") and expect in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ti.tree(data) == before


def test_force_never_replaces_a_users_file_with_an_artifact_name(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / schemas.ITEMS).write_bytes(b"my own items table\n")
    (out / schemas.MANIFEST).write_text('{"command": "textualize amazon", "mine": true}\n')
    (out / "notes.txt").write_text("my notes\n")
    before = ti.tree(out)
    code, _, err = _toys(out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"({schemas.ITEMS}, {schemas.MANIFEST}, notes.txt)" in err and "--force" not in err  # every blocker
    code, _, err = _toys(out, "--force")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--force" not in err
    assert schemas.ITEMS in err and schemas.MANIFEST in err and "new directory" in err
    assert ti.tree(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)  # not even a lock file


def test_force_keeps_a_run_file_the_user_changed_and_a_run_without_a_ledger(two_runs, tmp_path):
    old, _ = two_runs
    edited = tmp_path / "edited"
    shutil.copytree(old, edited)
    with open(edited / schemas.ITEMS, "ab") as fh:
        fh.write(b"a user's edit")
    legacy = tmp_path / "legacy"  # a run from before the ledger: a manifest, no .recsys-owned.json
    shutil.copytree(old, legacy, ignore=shutil.ignore_patterns(outputs.LEDGER, outputs.LOCK))
    for out, why in ((edited, "recsys did not write (or that changed since)"), (legacy, "older recsys")):
        before = ti.tree(out)
        code, _, err = _toys(out, "--seed", "1", "--force")
        assert code == 2 and why in err and "new directory" in err and len(err.strip().splitlines()) == 1, err
        assert ti.tree(out) == before


def test_a_user_file_beside_the_run_is_listed_then_left_with_force(two_runs, tmp_path):
    old, new = two_runs
    out = tmp_path / "R"
    shutil.copytree(old, out)
    (out / "notes.txt").write_text("my notes\n")
    (out / "plots").mkdir()
    code, _, err = _toys(out, "--seed", "1")
    assert code == 2 and "(notes.txt, plots)" in err and "--force" in err
    code, _, err = _toys(out, "--seed", "1", "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "my notes\n"
    assert {n: _sha(out / n) for n in RUN_FILES} == {n: _sha(new / n) for n in RUN_FILES}
    assert outputs.read_ledger(out) == outputs.read_ledger(new)


def test_stale_outputs_keep_their_ledger_entries(two_runs, tmp_path):
    old, _ = two_runs
    out = tmp_path / "R"
    shutil.copytree(old, out)
    outputs.write_text(out / schemas.ENTITIES_MANIFEST, "{}\n", outputs.ENTITIES)  # as build-entities records it
    assert _toys(out, "--seed", "1")[0] == 0
    stale = out / layout.STALE_DIR / _sha(old / schemas.MANIFEST)[:12]
    assert not (out / schemas.ENTITIES_MANIFEST).exists()
    assert schemas.ENTITIES_MANIFEST not in outputs.read_ledger(out)
    assert outputs.owner_kind(stale / schemas.ENTITIES_MANIFEST) == outputs.ENTITIES


def _stage_run(out: Path, source: Path) -> tuple[Path, dict[str, str]]:
    stage = Path(os.path.realpath(out)) / ".textualize.test.tmp"
    stage.mkdir()
    for name in RUN_FILES:
        shutil.copy(source / name, stage / name)
    return stage, {name: _sha(stage / name) for name in RUN_FILES}


def test_commit_holds_ctrl_c_back_until_the_run_is_whole(two_runs, tmp_path):
    old, new = two_runs
    out = tmp_path / "R"
    shutil.copytree(old, out)
    stage, hashes = _stage_run(out, new)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background CI job ignores SIGINT
    try:
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the swap: delivered after it
            runswap.commit(out, stage, hashes, then=lambda: os.kill(os.getpid(), signal.SIGINT))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert {n: _sha(out / n) for n in RUN_FILES} == {n: _sha(new / n) for n in RUN_FILES}
    assert {n: e["sha256"] for n, e in outputs.read_ledger(out).items()} == hashes


def test_a_failing_swap_puts_the_old_run_back(two_runs, tmp_path):
    old, new = two_runs
    out = tmp_path / "R"
    shutil.copytree(old, out)
    before = ti.tree(out)
    stage, hashes = _stage_run(out, new)
    (stage / schemas.PROMPTS).unlink()  # the rename of the fifth file fails half-way through the swap
    with pytest.raises(FileNotFoundError):
        runswap.commit(out, stage, hashes)
    shutil.rmtree(stage)
    assert ti.tree(out) == before


def test_reading_checks_each_file_once(two_runs, tmp_path):
    old, _ = two_runs
    data = tmp_path / "R"
    shutil.copytree(old, data)
    io.check_run_file(data, schemas.ITEMS)
    key = io._stat_key(data / schemas.ITEMS)
    assert io._HASHED[key] == _sha(data / schemas.ITEMS)
    with open(data / schemas.ITEMS, "r+b") as fh:  # same size, other bytes: caught (mtime moves)
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 1]))
    with pytest.raises(RecsysError, match="is not the file"):
        io.read_artifact(data, schemas.ITEMS)
