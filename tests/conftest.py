"""Shared test fixtures: real data slices under fixtures/ and the tiny random model.

python -m pytest -n 2 tests
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
TINY_MODEL = FIXTURES / "tiny-model"
TOYS = FIXTURES / "amazon" / "toys"
MUSICAL = FIXTURES / "amazon" / "musical_instruments"
GIFT_CARDS = FIXTURES / "amazon" / "gift_cards"

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cli(*args: str):
    """Run `recsys ARGS...` in-process, as a user types it. Returns (exit_code, stdout, stderr)."""
    import contextlib
    import io

    from recsys_cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(TINY_MODEL)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from recsys_cli.modeling.registry import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(str(TINY_MODEL)))


@pytest.fixture(scope="session")
def tok(tiny_tokenizer):
    """The tiny model's real SmolLM2 tokenizer with the five special tokens added."""
    import copy

    from recsys_cli.data.special_tokens import add_special_tokens

    t = copy.deepcopy(tiny_tokenizer)
    add_special_tokens(t)
    return t


@pytest.fixture(scope="session")
def special(tok):
    from recsys_cli.data.special_tokens import SpecialIds

    return SpecialIds.from_tokenizer(tok)


@pytest.fixture(scope="session")
def toys_data(tmp_path_factory) -> Path:
    """The committed Toys slice (300 P5 users), textualized once per session. Read-only."""
    out = tmp_path_factory.mktemp("toys") / "R"
    code, _, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "toys",
        "--data-dir",
        str(TOYS),
        "--out",
        str(out),
        "--seed",
        "0",
        "--quiet",
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def musical_data(tmp_path_factory) -> Path:
    """The committed Musical Instruments 2014 review slice (has ratings, reviews), textualized."""
    out = tmp_path_factory.mktemp("musical") / "R"
    code, _, err = run_cli(
        "textualize",
        "amazon",
        "--category",
        "Musical_Instruments",
        "--data-dir",
        str(MUSICAL),
        "--out",
        str(out),
        "--seed",
        "0",
        "--quiet",
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def toys_entities(toys_data, tiny_model, tmp_path_factory) -> Path:
    """Toys slice + entities.parquet built with the real tokenizer (a copy, so toys_data stays pristine)."""
    import shutil

    out = tmp_path_factory.mktemp("toys_ent") / "R"
    shutil.copytree(toys_data, out)
    code, _, err = run_cli("build-entities", "--data", str(out), "--model", tiny_model, "--quiet")
    assert code == 0, err
    return out


def run_itemknn(data: Path, split: str, top_k: int, out: Path) -> Path:
    """`recsys baseline itemknn` on `data`'s `split`, top `top_k`, written to `out` (asserted to succeed)."""
    code, _, err = run_cli(
        "baseline",
        "itemknn",
        "--data",
        str(data),
        "--split",
        split,
        "--top-k",
        str(top_k),
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def knn(toys_entities, tmp_path_factory):
    """itemknn's top 60 for the test split of the Toys slice (read-only: a retriever for rerank tests)."""
    return run_itemknn(toys_entities, "test", 60, tmp_path_factory.mktemp("listwise-retriever") / "knn-test.parquet")
