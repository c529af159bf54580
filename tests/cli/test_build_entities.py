"""`recsys build-entities` as a user runs it.

python -m pytest tests/cli/test_build_entities.py
"""

from __future__ import annotations

import json
import shutil

import polars as pl

from recsys_cli.artifacts import schemas
from tests.conftest import run_cli

OUTPUTS = (schemas.ENTITIES, schemas.ENTITIES_MINHASH, schemas.NEAR_DUPLICATES)


def test_build_entities_outputs_and_determinism(toys_entities, tiny_model, tmp_path):
    for name in (*OUTPUTS, schemas.ENTITIES_MANIFEST):
        assert (toys_entities / name).is_file(), name
    man = json.loads((toys_entities / schemas.ENTITIES_MANIFEST).read_text())
    assert man["command"] == "build-entities" and man["rows"][schemas.ENTITIES] == len(
        pl.read_parquet(toys_entities / schemas.ENTITIES)
    )
    assert man["summary"]["in_context_match"] == man["summary"]["in_context_spans_checked"] > 0
    # same inputs -> byte-identical artifacts (run again on a copy, with --json)
    again = tmp_path / "R"
    shutil.copytree(toys_entities, again)
    for name in OUTPUTS:
        (again / name).unlink()
    code, out, err = run_cli("build-entities", "--data", str(again), "--model", tiny_model, "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["by_kind"]["item"] > 1000 and summary["by_kind"]["category"] > 10
    assert err == ""  # --quiet: no progress, no logs
    for name in OUTPUTS:
        assert (again / name).read_bytes() == (toys_entities / name).read_bytes(), name


def test_build_entities_errors(tmp_path, tiny_model, toys_data):
    code, out, err = run_cli("build-entities", "--data", str(tmp_path / "missing"), "--model", tiny_model, "--quiet")
    assert code == 2 and err.startswith("Error: ") and "missing" in err and "Traceback" not in err
    (tmp_path / "R").mkdir()
    (tmp_path / "R" / schemas.ITEMS).write_text("not parquet")
    code, out, err = run_cli("build-entities", "--data", str(tmp_path / "R"), "--model", tiny_model, "--quiet")
    assert code == 2 and "R: not a complete recsys run (no manifest.json)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "R" / schemas.ENTITIES).exists()
    # a run from a recsys whose manifest kept no file hashes (nothing to compare), its items table broken
    old = tmp_path / "old"
    shutil.copytree(toys_data, old)
    man = json.loads((old / schemas.MANIFEST).read_text())
    (old / schemas.MANIFEST).write_text(json.dumps({k: v for k, v in man.items() if k != "files"}))
    (old / schemas.ITEMS).write_text("not parquet")
    code, out, err = run_cli("build-entities", "--data", str(old), "--model", tiny_model, "--quiet")
    assert code == 2 and "items.parquet: not a readable Parquet file" in err and len(err.strip().splitlines()) == 1
    assert not (old / schemas.ENTITIES).exists()
