"""textualize runs in one process (issue 26: its forked worker hung on Ctrl-C and printed
tracebacks; it saved ~0.4 s of ~4.5 s on full Toys, so it was dropped): it starts no process,
and two runs with the same seed write the same bytes.

    python -m pytest tests/unit/test_textualize_parallel.py -q
"""

from __future__ import annotations

import hashlib
import os

from tests.conftest import TOYS, run_cli


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.name != ".recsys.lock"}


def test_textualize_starts_no_process_and_is_deterministic(tmp_path, monkeypatch):
    def no_fork(*args, **kwargs):
        raise AssertionError("textualize started a process")

    monkeypatch.setattr(os, "fork", no_fork)
    monkeypatch.setattr(os, "posix_spawn", no_fork)
    args = ("textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--seed", "3", "--quiet")
    for name in ("a", "b"):
        code, _, err = run_cli(*args, "--out", str(tmp_path / name))
        assert code == 0, err
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
