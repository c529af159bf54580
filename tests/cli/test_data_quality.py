"""Data-quality checks (recsys_cli/data/quality.py) on real slices: the 2018 Magazine meta
whose titles are an HTML fragment, a meta file covering few items, RecBole ML-100K's
oddities; warnings in the summary and manifest.json, `--strict` an error with no output.

    python -m pytest tests/cli/test_data_quality.py -q
"""

from __future__ import annotations

import json

import pytest

from recsys_cli.artifacts import schemas
from recsys_cli.data import quality
from tests.cli.test_data_errors import fails
from tests.conftest import FIXTURES, GIFT_CARDS, run_cli

MAGAZINE = ["amazon", "-c", "Magazine_Subscriptions", "--data-dir", str(FIXTURES / "amazon" / "magazine_meta2018")]
SPAN = '<span class="a-size-medium a-color-secondary"'


def _run(tmp_path, *args):
    code, out, err = run_cli("textualize", *args, "--out", str(tmp_path / "R"), "--json", "--quiet")
    assert code == 0, err
    return json.loads(out), {c["check"]: c for c in json.loads(out)["quality"]}


def test_magazine_garbage_titles_warn_and_are_stored(tmp_path):
    s, q = _run(tmp_path, *MAGAZINE)
    assert s["items"] == 113
    assert q["markup_title"]["count"] == 106 and q["markup_title"]["over"] and q["markup_title"]["example"] == SPAN
    assert q["shared_title"]["count"] == 106 and q["shared_title"]["over"]
    assert q["no_metadata"]["count"] == 4 and not q["no_metadata"]["over"]  # 4 of 113 = 3.5% < 10%
    warns = [n for n in s["notes"] if n.startswith("data quality warning")]
    assert any("(markup_title)" in w and "106 of 113" in w for w in warns) and any("(shared_title)" in w for w in warns)
    man = json.loads((tmp_path / "R" / schemas.MANIFEST).read_text())
    assert {c["check"]: c["count"] for c in man["summary"]["quality"]}["markup_title"] == 106
    code, stdout, _ = run_cli("textualize", *MAGAZINE, "--out", str(tmp_path / "T"), "--force", "--quiet")
    assert code == 0 and "data quality warning (markup_title)" in stdout


def test_strict_makes_it_an_error_with_no_output(tmp_path):
    line = fails(
        tmp_path, *MAGAZINE, "--strict", expect=["--strict", "markup_title", "shared_title", "nothing was written"]
    )
    assert "no_metadata" not in line


def test_strict_on_a_rerun_keeps_the_old_files(tmp_path):
    out = tmp_path / "R"
    assert (
        run_cli(
            "textualize", "amazon", "-c", "Gift_Cards", "--data-dir", str(GIFT_CARDS), "--out", str(out), "--quiet"
        )[0]
        == 0
    )
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run_cli("textualize", *MAGAZINE, "--out", str(out), "--strict", "--quiet")
    assert code != 0 and err.startswith("Error: --strict")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_meta_covering_few_items(tmp_path):
    d = tmp_path / "gc"
    d.mkdir()
    (d / "Gift_Cards_5.json").write_bytes((GIFT_CARDS / "Gift_Cards_5.json").read_bytes())
    meta = (GIFT_CARDS / "meta_Gift_Cards.json").read_text().splitlines()
    (d / "meta_Gift_Cards.json").write_text("\n".join(meta[:10]) + "\n")  # real lines, 10 items only
    s, q = _run(tmp_path, "amazon", "-c", "Gift_Cards", "--data-dir", str(d))
    assert q["no_metadata"]["over"] and q["no_metadata"]["total"] == 129 and q["no_metadata"]["count"] >= 119
    assert any("(no_metadata)" in n for n in s["notes"])
    strict = tmp_path / "strict"
    strict.mkdir()
    fails(strict, "amazon", "-c", "Gift_Cards", "--data-dir", str(d), "--strict", expect=["no_metadata"])


def test_recbole_ml100k_oddities_do_not_crash_or_warn(tmp_path):
    s, q = _run(tmp_path, "recbole", "--dataset-dir", str(FIXTURES / "recbole" / "ml-100k"))
    assert s["items"] == 1682
    assert q["shared_title"]["count"] == 0  # 22 titles shared by two ids: pairs are not "many"
    assert not any(c["over"] for c in q.values())
    assert q["duplicate_documents"]["total"] == 9430


def test_clean_fixtures_have_no_title_warnings(tmp_path):
    s, q = _run(tmp_path, "amazon", "-c", "toys", "--data-dir", str(FIXTURES / "amazon" / "toys"))
    assert not any(q[c]["over"] for c in ("no_metadata", "empty_title", "markup_title", "asin_title", "shared_title"))


@pytest.mark.parametrize(
    "title,markup",
    [
        (SPAN, True),
        (' Magazines" />', True),
        (".a-box-inner{background-color:#fff}", True),
        ("<script type", True),
        ("Barbie Dreamhouse <3", False),
        ("Size 2T-5T: blue", False),
        ("Guitar Strings 10-46, Set of 3", False),
    ],
)
def test_markup_rule(title, markup):
    assert bool(quality.MARKUP.search(title)) is markup


def test_asin_rule_and_shared_threshold():
    assert (
        quality.ASIN.match("B000IMVNQU") and quality.ASIN.match("043935806X") and not quality.ASIN.match("Woman's Day")
    )
    import polars as pl

    items = pl.DataFrame({"item_id": [str(i) for i in range(10)], "title": ["Same"] * 5 + ["A", "B", "C", "C", "D"]})
    q = {c["check"]: c for c in quality.item_checks(items, {"9": "empty title"})}
    assert q["shared_title"]["count"] == 5 and q["empty_title"]["count"] == 1 and q["asin_title"]["count"] == 0
