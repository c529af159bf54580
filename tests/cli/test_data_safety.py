"""`textualize --out` never loses a file it did not write (issue 11 items 1 and 5): a user's
file survives (refused without --force, untouched with it), an input inside --out is an
error and survives, and a re-run replaces only textualize's files while moving outputs
computed from the old data into stale/<fingerprint>/ (artifacts/layout.py).

    python -m pytest tests/cli/test_data_safety.py -q
"""

from __future__ import annotations

import hashlib
import json
import shutil

from recsys_cli.artifacts import layout, schemas
from tests.conftest import FIXTURES, GIFT_CARDS, MUSICAL, run_cli

TOYS14 = ["amazon", "-c", "toys", "--data-dir", str(FIXTURES / "amazon" / "toys_meta2014")]


def _tree(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _textualize(*args):
    return run_cli("textualize", *args, "--quiet")


def test_users_file_in_out_is_refused_then_kept_with_force(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    (out / "sub").mkdir()
    (out / "sub" / "data.csv").write_text("a,b\n")
    code, _, err = _textualize(*TOYS14, "--out", str(out))
    assert (
        code != 0
        and err.startswith("Error: ")
        and "notes.txt" in err
        and "--force" in err
        and len(err.strip().splitlines()) == 1
    )
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sub"]
    code, stdout, err = _textualize(*TOYS14, "--out", str(out), "--force")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / "sub" / "data.csv").read_text() == "a,b\n"
    assert "left untouched" in stdout
    assert all((out / n).is_file() for n in schemas.TEXTUALIZE_FILES)
    # a later plain re-run still refuses (the foreign file is still there), a forced one keeps it
    assert _textualize(*TOYS14, "--out", str(out))[0] != 0
    assert _textualize(*TOYS14, "--out", str(out), "--force")[0] == 0 and (out / "notes.txt").is_file()


def test_input_inside_out_is_an_error_and_survives(tmp_path):
    d = tmp_path / "data"
    shutil.copytree(FIXTURES / "amazon" / "toys_meta2014", d)
    before = _tree(d)
    for out in (d, d.parent):
        code, _, err = _textualize("amazon", "-c", "toys", "--data-dir", str(d), "--out", str(out), "--force")
        assert code != 0 and "contains the input" in err and len(err.strip().splitlines()) == 1
    assert _tree(d) == before
    table = tmp_path / "t"
    table.mkdir()
    shutil.copy(FIXTURES / "table" / "interactions.csv", table / "interactions.csv")
    code, _, err = _textualize(
        "table",
        "-i",
        str(table / "interactions.csv"),
        "--user-col",
        "reviewerID",
        "--item-col",
        "asin",
        "--out",
        str(table),
        "--force",
    )
    assert code != 0 and "contains the input" in err
    assert sorted(p.name for p in table.iterdir()) == ["interactions.csv"]


def _downstream(out):
    """Stand-ins for what build-entities and baseline write (their names, from layout.py)."""
    for name in layout.RUN_OWNERS["build-entities"]:
        (out / name).write_text(f"{name} from the old data\n")
    (out / schemas.PREDICTIONS_DIR / "test").mkdir(parents=True)
    (out / schemas.PREDICTIONS_DIR / "test" / "popularity.parquet").write_text("old predictions\n")


def test_rerun_same_data_keeps_downstream_files(tmp_path):
    out = tmp_path / "R"
    assert _textualize(*TOYS14, "--out", str(out))[0] == 0
    _downstream(out)
    before = _tree(out)
    code, stdout, err = _textualize(*TOYS14, "--out", str(out))
    assert code == 0, err
    assert _tree(out) == before and "moved aside" not in stdout
    assert not (out / layout.STALE_DIR).exists()


def test_rerun_other_data_replaces_own_files_and_moves_stale_outputs(tmp_path):
    out = tmp_path / "R"
    assert _textualize(*TOYS14, "--out", str(out))[0] == 0
    old_fp = hashlib.sha256((out / schemas.MANIFEST).read_bytes()).hexdigest()
    old_items = (out / schemas.ITEMS).read_bytes()
    _downstream(out)
    (out / "ckpt").mkdir()
    (out / "ckpt" / schemas.CKPT_CONFIG).write_text("{}")  # a checkpoint kept inside R
    code, stdout, err = _textualize(
        "amazon", "-c", "Musical_Instruments", "--data-dir", str(MUSICAL), "--out", str(out), "--json"
    )
    assert code == 0, err
    notes = json.loads(stdout)["notes"]
    assert any("moved aside" in n and f"stale/{old_fp[:12]}" in n for n in notes)
    stale = out / layout.STALE_DIR / old_fp[:12]
    for name in layout.RUN_OWNERS["build-entities"]:
        assert not (out / name).exists() and (stale / name).read_text() == f"{name} from the old data\n"
    assert (stale / schemas.PREDICTIONS_DIR / "test" / "popularity.parquet").read_text() == "old predictions\n"
    assert (out / schemas.ITEMS).read_bytes() != old_items
    assert json.loads((out / schemas.MANIFEST).read_text())["command"] == "textualize amazon"
    assert (out / "ckpt" / schemas.CKPT_CONFIG).read_text() == "{}"
    # a third run on yet other data moves the second generation beside the first, never over it
    _downstream(out)
    fp2 = hashlib.sha256((out / schemas.MANIFEST).read_bytes()).hexdigest()
    assert _textualize("amazon", "-c", "Gift_Cards", "--data-dir", str(GIFT_CARDS), "--out", str(out))[0] == 0
    assert (out / layout.STALE_DIR / fp2[:12] / schemas.ENTITIES).is_file() and (stale / schemas.ENTITIES).is_file()


def test_artifact_named_files_without_manifest_are_refused(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / schemas.ITEMS).write_text("not ours\n")
    for force in ((), ("--force",)):  # never replaced, and no flag is suggested (issue 26)
        code, _, err = _textualize(*TOYS14, "--out", str(out), *force)
        assert code != 0 and "recsys artifact names" in err and "items.parquet" in err and "--force" not in err
    assert (out / schemas.ITEMS).read_text() == "not ours\n"


def test_failed_run_leaves_an_existing_run_untouched(tmp_path):
    out = tmp_path / "R"
    assert _textualize(*TOYS14, "--out", str(out))[0] == 0
    _downstream(out)
    before = _tree(out)
    code, _, err = _textualize(
        "table",
        "-i",
        str(FIXTURES / "table" / "interactions.csv"),
        "--user-col",
        "reviewerID",
        "--item-col",
        "asin",
        "--rating-col",
        "stars",
        "--out",
        str(out),
    )
    assert code != 0 and "stars" in err
    assert _tree(out) == before
