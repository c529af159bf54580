"""The tuning file's contract (`recsys tune` writes it, `recsys infer --tuning` reads it): its format
and version, the scorer names it records, and the checked read that `infer` applies.

    recsys tune --data R --rerank R/rerank-valid-k20.parquet --retriever R/predictions/valid/sasrec.parquet \
        --out R/tuning.json
    recsys infer --data R --checkpoint C --candidates-from R/predictions/test/sasrec.parquet --tuning R/tuning.json

evaluation/tune.py decides what goes in the file; this module is all that inference/ needs of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recsys_cli.artifacts import provenance
from recsys_cli.artifacts.io import file_sha256, other_data
from recsys_cli.errors import InputError, RecsysError

FORMAT, VERSION = "recsys-tuning", 1


def scorer_of(settings: dict[str, Any]) -> str:
    """The LLM scorer a rerank run used: its --item-scoring, with a listwise run's order count and
    ID-aware candidates spelled out ("listwise x3+ids"), so two listwise files stay apart."""
    name = str(settings.get("item_scoring") or "constrained")
    lw = settings.get("listwise") or {}
    if int(lw.get("orders") or 1) > 1:
        name += f" x{int(lw['orders'])}"
    return name + ("+ids" if lw.get("candidate_ids") else "")


def read_tuning(path: Path, data: Path) -> dict[str, Any]:
    """A `recsys tune` file, checked: its format, its choice, and that it was made on `data`."""
    path = Path(path)
    if not path.is_file():
        raise RecsysError(f"--tuning {path}: file not found (write one with `recsys tune`)", 2)
    try:
        obj = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise InputError.at(path, None, "a JSON tuning file written by `recsys tune`")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("version") != VERSION:
        raise InputError.at(
            path, None, f"a tuning file written by `recsys tune` (format {FORMAT!r}, version {VERSION})"
        )
    chosen = obj.get("chosen")
    ok = (
        isinstance(chosen, dict)
        and isinstance(chosen.get("scorer"), str)
        and isinstance(chosen.get("k"), int)
        and chosen["k"] >= 1
        and isinstance(chosen.get("w"), (int, float))
        and 0.0 <= chosen["w"] <= 1.0
    )
    if not ok:
        raise InputError.at(path, "key 'chosen'", "{'scorer': str, 'k': int >= 1, 'w': number in [0, 1]}")
    if (differ := other_data(obj.get("data_fingerprint"), data)) is not None:
        want, got = differ
        msg = f"a tuning file made on the data in {data} (manifest sha256 {want}); "
        msg += f"this file was made on other data ({got})"
        raise InputError.at(path, None, msg)
    return obj


def parse_scorer(name: str) -> tuple[str, int, bool]:
    """A scorer name of scorer_of back into (--item-scoring, --listwise-orders, --listwise-candidate-ids)."""
    base, ids = (name[:-4], True) if name.endswith("+ids") else (name, False)
    item_scoring, _, orders = base.partition(" x")
    return item_scoring, int(orders or 1), ids


def tuned_settings(
    path: Path, data: Path, candidates_from: Path, rerank_k: int | None, w: float | None, scorer: str | None
) -> tuple[int, float, str, dict[str, Any]]:
    """`infer --tuning`: (K, W, scorer) from the file, refusing an explicit flag that disagrees and
    a retriever of another kind than the one tuned; plus what the predictions' provenance records."""
    obj = read_tuning(path, data)
    chosen = obj["chosen"]
    for flag, given, want in (
        ("--rerank-k", rerank_k, chosen["k"]),
        ("--fusion", w, float(chosen["w"])),
        ("--item-scoring", scorer, parse_scorer(chosen["scorer"])[0]),
    ):
        if given is not None and given != want:
            raise RecsysError(
                f"{flag} {given} conflicts with --tuning {path}, which chose {want} on validation; "
                f"drop {flag} or the tuning file",
                2,
            )
    tuned_on = ((obj.get("retriever") or {}).get("producer") or {}).get("name")
    here = (
        ((provenance.read(candidates_from) or {}).get("producer") or {}).get("name")
        if Path(candidates_from).is_file()
        else None
    )
    if tuned_on and here and tuned_on != here:
        raise InputError.at(
            candidates_from,
            None,
            f"a {tuned_on!r} retriever, the kind --tuning {path} was tuned for; this file comes from {here!r}",
        )
    record = {"path": str(Path(path).resolve()), "sha256": file_sha256(path), **chosen}
    return int(chosen["k"]), float(chosen["w"]), chosen["scorer"], record  # scorer: parse_scorer splits it
