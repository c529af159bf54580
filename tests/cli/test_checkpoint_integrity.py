"""Checkpoints load offline and intact, on the data they were trained on, and a recipe never
enables remote code (issue 26, item 4): each case ends in one line and an exit code, and no
pre-existing file changes (sha256 before and after).

    python -m pytest tests/cli/test_checkpoint_integrity.py -q
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import pytest

from recsys_cli.artifacts import provenance
from recsys_cli.artifacts.io import file_sha256
from tests.conftest import ROOT, run_cli

TINY = str(ROOT / "recipes/pretrain/tiny-cpu.yaml")
ADAPTER_WEIGHTS = Path("adapter") / "adapter_model.safetensors"


def _hashes(*dirs: Path) -> dict[str, str]:
    """sha256 of every file under `dirs` (what must not change)."""
    return {str(p): file_sha256(p) for d in dirs for p in sorted(Path(d).rglob("*")) if p.is_file()}


def _infer(data: Path, ckpt: Path, out: Path, *extra: str):
    return run_cli(
        "infer",
        "--data",
        str(data),
        "--checkpoint",
        str(ckpt),
        "--family",
        "sequential",
        "--top-k",
        "3",
        "--limit",
        "1",
        "--out",
        str(out),
        "--quiet",
        *extra,
    )


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(toys_entities, tmp_path_factory) -> Path:
    """A 1-step LoRA-only tiny checkpoint trained on the Toys slice (read-only: tests copy it)."""
    out = tmp_path_factory.mktemp("integrity") / "C"
    code, _, err = run_cli(
        "pretrain",
        "--data",
        str(toys_entities),
        "--config",
        TINY,
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--max-length",
        "48",
        "--eval-every",
        "100",
        "--save-every",
        "100",
        "--modules-to-save",
        "none",
        "--quiet",
    )
    assert code == 0, err
    return out


def _copy(ckpt: Path, tmp_path: Path) -> Path:
    c = tmp_path / "C"
    shutil.copytree(ckpt, c)
    return c


def test_saved_checkpoint_records_the_sha256_of_each_file(ckpt):
    cfg = json.loads((ckpt / "recsys_checkpoint.json").read_text())
    recorded = cfg["files_sha256"]
    assert recorded[str(ADAPTER_WEIGHTS)] == file_sha256(ckpt / ADAPTER_WEIGHTS)
    assert {"adapter/adapter_config.json", "tokenizer/tokenizer.json", "extras.safetensors"} <= set(recorded)
    assert all(file_sha256(ckpt / rel) == sha for rel, sha in recorded.items())
    assert cfg["data_summary"]["rows"]["items.parquet"] > 0 and cfg["data_summary"]["inputs"]


def test_missing_adapter_file_is_one_line_and_never_a_download(ckpt, toys_entities, tmp_path, monkeypatch):
    import huggingface_hub.constants

    c = _copy(ckpt, tmp_path)
    (c / ADAPTER_WEIGHTS).unlink()
    before = _hashes(c, toys_entities)
    # the network as a user has it (no offline variables), with every connection attempt recorded and refused
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    tried: list = []

    def refuse(*args, **kwargs):
        tried.append(args[:2])
        raise OSError("network use in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    out = tmp_path / "p.parquet"
    code, _, err = _infer(toys_entities, c, out)
    assert code == 2 and _one_line(err) == f"Error: {c / ADAPTER_WEIGHTS}: missing; the checkpoint is incomplete"
    assert tried == [] and not out.exists()
    assert _hashes(c, toys_entities) == before
    # a checkpoint without recorded hashes (an older recsys) is checked for its files all the same
    cfg = json.loads((c / "recsys_checkpoint.json").read_text())
    del cfg["files_sha256"]
    (c / "recsys_checkpoint.json").write_text(json.dumps(cfg))
    before = _hashes(c, toys_entities)
    code, _, err = _infer(toys_entities, c, out)
    assert code == 2 and _one_line(err) == f"Error: {c / ADAPTER_WEIGHTS}: missing; the checkpoint is incomplete"
    assert tried == [] and not out.exists() and _hashes(c, toys_entities) == before


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # inside the last tensor: the header still parses
    path.write_bytes(bytes(data))


def test_flipped_byte_in_adapter_weights_names_the_file(ckpt, toys_entities, tmp_path):
    c = _copy(ckpt, tmp_path)
    _flip_last_byte(c / ADAPTER_WEIGHTS)
    before = _hashes(c, toys_entities)
    out = tmp_path / "p.parquet"
    code, _, err = _infer(toys_entities, c, out)
    line = _one_line(err)
    assert code == 2 and line.startswith(f"Error: {c / ADAPTER_WEIGHTS}: sha256 differs")
    assert "recsys_checkpoint.json" in line
    assert not out.exists() and _hashes(c, toys_entities) == before
    # the same in the library call `pretrain`'s stage 2 and scripts use
    from recsys_cli.errors import RecsysError
    from recsys_cli.modeling.checkpoint import load_checkpoint

    with pytest.raises(RecsysError, match="adapter_model.safetensors: sha256 differs"):
        load_checkpoint(c)
    # a checkpoint saved before the hashes existed: loaded with one warning line, unchecked
    cfg = json.loads((c / "recsys_checkpoint.json").read_text())
    del cfg["files_sha256"]
    (c / "recsys_checkpoint.json").write_text(json.dumps(cfg))
    before = _hashes(c, toys_entities)
    code, _, err = _infer(toys_entities, c, out)
    assert code == 0, err
    assert _one_line(err) == f"warning: {c}: saved without file hashes (an older recsys); its files are not checked"
    assert _hashes(c, toys_entities) == before


def test_other_data_is_refused_without_the_flag(ckpt, toys_entities, musical_data, tmp_path):
    c = _copy(ckpt, tmp_path)
    before = _hashes(c, musical_data)
    out = tmp_path / "r.parquet"
    args = [
        "infer",
        "--data",
        str(musical_data),
        "--checkpoint",
        str(c),
        "--family",
        "rating",
        "--limit",
        "1",
        "--out",
        str(out),
        "--quiet",
    ]
    code, _, err = run_cli(*args)
    line = _one_line(err)
    assert code == 2
    trained_on = toys_entities.resolve()
    assert line.startswith(f"Error: {musical_data}: not the data checkpoint {c} was trained on ({trained_on})")
    want_fp = hashlib.sha256((toys_entities / "manifest.json").read_bytes()).hexdigest()[:12]
    assert f"manifest sha256 {want_fp} -> " in line and "items 2282 -> " in line and "--allow-other-data" in line
    assert not out.exists() and _hashes(c, musical_data) == before
    code, _, err = run_cli(*args, "--allow-other-data")
    assert code == 0, err
    line = _one_line(err)
    assert line.startswith(f"warning: {musical_data}: not the data checkpoint")
    assert line.endswith("going on (--allow-other-data)")
    assert out.is_file() and _hashes(c, musical_data) == before


def test_recipe_cannot_enable_remote_code(toys_entities, tmp_path):
    recipe = tmp_path / "remote.yaml"
    text = Path(TINY).read_text().replace("  positions: glm\n", "  positions: glm\n  trust_remote_code: true\n")
    assert "trust_remote_code: true" in text
    recipe.write_text(text)
    line_no = next(i for i, ln in enumerate(text.splitlines(), 1) if "trust_remote_code" in ln)
    before = _hashes(toys_entities) | {str(recipe): file_sha256(recipe)}
    out = tmp_path / "C"
    code, _, err = run_cli(
        "pretrain", "--data", str(toys_entities), "--config", str(recipe), "--out", str(out), "--quiet"
    )
    line = _one_line(err)
    assert code == 2 and line.startswith(f"Error: {recipe}, line {line_no}: no model.trust_remote_code: true")
    assert "--trust-remote-code" in line and not out.exists()
    code, _, err = run_cli(
        "pretrain",
        "--data",
        str(toys_entities),
        "--config",
        TINY,
        "--set",
        "model.trust_remote_code=true",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 2 and "--trust-remote-code" in _one_line(err) and not out.exists()
    assert _hashes(toys_entities) | {str(recipe): file_sha256(recipe)} == before
    # `false` is what every resolved recipe says: accepted, and the flag alone turns it on
    from recsys_cli.training.recipe import load_recipe

    recipe.write_text(text.replace("trust_remote_code: true", "trust_remote_code: false"))
    assert load_recipe(recipe).model.trust_remote_code is False
    assert load_recipe(recipe, [("model.trust_remote_code", True)]).model.trust_remote_code is True


def test_text_adapter_scale_is_recorded_and_a_resume_at_another_scale_is_refused(ckpt, musical_data, tmp_path):
    out = tmp_path / "e.parquet"  # the Toys slice has no explanation prompts: MI's, with the Toys adapter
    args = ["infer", "--data", str(musical_data), "--checkpoint", str(ckpt), "--allow-other-data"]
    args += ["--family", "explanation"]
    args += ["--limit", "2", "--max-new-tokens", "4", "--out", str(out), "--quiet"]
    code, _, err = run_cli(*args, "--text-adapter-scale", "0.5")
    assert code == 0, err
    assert provenance.read(out)["settings"]["text_decoding"]["adapter_scale"] == 0.5
    before = file_sha256(out)
    code, _, err = run_cli(*args, "--text-adapter-scale", "1")  # other settings: not resumed into the same file
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning:")]  # --allow-other-data's
    assert code != 0 and len(errors) == 1 and "text_decoding" in errors[0] and "Traceback" not in err
    assert file_sha256(out) == before
