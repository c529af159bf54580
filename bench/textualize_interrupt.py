"""Ctrl-C during `recsys textualize`, on a terminal, again and again (issue 26 item 2).

    python bench/textualize_interrupt.py                      # 20 tries on full P5 Toys (../shared/data)
    python bench/textualize_interrupt.py --copies 20 -n 20    # on the Toys fixture, 20 copies of its users
    python bench/textualize_interrupt.py --json out.json      # the counts, also as JSON

Each try copies a clean run made with --seed 0 into R, starts `recsys textualize ... --seed 1
--out R` on a pseudo-terminal of its own (its controlling terminal, as in a shell), waits a
delay, types Ctrl-C (the terminal then sends SIGINT to the whole foreground process group) and
measures how long the command takes to exit. The delays sweep the whole run, from Python's
start-up to the last rename, so every stage is hit. It then checks the exit code (130, or 0 when
the run had finished), the output (with --quiet exactly `Interrupted (Ctrl-C).`; never a
traceback), that no process of the group is left and no temporary file, and that R holds
exactly the old run or exactly the new one (every file's sha256 equal to a clean run's). Odd
tries run without --quiet (the progress bar on), even ones with it. Prints the counts.
The pty helpers are shared with tests/cli/test_textualize_atomic.py.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from common import ROOT, machine, write_json

from recsys_cli.artifacts.outputs import LOCK

RECSYS = Path(sys.executable).with_name("recsys")
FIXTURE_TOYS = ROOT / "fixtures" / "amazon" / "toys"
SHARED_TOYS = ROOT.parent / "shared" / "data" / "amazon" / "toys"
EXIT_LIMIT_S = 2.0  # Ctrl-C must end the command within this
HANG_S = 20.0  # after this the try counts as a hang and the group is killed
START_S = 0.05  # the first delay: the first ~20 ms are Python's own start-up (its `import re`, before any
# recsys code runs), where a Ctrl-C still gets Python's default traceback
IGNORED = {LOCK}  # the lock file stays (empty; recsys's bookkeeping, like the ledger)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def enlarged_toys(dest: Path, copies: int) -> Path:
    """The committed Toys slice (300 P5 users) with its users repeated `copies` times under new
    ids (same items and metadata): a real input large enough for textualize to take seconds."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = (FIXTURE_TOYS / "sequential_data.txt").read_text().split("\n")
    lines = [ln for ln in lines if ln.strip()]
    maps = json.loads((FIXTURE_TOYS / "datamaps.json").read_text())
    out, id2user = [], {}
    for c in range(copies):
        for ln in lines:
            uid, *items = ln.split()
            new = str(int(uid) + c * len(lines))
            out.append(" ".join([new, *items]))
            id2user[new] = f"{maps['id2user'][uid]}-{c}"
    (dest / "sequential_data.txt").write_text("\n".join(out) + "\n")
    (dest / "datamaps.json").write_text(json.dumps({"id2user": id2user, "id2item": maps["id2item"]}))
    shutil.copy(FIXTURE_TOYS / "meta.jsonl", dest / "meta.jsonl")
    return dest


def textualize_args(data_dir: Path, out: Path, seed: int, quiet: bool = True) -> list[str]:
    args = [
        str(RECSYS),
        "textualize",
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    return args + (["--quiet"] if quiet else [])


def tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under root (recsys's lock file aside); {} if absent."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in IGNORED
    }


def temp_leftovers(root: Path) -> list[str]:
    """Temporary files or folders of an atomic write (`.<name>.<random>.tmp`) under root or beside it."""
    root = Path(root)
    found = [p for p in root.rglob("*") if p.name.endswith(".tmp")] if root.exists() else []
    found += [p for p in root.parent.iterdir() if p.name.endswith(".tmp")]
    return sorted(str(p) for p in found)


def _drain(fd: int, sink: list[bytes]) -> None:
    while True:
        try:
            block = os.read(fd, 65536)
        except OSError:  # EIO: every process holding the terminal has gone
            return
        if not block:
            return
        sink.append(block)


def _own_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: the pty becomes the controlling terminal
    # a shell's background job inherits an ignored SIGINT; a terminal's foreground command does not
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(args: list[str], delay: float) -> dict:
    """Run `args` on a new pty, type Ctrl-C after `delay` seconds (unless it ended before) and
    wait for the exit. Returns code, seconds from Ctrl-C to exit (None: ended first), output
    (^C echo and colours removed), whether any process of its group was left, and hang."""
    master, slave = os.openpty()
    env = dict(os.environ, COLUMNS="100", TERM="xterm")
    proc = subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_own_terminal,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, chunks), daemon=True)
    reader.start()
    sent, hang = None, False
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.write(master, b"\x03")  # Ctrl-C: the line discipline signals the foreground group
        sent = time.perf_counter()
        try:
            proc.wait(timeout=HANG_S)
        except subprocess.TimeoutExpired:
            hang = True
    exited = time.perf_counter()
    left = _group_alive(proc.pid)
    if hang or left:
        _kill_group(proc)
    reader.join(timeout=5)
    os.close(master)
    text = _ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("^C", "")
    return {
        "code": proc.returncode,
        "exit_s": None if sent is None else round(exited - sent, 3),
        "output": text,
        "left_processes": left,
        "hang": hang,
    }


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def output_lines(text: str) -> list[str]:
    """The output's lines as a terminal finally shows them (a carriage return redraws a line)."""
    return [ln.split("\r")[-1].strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.split("\r")[-1].strip()]


