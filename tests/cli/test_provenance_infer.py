"""Predictions carry their provenance (issue 11): `infer` resumes only with the same data,
producer and settings, `--overwrite` replaces only infer's own files, `score` refuses
predictions made on another dataset.

    python -m pytest tests/cli/test_provenance_infer.py -q
"""

from __future__ import annotations

import json
import shutil

import polars as pl

from recsys_cli.artifacts import outputs, provenance
from recsys_cli.artifacts.io import data_fingerprint
from tests.conftest import run_cli


def one_error(args) -> str:
    code, _, err = run_cli(*args, "--quiet")
    lines = [x for x in err.splitlines() if x.strip()]
    assert code != 0 and len(lines) == 1 and lines[0].startswith("Error:") and "internal error" not in err, err
    return lines[0]


def test_infer_refuses_mixed_settings_and_models(toys_entities, tiny_model, tmp_path):
    out = tmp_path / "p.parquet"
    common = [
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--out",
        str(out),
    ]
    code, _, err = run_cli(*common, "--top-k", "3", "--limit", "2", "--quiet")
    assert code == 0, err
    before = out.read_bytes()
    prov = provenance.read(out)
    assert prov["data_fingerprint"] == data_fingerprint(toys_entities)
    assert prov["producer"]["kind"] == "base-model" and prov["producer"]["fingerprint"]
    assert (
        prov["settings"]["top_k"] == 3
        and prov["settings"]["split"] == "test"
        and prov["settings"]["family"] == "sequential"
    )
    msg = one_error(common + ["--top-k", "4", "--limit", "3"])
    assert "settings.top_k (3 -> 4)" in msg and str(out) in msg
    assert "settings.beams" in one_error(common + ["--top-k", "3", "--beams", "6", "--limit", "3"])
    assert "settings.exclude_history" in one_error(common + ["--top-k", "3", "--exclude-history", "--limit", "3"])
    assert "settings.kind" in one_error(common + ["--top-k", "3", "--kind", "next", "--limit", "3"])
    other_model = tmp_path / "other-model"
    shutil.copytree(tiny_model, other_model)
    cfg = json.loads((other_model / "config.json").read_text())
    cfg["num_hidden_layers"] += 1
    (other_model / "config.json").write_text(json.dumps(cfg))
    model_at = common.index("--model") + 1
    msg = one_error([*common[:model_at], str(other_model), *common[model_at + 1 :], "--top-k", "3", "--limit", "3"])
    assert "producer.fingerprint" in msg and "producer.name" in msg
    assert out.read_bytes() == before  # nothing appended
    # an unfinished run's chunks are checked too
    parts = tmp_path / ".q.parquet.parts"
    parts.mkdir()
    shutil.copy(out, parts / "part-000000.parquet")
    outputs.record(parts / "part-000000.parquet", outputs.PREDICTIONS)  # as infer's chunk writer records it (issue 26)
    q = [*common[:-1], str(tmp_path / "q.parquet")]  # the same run, written to another file
    assert "part-000000.parquet" in one_error(q + ["--top-k", "5", "--limit", "3"])
    code, stdout, err = run_cli(*q, "--top-k", "3", "--limit", "3", "--quiet", "--json")
    assert code == 0, err
    assert (
        json.loads(stdout)["skipped"] == 2
        and pl.read_parquet(tmp_path / "q.parquet").height == 3
        and not parts.exists()
    )


def test_overwrite_replaces_only_infer_files(toys_entities, tiny_model, tmp_path):
    common = [
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--limit",
        "1",
        "--top-k",
        "2",
    ]
    user_file = tmp_path / "mine.parquet"
    pl.DataFrame({"prompt_id": ["x"]}).write_parquet(user_file)
    before = user_file.read_bytes()
    # issue 26: a file recsys did not write is refused by the ledger (artifacts/outputs.py) before its content is read
    assert "was not written by recsys" in one_error(common + ["--out", str(user_file), "--overwrite"])
    assert "was not written by recsys" in one_error(common + ["--out", str(user_file)])
    assert user_file.read_bytes() == before
    pop = tmp_path / "pop.parquet"
    code, _, err = run_cli("baseline", "popularity", "--data", str(toys_entities), "--out", str(pop), "--quiet")
    assert code == 0, err
    baseline_bytes = pop.read_bytes()
    msg = one_error(common + ["--out", str(pop), "--overwrite"])
    assert (
        "baseline-predictions:popularity output, which this command does not write" in msg
    )  # issue 26: another command's kind
    assert pop.read_bytes() == baseline_bytes
    text = tmp_path / "notes.parquet"
    text.write_text("my notes")
    assert "was not written by recsys" in one_error(common + ["--out", str(text)])
    assert text.read_text() == "my notes"
    out = tmp_path / "p.parquet"
    code, _, err = run_cli(*common, "--out", str(out), "--quiet")
    assert code == 0, err
    code, _, err = run_cli(*common[:-2], "--top-k", "4", "--out", str(out), "--overwrite", "--quiet")
    assert code == 0, err
    assert provenance.read(out)["settings"]["top_k"] == 4 and len(pl.read_parquet(out)["ranked"][0]) == 4


def test_score_refuses_predictions_of_another_dataset(toys_entities, musical_data, tiny_model, tmp_path):
    out = tmp_path / "p.parquet"
    code, _, err = run_cli(
        "infer",
        "--data",
        str(toys_entities),
        "--checkpoint",
        "none",
        "--model",
        tiny_model,
        "--family",
        "sequential",
        "--limit",
        "2",
        "--top-k",
        "2",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, err
    code, _, err = run_cli("score", "--data", str(toys_entities), "-p", str(out), "--quiet", "--json")
    assert code == 0, err
    msg = one_error(["score", "--data", str(musical_data), "-p", str(out)])
    assert str(out) in msg and "other data" in msg
    bare = tmp_path / "bare.parquet"  # no provenance (another tool): accepted
    pl.read_parquet(out).write_parquet(bare)
    code, _, err = run_cli("score", "--data", str(toys_entities), "-p", str(bare), "--quiet", "--json")
    assert code == 0, err
