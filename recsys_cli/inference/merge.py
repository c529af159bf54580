"""Merging the shard files of a sharded `recsys infer` into the file one unsharded run writes.

    recsys merge-predictions --out C/predictions/test.parquet C/predictions/test.shard-*-of-4.parquet

Checks, each a one-line error naming the file: every input carries infer's provenance with a
shard i/n; the shards are 0..n-1 exactly once; data fingerprint, producer and every setting
but the shard agree, and so does the number of selected prompts; each shard is complete (it
holds ceil((N - i) / n) rows: finish an incomplete one by re-running its infer command, which
resumes) and the shards' prompt ids are disjoint. Rows are interleaved back into selection
order (the inverse of the round-robin rule in inference/selection.py); the merged provenance
is the unsharded run's: shard None, the retriever's recall@K recomputed from the summed hits.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import polars as pl

from recsys_cli.artifacts import outputs, provenance
from recsys_cli.artifacts.predictions import read_predictions, write_predictions
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.inference import provenance_checks, selection


def _shard_of(path: Path, prov: dict[str, Any] | None) -> tuple[int, int]:
    if prov is None:
        raise InputError.at(
            path, None, "a shard written by `recsys infer --shard i/n`; this file has no recsys provenance"
        )
    shard = (prov.get("settings") or {}).get("shard")
    parsed = None
    if isinstance(shard, str) and "/" in shard:
        i, n = shard.split("/", 1)
        parsed = (int(i), int(n)) if i.isdigit() and n.isdigit() else None
    if parsed is None:
        raise InputError.at(
            path, None, f"a shard written by `recsys infer --shard i/n`; its settings.shard is {shard!r}"
        )
    return parsed


def _unsharded(prov: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(prov)
    p["settings"]["shard"] = None
    return p


def merge(paths: Sequence[Path], out: Path, overwrite: bool = False) -> dict[str, Any]:
    paths = [Path(p) for p in paths]
    if not paths:
        raise RecsysError("give the shard files to merge: recsys merge-predictions --out OUT SHARD...", exit_code=2)
    for p in paths:
        if not p.is_file():
            raise RecsysError(f"{p}: shard file not found", exit_code=2)
        if p.resolve() == Path(out).resolve():
            raise RecsysError(f"{out}: --out must not be one of the shard files", exit_code=2)
    outputs.claim([outputs.Target(Path(out), outputs.PREDICTIONS, "--out")], paths)  # a user's file is never replaced
    if Path(out).exists():
        if not overwrite:
            raise RecsysError(
                f"{out}: recsys's predictions file already exists (pass --overwrite to replace a file "
                "written by `recsys infer` or merge-predictions)",
                exit_code=2,
            )
        provenance_checks.check_overwrite(Path(out))
    provs = [provenance.read(p) for p in paths]
    shards = [_shard_of(p, pv) for p, pv in zip(paths, provs)]
    n = shards[0][1]
    by_index: dict[int, Path] = {}
    for p, (i, m) in zip(paths, shards):
        if m != n:
            raise InputError.at(p, None, f"a shard of {n} (like {paths[0]}); this file is shard {i}/{m}")
        if i in by_index:
            raise InputError.at(p, None, f"one file per shard; shard {i}/{n} is also {by_index[i]}")
        by_index[i] = p
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        raise RecsysError(
            f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing: every shard 0..{n - 1} is needed",
            exit_code=2,
        )
    ref = _unsharded(provs[0])
    for p, pv in zip(paths[1:], provs[1:]):
        diff = provenance.differences(ref, _unsharded(pv))
        if (pv.get("extra") or {}).get("selected") != (ref.get("extra") or {}).get("selected"):
            before, after = (ref.get("extra") or {}).get("selected"), (pv.get("extra") or {}).get("selected")
            diff.append(f"extra.selected ({before!r} -> {after!r})")
        if diff:
            raise InputError.at(p, None, f"a shard of the same run as {paths[0]}; changed: {'; '.join(diff)}")
    total = int((ref.get("extra") or {}).get("selected") or 0)
    frames, seen = [], {}
    for i in range(n):
        p = by_index[i]
        df = read_predictions(p, None)  # the contract; the provenance was checked above
        want = selection.shard_count(total, (i, n))
        if df.height != want:
            raise InputError.at(
                p,
                None,
                (
                    f"a complete shard {i}/{n} ({want} of {total} prompts); it holds {df.height} (re-run its `recsys "
                    f"infer` command to finish it)"
                ),
            )
        for row, pid in enumerate(df["prompt_id"].to_list()):
            if pid in seen:
                raise InputError.at(
                    p, f"row {row}", f"prompt ids disjoint from the other shards; {pid!r} is also in {seen[pid]}"
                )
            seen[pid] = p
        frames.append(df.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) * n + i).alias("_o")))
    merged = pl.concat(frames).sort("_o").drop("_o")
    prov = _merged_provenance(ref, provs)
    write_predictions(Path(out), merged, metadata=provenance.encode(prov))
    return {"out": str(out), "shards": n, "rows": merged.height, "selected": total}


def _merged_provenance(ref: dict[str, Any], provs: list[dict[str, Any]]) -> dict[str, Any]:
    prov = copy.deepcopy(ref)
    rr = (prov.get("extra") or {}).get("rerank")
    if rr is not None:
        hits = sum(int(pv["extra"]["rerank"]["hits"]) for pv in provs)
        prompts = sum(int(pv["extra"]["rerank"]["prompts"]) for pv in provs)
        rr.update({"hits": hits, "prompts": prompts, "recall_at_k": hits / prompts if prompts else 0.0})
    return prov