def judge(result: dict, out: Path, old: dict, new: dict, quiet: bool) -> list[str]:
    """What went wrong in one try (empty: all good)."""
    bad = []
    if result["hang"]:
        bad.append("hang")
    if result["exit_s"] is not None and result["exit_s"] > EXIT_LIMIT_S:
        bad.append(f"slow exit {result['exit_s']} s")
    if result["code"] not in (0, 130):
        bad.append(f"exit code {result['code']}")
    if "Traceback" in result["output"]:
        bad.append("traceback")
    lines = output_lines(result["output"])
    if result["code"] == 130 and (lines[-1:] != ["Interrupted (Ctrl-C)."] or (quiet and len(lines) != 1)):
        bad.append(f"output {lines[-3:]!r}")
    if result["left_processes"]:
        bad.append("processes left")
    if temp_leftovers(out):
        bad.append(f"temporary files {temp_leftovers(out)}")
    state = tree(out)
    if state != old and state != new:
        bad.append("R is neither the old run nor the new one")
    if result["code"] == 0 and state != new:
        bad.append("exit 0 without the new run")
    if not old and state == {} and out.exists():
        bad.append("an empty run directory was left")
    return bad


def reference_runs(data_dir: Path, work: Path) -> tuple[Path, dict, dict, float]:
    """Clean runs with --seed 0 (the old run) and --seed 1 (the new one); the new run's seconds."""
    old_dir, new_dir = work / "old", work / "new"
    subprocess.run(textualize_args(data_dir, old_dir, 0), check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run(textualize_args(data_dir, new_dir, 1), check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return old_dir, tree(old_dir), tree(new_dir), seconds


def sweep(data_dir: Path, work: Path, tries: int, over_new_dir_every: int = 4) -> dict:
    """`tries` interrupted re-runs over a copy of the old run (every `over_new_dir_every`-th into a
    new directory instead), the delays spread over the whole run."""
    old_dir, old, new, seconds = reference_runs(data_dir, work)
    counts = {
        "tries": tries,
        "clean_run_s": round(seconds, 2),
        "interrupted": 0,
        "finished_first": 0,
        "hangs": 0,
        "tracebacks": 0,
        "bad_output": 0,
        "processes_left": 0,
        "temp_left": 0,
        "old_run": 0,
        "new_run": 0,
        "mixed": 0,
        "max_exit_s": 0.0,
        "failures": [],
    }
    for k in range(tries):
        delay = START_S + (seconds + 0.3) * k / max(tries - 1, 1)
        out = work / f"R{k}"
        fresh = over_new_dir_every and k % over_new_dir_every == over_new_dir_every - 1
        if not fresh:
            shutil.copytree(old_dir, out)
        quiet = k % 2 == 0
        result = interrupt(textualize_args(data_dir, out, 1, quiet), delay)
        bad = judge(result, out, {} if fresh else old, new, quiet)
        _count(counts, result, tree(out), {} if fresh else old, new, bad, out)
        if bad:
            counts["failures"].append({"try": k, "delay_s": round(delay, 2), "problems": bad})
        shutil.rmtree(out, ignore_errors=True)
    return counts


def _count(counts: dict, result: dict, state: dict, old: dict, new: dict, bad: list[str], out: Path) -> None:
    counts["interrupted" if result["exit_s"] is not None else "finished_first"] += 1
    counts["hangs"] += result["hang"]
    counts["tracebacks"] += "Traceback" in result["output"]
    counts["bad_output"] += any(b.startswith("output") for b in bad)
    counts["processes_left"] += result["left_processes"]
    counts["temp_left"] += bool(temp_leftovers(out))
    counts["new_run" if state == new else "old_run" if state == old else "mixed"] += 1
    counts["max_exit_s"] = max(counts["max_exit_s"], result["exit_s"] or 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--tries", type=int, default=20)
    ap.add_argument(
        "--copies",
        type=int,
        default=0,
        help="use the Toys fixture with its users repeated this often "
        "(default: full P5 Toys from ../shared/data when present, else 20 copies)",
    )
    ap.add_argument("--json", type=Path, help="also write the counts here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="textualize-interrupt-") as tmp:
        work = Path(tmp)
        if args.copies or not SHARED_TOYS.is_dir():
            data_dir, what = enlarged_toys(work / "input", args.copies or 20), f"Toys fixture x{args.copies or 20}"
        else:
            data_dir, what = SHARED_TOYS, "full P5 Toys"
        counts = {"data": what, **sweep(data_dir, work, args.tries)}
    for key, value in counts.items():
        if key != "failures":
            print(f"{key:>16}: {value}")
    for failure in counts["failures"]:
        print("FAIL", failure)
    if args.json:
        write_json(args.json, {**counts, "machine": machine()})
    sys.exit(1 if counts["failures"] else 0)


if __name__ == "__main__":
    main()
