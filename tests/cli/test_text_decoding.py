"""`recsys infer` explanation / review decoding options (inference/textgen.py) on the committed
Musical Instruments slice with the tiny random model.

    python -m pytest tests/cli/test_text_decoding.py -q
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from recsys_cli.artifacts import provenance
from recsys_cli.inference.textgen import DEFAULT, has_word
from tests.conftest import run_cli

pytest.importorskip("torch")


def _infer(data, model, out, *extra):
    return run_cli(
        "infer",
        "--data",
        str(data),
        "--checkpoint",
        "none",
        "--model",
        model,
        "--family",
        "explanation",
        "--split",
        "test",
        "--limit",
        "6",
        "--max-new-tokens",
        "10",
        "--out",
        str(out),
        "--json",
        "--quiet",
        *extra,
    )


@pytest.mark.parametrize("how", [[], ["--text-decoding", "greedy"], ["--text-decoding", "beam", "--text-beams", "3"]])
def test_no_explanation_is_empty_or_punctuation_only(musical_data, tiny_model, tmp_path, how):
    out = tmp_path / "e.parquet"
    code, stdout, err = _infer(musical_data, tiny_model, out, *how)
    assert code == 0, err
    e = pl.read_parquet(out)
    assert e.height == 6 and e["valid"].all()
    assert all(has_word(t) and t == t.strip() for t in e["output"].to_list())
    settings = provenance.read(out)["settings"]["text_decoding"]
    assert settings["method"] == (how[1] if how else DEFAULT.method)
    assert json.loads(stdout)["modes"]["text"]["valid"] == 6


def test_settings_are_recorded_and_a_change_is_refused_on_resume(musical_data, tiny_model, tmp_path):
    out = tmp_path / "e.parquet"
    code, _, err = _infer(
        musical_data, tiny_model, out, "--text-decoding", "greedy", "--no-repeat-ngram", "2", "--min-new-tokens", "3"
    )
    assert code == 0, err
    rec = provenance.read(out)["settings"]["text_decoding"]
    assert rec == {
        "method": "greedy",
        "beams": 1,
        "no_repeat_ngram": 2,
        "min_new_tokens": 3,
        "length_penalty": None,
        "repetition_penalty": DEFAULT.repetition_penalty,
        "adapter_scale": DEFAULT.adapter_scale,
    }
    code, _, err = _infer(
        musical_data, tiny_model, out, "--text-decoding", "greedy", "--no-repeat-ngram", "3", "--min-new-tokens", "3"
    )
    assert code != 0 and "Traceback" not in err  # other settings: refused, not mixed into the file


@pytest.mark.parametrize(
    "args, option",
    [
        (["--text-decoding", "sample"], "--text-decoding"),
        (["--text-decoding", "beam", "--text-beams", "1"], "--text-beams"),
        (["--no-repeat-ngram", "1"], "--no-repeat-ngram"),
        (["--min-new-tokens", "-1"], "--min-new-tokens"),
        (["--repetition-penalty", "-0.5"], "--repetition-penalty"),
        (["--text-adapter-scale", "-1"], "--text-adapter-scale"),
    ],
)
def test_bad_decoding_options_one_line(musical_data, tiny_model, tmp_path, args, option):
    code, _, err = _infer(musical_data, tiny_model, tmp_path / "x.parquet", *args)
    assert code != 0 and "Traceback" not in err
    assert option in err
    assert not (tmp_path / "x.parquet").exists()
