"""One writer rule for every output path (issue 26): every option that names an output file or folder,
pointed at a user's file, at a run's or checkpoint's own artifact and at one of the command's inputs,
is refused with exit code 2 and one line naming the path, and not one file changes.

    python -m pytest -q -p no:cacheprovider tests/cli/test_writers_never_clobber.py

The world (module-scoped, ~15 s): a copy of the textualized Toys run with entities (R), a popularity
baseline in R, a 2-step LoRA checkpoint of the tiny model (C), a user's folder (U) and two shard files
(S). Each case hashes every file under all of them before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from recsys_cli.artifacts import layout, outputs
from tests.conftest import ROOT, run_cli

TINY = str(ROOT / "recipes/pretrain/tiny-cpu.yaml")
FLAGS_THAT_DESTROY = ("--overwrite", "--force", "--resume")


def _pretrain_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        "--data",
        str(data),
        "--config",
        TINY,
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--max-length",
        "48",
        "--eval-every",
        "100",
        "--save-every",
        "100",
        "--modules-to-save",
        "none",
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory, toys_entities, tiny_model):
    root = tmp_path_factory.mktemp("clobber")
    R, C, U, S = root / "R", root / "C", root / "U", root / "S"
    shutil.copytree(toys_entities, R)
    code, _, err = run_cli("baseline", "popularity", "--data", str(R), "--quiet")
    assert code == 0, err
    code, _, err = run_cli(*_pretrain_args(R, C))
    assert code == 0, err
    U.mkdir()
    (U / "user.bin").write_bytes(os.urandom(512))  # a user's file with random content
    S.mkdir()
    for i in range(2):  # merge-predictions refuses before it reads its shards
        shutil.copy(R / "predictions" / "test" / "popularity.parquet", S / f"p.shard-{i}-of-2.parquet")
    return {"root": root, "R": R, "C": C, "U": U, "S": S, "model": tiny_model}


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under root (the set of paths included)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_world_is_provably_recsys_s(world):
    """What the refusals below rest on: each output is recorded in its folder's ledger with its kind."""
    R, C = world["R"], world["C"]
    pop = R / "predictions" / "test" / "popularity.parquet"
    assert outputs.owner_kind(pop) == outputs.baseline_predictions("popularity")
    names = layout.CKPT_OWNERS["pretrain"]
    assert {n: outputs.owner_kind(C / n) for n in names} == dict.fromkeys(names, outputs.CHECKPOINT)
    assert all(outputs.owner_kind(R / n) == outputs.ENTITIES for n in layout.RUN_OWNERS["build-entities"])


# (case id, argv with {R} {C} {U} {S} {model} {out}, the run artifact it is pointed at, an input of the command)
CASES = [
    (
        "baseline --out",
        "baseline popularity --data {R} --out {out}",
        "{C}/recsys_checkpoint.json",
        "{R}/prompts.parquet",
    ),
    ("itemknn --out", "baseline itemknn --data {R} --out {out}", "{R}/entities.parquet", "{R}/sequences.parquet"),
    ("mf --out", "baseline mf --data {R} --max-epochs 1 --out {out}", "{C}/tokenizer", "{R}/interactions.parquet"),
    ("mean --out", "baseline mean --data {R} --out {out}", "{R}/entities.near_duplicates.parquet", "{R}/manifest.json"),
    (
        "sasrec --valid-out",
        "baseline sasrec --data {R} --max-epochs 1 --out {U}/t.parquet --valid-out {out}",
        "{R}/predictions/test/popularity.parquet",
        "{R}/items.parquet",
    ),
    (
        "sasrec --embeddings-out",
        "baseline sasrec --data {R} --max-epochs 1 --out {U}/t.parquet --embeddings-out {out}",
        "{C}/extras.safetensors",
        "{R}/prompts.parquet",
    ),
    (
        "infer --out",
        "infer --data {R} --checkpoint {C} --family sequential --limit 1 --top-k 2 --out {out}",
        "{R}/predictions/test/popularity.parquet",
        "{C}/recsys_checkpoint.json",
    ),
    (
        "infer --overwrite",
        "infer --data {R} --checkpoint {C} --family sequential --limit 1 --overwrite --out {out}",
        "{R}/manifest.json",
        "{C}/adapter/adapter_model.safetensors",
    ),
    (
        "infer --candidates-from",
        "infer --data {R} --checkpoint none --model {model} --family sequential --limit 1 "
        "--candidates-from {R}/predictions/test/popularity.parquet --rerank-k 5 --out {out}",
        "{R}/entities.minhash.parquet",
        "{R}/predictions/test/popularity.parquet",
    ),
    (
        "merge-predictions",
        "merge-predictions --out {out} {S}/p.shard-0-of-2.parquet {S}/p.shard-1-of-2.parquet",
        "{R}/items.parquet",
        "{S}/p.shard-1-of-2.parquet",
    ),
    (
        "merge --overwrite",
        "merge-predictions --overwrite --out {out} {S}/p.shard-0-of-2.parquet {S}/p.shard-1-of-2.parquet",
        "{R}/predictions/test/popularity.parquet",
        "{S}/p.shard-0-of-2.parquet",
    ),
    (
        "score --markdown",
        "score --data {R} -p {R}/predictions/test/popularity.parquet --markdown {out}",
        "{C}/metrics.jsonl",
        "{R}/predictions/test/popularity.parquet",
    ),
    (
        "score --plot",
        "score --data {R} -p {R}/predictions/test/popularity.parquet --plot {out}",
        "{C}/manifest.json",
        "{R}/prompts.parquet",
    ),
    ("pretrain --out", "pretrain --data {R} --config " + TINY + " --max-steps 1 --out {out}", "{C}/adapter", "{R}"),
    (
        "pretrain --overwrite",
        "pretrain --data {R} --config " + TINY + " --max-steps 1 --overwrite --out {out}",
        "{C}/train_state",
        "{R}/corpus.parquet",
    ),
    ("pretrain --resume", "pretrain --data {R} --config " + TINY + " --resume --out {out}", "{R}/items.parquet", "{R}"),
]


