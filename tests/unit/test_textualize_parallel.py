"""The two-process path of textualize (used for large inputs on 2+ cores) must write exactly
the bytes of the in-process path.

    python -m pytest tests/unit/test_textualize_parallel.py -q
"""

from __future__ import annotations

import hashlib
import os

import pytest

from recsys_cli.data import textualize as tx
from tests.conftest import TOYS, run_cli


def _hashes(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the two-process path needs 2+ cores")
def test_two_process_path_writes_identical_files(tmp_path, monkeypatch):
    args = ("textualize", "amazon", "--category", "toys", "--data-dir", str(TOYS), "--seed", "3", "--quiet")
    code, _, err = run_cli(*args, "--out", str(tmp_path / "inline"))
    assert code == 0, err
    used = []
    real = tx._pool

    def spy(n_users):
        pool = real(n_users)
        used.append(pool is not None)
        return pool

    monkeypatch.setattr(tx, "PARALLEL_MIN_USERS", 1)
    monkeypatch.setattr(tx, "_pool", spy)
    code, _, err = run_cli(*args, "--out", str(tmp_path / "forked"))
    assert code == 0, err
    assert used == [True]
    assert _hashes(tmp_path / "inline") == _hashes(tmp_path / "forked")
