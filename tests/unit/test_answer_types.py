"""The answer type has one owner, the template (data/templates.py): infer routes on it, never on the gold
answer; the yes/no words live only in templates.py and the like threshold only in data/ratings.py.

    python -m pytest tests/unit/test_answer_types.py -q
"""

from __future__ import annotations

import ast

import polars as pl
import pytest

from recsys_cli.data import ratings, templates
from recsys_cli.errors import InputError
from recsys_cli.inference.options import mode_of, modes_of
from tests.conftest import ROOT

PKG = ROOT / "recsys_cli"
ANSWER_WORDS_HOME = "recsys_cli/data/templates.py"
LIKE_HOME = "recsys_cli/data/ratings.py"
# "yes"/"no" string constants that are not answers: (file, line text) -> why
WORDS_ALLOWED = {
    ("recsys_cli/commands/textualize.py", 'row["seen"]'): "the summary table prints the seen flag as yes/no",
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the Constant nodes that are module/class/function docstrings."""
    out = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            out.add(id(first.value))
    return out


def _sources():
    for path in sorted(PKG.rglob("*.py")):
        if "__pycache__" not in path.parts:
            text = path.read_text()
            yield path.relative_to(ROOT).as_posix(), text, ast.parse(text)


def test_yes_no_words_are_spelled_only_in_templates():
    found = []
    for rel, text, tree in _sources():
        if rel == ANSWER_WORDS_HOME:
            continue
        lines, docs = text.splitlines(), _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and node.value.lower() in ("yes", "no")
            ):
                line = lines[node.lineno - 1]
                if not any(rel == f and frag in line for f, frag in WORDS_ALLOWED):
                    found.append(f"{rel}:{node.lineno}: {line.strip()}")
    assert found == [], "import YES / NO / YES_NO from recsys_cli.data.templates:\n" + "\n".join(found)
    assert templates.YES_NO == ("yes", "no")


def test_like_threshold_lives_only_in_ratings():
    found = []
    for rel, _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.GtE, ast.Lt)) for op in node.ops):
                if (
                    any(
                        isinstance(c, ast.Constant) and c.value in (4, 4.0) and not isinstance(c.value, bool)
                        for c in node.comparators
                    )
                    and rel != LIKE_HOME
                ):
                    found.append(f"{rel}:{node.lineno}")
    assert found == [], "use recsys_cli.data.ratings.likes / like_answer: " + ", ".join(found)
    assert ratings.like_answer(4) == templates.YES and ratings.like_answer(3.99) == templates.NO


def test_every_template_owns_an_answer_type_that_matches_its_target():
    field_of = {templates.ITEM: "item", templates.YES_NO_ANSWER: "answer", templates.RATING: "rating"}
    for t in templates.TEMPLATES:
        assert t.answer in templates.ANSWER_TYPES, t.template_id
        if t.answer in field_of:
            assert t.target_field == field_of[t.answer], t.template_id
        else:
            assert t.target_field in ("explanation", "summary"), t.template_id


def test_infer_routes_on_the_template_not_on_the_gold_answer(tmp_path):
    # golds that the old sniffing misread: a rating prompt whose gold reads "yes", a yes/no prompt with a number
    prompts = pl.DataFrame(
        {
            "template_id": ["rating-1", "direct-3", "explanation-1", "sequential-1", "direct-1", "rating-5"],
            "target": ["yes", "5", "4", "Lego", "Lego", "no"],
            "candidates": [None, None, None, None, ["a", "b"], None],
        },
        schema={"template_id": pl.Utf8, "target": pl.Utf8, "candidates": pl.List(pl.Utf8)},
    )
    got = modes_of(prompts, False, tmp_path / "prompts.parquet")
    assert got == ["rating", "yesno", "text", "items", "candidates", "yesno"]
    assert modes_of(prompts, True, tmp_path / "prompts.parquet")[3:5] == ["rerank", "rerank"]
    assert mode_of(templates.ITEM, ["a"], False) == "items"  # a one-item list is not a candidate set
    bad = prompts.with_columns(pl.Series("template_id", ["rating-1", "mine-7"] + ["rating-1"] * 4))
    with pytest.raises(InputError) as got_err:
        modes_of(bad, False, tmp_path / "prompts.parquet")
    msg = str(got_err.value)
    assert "prompts.parquet, row 1" in msg and "'mine-7'" in msg and "\n" not in msg
