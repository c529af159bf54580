"""One GLM attention mask module (modeling/mask.py): the training mask, the inference prefill and
cached-step masks and the packed-row mask give the same layout for the same Part A / Part B,
and no other module of recsys_cli builds a float attention mask.

    python -m pytest tests/unit/test_glm_mask.py -q
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from recsys_cli.modeling.mask import (  # noqa: E402
    build_attention_mask,
    cached_attention_mask,
    packed_attention_mask,
    prefill_attention_mask,
)
from tests.unit.test_one_rule import PKG, code_lines, py_files, rel  # noqa: E402

F32 = torch.float32
BLOCKED = torch.finfo(F32).min
MASK_MODULE = "recsys_cli/modeling/mask.py"


def test_training_mask_equals_prefill_mask_for_the_same_layout():
    for a, b in ((1, 1), (5, 1), (4, 3), (7, 6)):  # Part A length (prompt + [gM]), Part B length ([START] ...)
        n = a + b
        train = build_attention_mask([a], [n], n, F32)  # [1, 1, n, n]
        pre = prefill_attention_mask(torch.ones(1, n, dtype=torch.bool), a, F32)
        assert pre.shape == train.shape == (1, 1, n, n) and torch.equal(pre, train)
        m = train[0, 0]
        assert bool((m[:, :a] == 0).all())  # every token sees all of Part A (bidirectional inside it)
        assert bool((m[:a, a:] == BLOCKED).all())  # Part A never sees Part B
        later = torch.ones(b, b, dtype=torch.bool).triu(1)  # Part B: causal
        assert bool((m[a:, a:][later] == BLOCKED).all()) and bool((m[a:, a:][~later] == 0).all())


def test_left_padded_prefill_rows_are_the_training_mask_of_each_row():
    lens_a = [6, 3, 1]  # Part A lengths; each row then has [START]
    width = max(lens_a) + 1
    key_ok = torch.zeros(len(lens_a), width, dtype=torch.bool)
    for r, a in enumerate(lens_a):
        key_ok[r, max(lens_a) - a :] = True  # left padding, as decode.prefill lays out a batch
    pre = prefill_attention_mask(key_ok, max(lens_a), F32)  # [3, 1, W, W]
    for r, a in enumerate(lens_a):
        pad = max(lens_a) - a
        train = build_attention_mask([a], [a + 1], a + 1, F32)[0, 0]
        assert torch.equal(pre[r, 0, pad:, pad:], train)  # the real tokens: the training layout
        assert bool((pre[r, 0, pad:, :pad] == BLOCKED).all())  # padding keys: never seen by a real token
        assert all(pre[r, 0, q, q] == 0 for q in range(pad))  # a padding query sees itself (finite softmax)


def test_cached_rows_equal_the_training_rows_of_part_b():
    a, past = 4, 5  # Part A + [START] cached
    for width in (1, 3):  # one decode step; a row of candidate tokens
        train = build_attention_mask([a], [past + width], past + width, F32)[0, 0, past:]  # the new tokens' rows
        step = cached_attention_mask(torch.ones(1, past, dtype=torch.bool), F32, width)
        assert step.shape == (1, 1, width, past + width) and torch.equal(step[0, 0], train)
    key_ok = torch.tensor([[False, True, True, True, True], [True] * 5])  # row 0 left-padded by one
    lens = torch.tensor([2, 4])  # row 0 has 2 real candidate tokens of 4
    rows = cached_attention_mask(key_ok, F32, 4, lens)  # [2, 1, 4, 9]
    assert torch.equal(rows[0, 0, :2, 1:7], build_attention_mask([3], [6], 6, F32)[0, 0, 4:])
    assert bool((rows[0, 0, :2, 7:] == BLOCKED).all()) and bool((rows[0, 0, :, 0] == BLOCKED).all())
    assert rows[0, 0, 3, 8] == 0  # a padding candidate token sees itself
    assert torch.equal(rows[1, 0], build_attention_mask([4], [9], 9, F32)[0, 0, 5:])


def test_packed_mask_with_one_example_per_row_is_the_training_mask():
    a, n, width = 3, 7, 10
    segment = torch.tensor([[0] * n + [-1] * (width - n)])
    a_end = torch.full((1, width), a)
    assert torch.equal(packed_attention_mask(segment, a_end, F32), build_attention_mask([a], [n], width, F32))


def test_no_other_module_builds_an_attention_mask():
    """A float GLM mask needs finfo(dtype).min for its blocked entries, and its causal part a
    triangle: outside modeling/mask.py neither appears in recsys_cli code (strings and comments
    ignored). The SASRec baseline's own causal self-attention is not the GLM mask."""
    other_models = {"recsys_cli/baselines/sasrec.py", "recsys_cli/baselines/sasrec_train.py"}
    found = []
    for path in py_files("recsys_cli"):
        if rel(path) == MASK_MODULE:
            continue
        for line_no, code in code_lines(path).items():
            if "finfo(" in code or "extend_attention_mask" in code:
                found.append(f"{rel(path)}:{line_no}: {code.strip()}")
            if rel(path) not in other_models and any(t in code for t in ("tril(", "triu(")):
                found.append(f"{rel(path)}:{line_no}: {code.strip()}")
    assert found == []
    mask_code = "\n".join(code_lines(PKG / "modeling" / "mask.py").values())
    assert "finfo(" in mask_code and "def extend_attention_mask" not in mask_code