def _target(world, case, which: str) -> Path:
    _, argv, run_artifact, an_input = case
    fill = {k: world[k] for k in ("R", "C", "U", "S")}
    if which == "user":  # pretrain writes a folder: the user's folder; every other option: the user's file
        return world["U"] if argv.startswith("pretrain") else world["U"] / "user.bin"
    return Path((run_artifact if which == "run artifact" else an_input).format(**fill))


@pytest.mark.parametrize("which", ["user", "run artifact", "input"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_writing_option_refuses_and_changes_nothing(world, case, which):
    target = _target(world, case, which)
    assert target.exists()
    fill = {k: str(world[k]) for k in ("R", "C", "U", "S", "model")}
    argv = case[1].format(**fill, out=target).split() + ["--quiet"]
    before = snapshot(world["root"])
    code, _, err = run_cli(*argv)
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("Error:") and str(target) in lines[0], err
    assert not any(flag in lines[0] for flag in FLAGS_THAT_DESTROY), err  # no advice that would destroy a file
    assert snapshot(world["root"]) == before


def test_build_entities_leaves_a_user_s_file_of_an_entity_name(world, tmp_path):
    R = tmp_path / "R"
    shutil.copytree(world["R"], R)
    (R / "entities.manifest.json").write_text('{"mine": true}\n')  # the user's own file, or one edited since
    (R / "entities.parquet").unlink()
    (R / "entities.parquet").write_bytes(os.urandom(300))
    before = snapshot(R)
    code, _, err = run_cli("build-entities", "--data", str(R), "--model", world["model"], "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "entities.manifest.json" in err and "entities.parquet" in err
    assert not any(f in err for f in FLAGS_THAT_DESTROY)
    assert snapshot(R) == before


def test_baseline_reruns_into_its_own_file_but_never_a_user_edited_one(world, tmp_path):
    R = tmp_path / "R"
    shutil.copytree(world["R"], R)
    own = R / "predictions" / "test" / "popularity.parquet"
    first = own.read_bytes()
    code, _, err = run_cli("baseline", "popularity", "--data", str(R), "--quiet")
    assert code == 0, err
    assert own.read_bytes() == first and outputs.owner_kind(own) == outputs.baseline_predictions("popularity")
    with open(own, "ab") as fh:  # the user edits recsys's file: it is the user's now
        fh.write(b"my edit")
    before = snapshot(R)
    code, _, err = run_cli("baseline", "popularity", "--data", str(R), "--quiet")
    assert code == 2 and str(own) in err and "was not written by recsys (or was changed since)" in err
    assert snapshot(R) == before
    # infer's own predictions resume; merge-predictions' --overwrite replaces only infer's kind
    out = tmp_path / "p.parquet"
    infer = [
        "infer",
        "--data",
        str(R),
        "--checkpoint",
        "none",
        "--model",
        world["model"],
        "--family",
        "sequential",
        "--top-k",
        "2",
        "--quiet",
    ]
    assert run_cli(*infer, "--limit", "1", "--out", str(out))[0] == 0
    assert run_cli(*infer, "--limit", "2", "--out", str(out))[0] == 0 and outputs.owner_kind(out) == outputs.PREDICTIONS
    code, _, err = run_cli("baseline", "popularity", "--data", str(R), "--out", str(out), "--quiet")
    assert code == 2 and "is recsys's predictions output, which this command does not write" in err


def test_unfinished_chunk_of_a_user_is_refused(world, tmp_path):
    out = tmp_path / "q.parquet"
    chunks = tmp_path / ".q.parquet.parts"
    chunks.mkdir()
    (chunks / "part-000000.parquet").write_bytes(os.urandom(200))
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(
            "infer",
            "--data",
            str(world["R"]),
            "--checkpoint",
            "none",
            "--model",
            world["model"],
            "--limit",
            "1",
            "--out",
            str(out),
            "--quiet",
            *extra,
        )
        assert code == 2 and "part-000000.parquet" in err and len(err.strip().splitlines()) == 1
        assert snapshot(tmp_path) == before


def test_pretrain_never_touches_a_user_s_manifest_and_metrics(world, tmp_path):
    """A folder holding only a user's manifest.json and metrics.jsonl: refused, both named, no flag
    suggested; --overwrite and --resume do not change them either."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_text('{"my": "experiment"}\n')
    (mine / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    before = snapshot(tmp_path)
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, _, err = run_cli(*_pretrain_args(world["R"], mine, *extra))
        line = err.strip()
        assert code == 2 and len(line.splitlines()) == 1 and "manifest.json" in line and "metrics.jsonl" in line, err
        assert not any(f in line for f in FLAGS_THAT_DESTROY), err
        assert snapshot(tmp_path) == before
    # a checkpoint whose metrics.jsonl a user appended to is no longer provably recsys's
    C = tmp_path / "C"
    shutil.copytree(world["C"], C)
    with open(C / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 99, "note": "mine"}) + "\n")
    before = snapshot(C)
    code, _, err = run_cli(*_pretrain_args(world["R"], C, "--overwrite"))
    assert code == 2 and "metrics.jsonl" in err and not any(f in err for f in FLAGS_THAT_DESTROY)
    assert snapshot(C) == before
