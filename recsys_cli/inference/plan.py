"""`recsys infer`, step 1: the plan. Everything a run decides before a model is loaded, resolved
once from the request and frozen: the output path (claimed), each prompt's mode, the items to
exclude, the producer and the options a checkpoint decides, the checked retriever of a two-stage
run, and the provenance. Errors here are one line, before any work. Step 2 is the engine
(inference/engine.py), step 3 the run loop (inference/run.py).

    recsys infer --data runs/toys --checkpoint runs/ckpt --limit 20
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli import console
from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.checkpoint import CheckpointConfig, verify_files
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.errors import RecsysError
from recsys_cli.inference import calibrated, listwise, provenance_checks, selection
from recsys_cli.inference.chunks import claim_outputs
from recsys_cli.inference.options import InferOptions, history_of, modes_of
from recsys_cli.modeling.registry import check_fingerprint, resolve_model
from recsys_cli.training.recipe import Recipe, recipe_from_saved


@dataclass
class InferRequest:
    data: Path
    checkpoint: str  # a checkpoint directory or 'none'
    model_name: str | None
    split: str
    prompts: pl.DataFrame  # the selected prompts, before sharding
    opts: InferOptions
    out: Path | None = None
    filters: dict[str, Any] = field(default_factory=dict)  # family, template, seen, kind
    selection: dict[str, Any] = field(default_factory=dict)  # limit, users, prompt_ids (extra, not settings)
    candidates_from: Path | None = None
    shard: tuple[int, int] | None = None
    overwrite: bool = False
    seed: int = 0
    trust_remote_code: bool = False
    hybrid_embeddings: Path | None = None  # RSLLM: override the checkpoint's SASRec file (same content)
    allow_other_data: bool = False  # --allow-other-data: a checkpoint trained on other data (one warning)


def inference_device() -> str:
    """The GPU of this process (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


@dataclass(frozen=True)
class Resolved:
    """What the request and the checkpoint decide together, once, before any work."""

    opts: InferOptions  # a copy: max_new_tokens, dynamic positions and the listwise settings filled in
    producer: dict[str, Any]
    recipe: Recipe  # the checkpoint's recipe read back (the defaults for --checkpoint none)
    hybrid_emb: Any = None  # the loaded, sha-checked SASRec table of an RSLLM checkpoint


def _resolve(req: InferRequest) -> Resolved:
    """The producer, and the options a checkpoint decides (max_new_tokens, dynamic positions)."""
    o = req.opts
    if req.checkpoint.lower() == "none":
        recipe = Recipe()
        opts = replace(
            o,
            max_new_tokens=recipe.eval.max_new_tokens if o.max_new_tokens is None else o.max_new_tokens,
            listwise_candidate_ids=listwise.candidate_ids_of(o, None),
        )  # refused without a hybrid checkpoint
        return Resolved(opts, provenance_checks.base_producer(req.model_name), recipe)
    ckpt = Path(req.checkpoint)
    cfg = CheckpointConfig.read(ckpt)
    verify_files(ckpt, cfg)  # complete and as saved, before any work (the producer hashes these files)
    provenance_checks.check_trained_on(ckpt, cfg, req.data, req.allow_other_data)
    if req.model_name is not None:  # --model must be the base the checkpoint was trained on
        check_fingerprint(cfg, resolve_model(req.model_name), ckpt / schemas.CKPT_CONFIG)
    recipe = recipe_from_saved(cfg.recipe)
    opts = replace(
        o,
        max_new_tokens=recipe.eval.max_new_tokens if o.max_new_tokens is None else o.max_new_tokens,
        listwise_max_length=recipe.listwise.max_length,
        listwise_candidate_ids=listwise.candidate_ids_of(o, cfg),
        listwise_head=recipe.listwise.head,
        listwise_temperature=recipe.listwise.temperature,
        dynamic=o.dynamic and cfg.positions != "linear",
    )
    producer = provenance_checks.checkpoint_producer(ckpt, cfg, req.model_name)
    emb = None
    if cfg.hybrid:
        emb = _hybrid_embeddings(cfg, req.hybrid_embeddings)
        producer["hybrid"] = {
            "embeddings_sha256": cfg.hybrid["embeddings_sha256"],
            "projector": cfg.hybrid.get("projector"),
            "id_tokens": recipe.hybrid.id_tokens,
        }
    elif req.hybrid_embeddings is not None:
        raise RecsysError(f"--hybrid-embeddings: {ckpt} is a text-only checkpoint (no hybrid projector)", exit_code=2)
    return Resolved(opts, producer, recipe, emb)


def _hybrid_embeddings(cfg, override: Path | None):
    """The SASRec file of a hybrid checkpoint (its recorded path, or --hybrid-embeddings),
    refused in one line when its content differs from the one trained with."""
    from recsys_cli.artifacts import item_embeddings
    from recsys_cli.modeling.rsllm import table_sha256

    path = Path(override) if override is not None else Path(cfg.hybrid["embeddings"])
    emb = item_embeddings.load(path)
    sha = table_sha256(emb.item_ids, emb.table)
    if sha != cfg.hybrid.get("embeddings_sha256"):
        raise RecsysError(
            f"{path}: item embeddings differ from the ones this checkpoint was trained with (sha256 {sha[:12]}, "
            f"expected {str(cfg.hybrid.get('embeddings_sha256'))[:12]}); pass the training run's file with "
            "--hybrid-embeddings",
            exit_code=2,
        )
    emb.path = path
    return emb


def _settings(req: InferRequest, o: InferOptions, retr) -> dict[str, Any]:
    return {
        "split": req.split,
        **{k: req.filters.get(k) for k in ("family", "template", "seen", "kind")},
        "top_k": o.top_k,
        "beams": o.beams,
        "item_scoring": o.item_scoring,
        "dynamic_positions": o.dynamic,
        "unconstrained": o.unconstrained,
        "max_new_tokens": o.max_new_tokens,
        "text_beams": o.text_beams,
        "text_decoding": o.text_decoding.settings(),
        "rating_scoring": o.rating_scoring,
        "exclude_history": o.exclude_history,
        "retriever": None if retr is None else retr.identity,
        "rerank_k": o.rerank_k if retr is not None else None,
        "fusion": o.fusion if retr is not None else None,
        "shard": None if req.shard is None else f"{req.shard[0]}/{req.shard[1]}",
        "precision": precision_of(o),
        **({"listwise": listwise.settings(o)} if o.item_scoring == "listwise" else {}),
    }


def precision_of(o: InferOptions) -> str:
    """fp32 or bf16: --precision resolved for the inference device (auto: bf16 where native)."""
    from recsys_cli.modeling.precision import use_bf16

    return "bf16" if use_bf16(o.precision, inference_device()) else "fp32"


def _out_path(req: InferRequest) -> Path:
    out = req.out
    if out is None:
        if req.checkpoint.lower() == "none":
            raise RecsysError(
                "--out is required with --checkpoint none (there is no checkpoint directory to write into)", exit_code=2
            )
        name = schemas.PREDICTIONS_UNCONSTRAINED_FILE if req.opts.unconstrained else schemas.PREDICTIONS_FILE
        out = Path(req.checkpoint) / schemas.PREDICTIONS_DIR / name.format(split=req.split)
    return selection.shard_path(Path(out), req.shard)


def _inputs(req: InferRequest) -> list[Path]:
    """Every file `infer` reads: the run's artifacts, the checkpoint's files and the option files."""
    from recsys_cli.artifacts import layout

    found = [
        req.data / n for names in (layout.RUN_OWNERS["textualize"], layout.RUN_OWNERS["build-entities"]) for n in names
    ]
    if req.checkpoint.lower() != "none":
        for name in layout.CKPT_OWNERS["pretrain"]:
            entry = Path(req.checkpoint) / name
            found += [entry, *(entry.rglob("*") if entry.is_dir() else [])]
    ids = (req.selection.get("prompt_ids") or {}).get("path")
    return found + [Path(p) for p in (req.candidates_from, req.hybrid_embeddings, ids) if p is not None]


@dataclass(frozen=True)
class InferPlan:
    """Everything `infer` decided before the model loads; nothing below changes it."""

    out: Path
    resolved: Resolved
    rows_df: pl.DataFrame  # this shard's prompts, in order
    modes: tuple[str, ...]  # one per row (options.modes_of)
    excluded: dict[str, set]  # prompt_id -> items the ranking must not return (--exclude-history)
    retriever: Any  # inference.retriever.Retriever of a two-stage run, else None
    prov: dict[str, Any]  # the provenance every chunk and the merged file carry
    extra: dict[str, Any]


def plan_inference(req: InferRequest) -> InferPlan:
    """Resolve the request once: output path (claimed), modes, excluded items, producer and
    settings, the checked retriever. One-line errors here, before any model is loaded."""
    from recsys_cli.inference import retriever as retrieval

    o = req.opts
    out = _out_path(req)
    claim_outputs(out, _inputs(req))
    rows_df = selection.shard_rows(req.prompts, req.shard)
    rows = rows_df.to_dicts()
    rerank = req.candidates_from is not None
    modes = modes_of(rows_df, rerank, req.data / schemas.PROMPTS)  # from each template's answer type
    if o.item_scoring == "listwise":
        listwise.check_modes(modes)
    calibrated.check_modes(o.item_scoring, modes)  # full-norm / pmi: candidate lists only
    if any(m == "items" for m in modes) and not o.unconstrained and not (req.data / schemas.ENTITIES).is_file():
        tries_of(req.data, True, 0)  # one clear line before the model loads
    resolved = _resolve(req)
    histories: dict[str, list[str]] = {}
    if o.exclude_history:
        seqs = read_artifact(req.data, schemas.SEQUENCES)
        histories = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    excluded = {
        r["prompt_id"]: history_of(histories.get(r["user_id"], []), req.split, r["item_id"])
        if o.exclude_history
        else set()
        for r in rows
    }
    retr, extra = None, {"selected": req.prompts.height, **req.selection}
    if resolved.hybrid_emb is not None:  # where the (sha-checked) item table was read this time
        extra["hybrid_embeddings"] = str(Path(resolved.hybrid_emb.path).resolve())
    if rerank:
        ranking = rows_df.filter(pl.Series([m == "rerank" for m in modes], dtype=pl.Boolean))
        picked = ranking.select("prompt_id", "candidates")
        retr = retrieval.load(req.candidates_from, req.data, req.split, picked, o.rerank_k)
        targets = dict(zip(ranking["prompt_id"].to_list(), ranking["item_id"].to_list()))
        recall = retrieval.recall_at_k(retr, targets, excluded, o.rerank_k)
        extra["rerank"] = {
            "retriever": str(retr.path.resolve()),
            "retriever_producer": retr.producer,
            "k": o.rerank_k,
            "fusion": o.fusion,
            **recall,
        }
    prov = provenance.make(req.data, resolved.producer, _settings(req, resolved.opts, retr), extra)
    return InferPlan(out, resolved, rows_df, tuple(modes), excluded, retr, prov, extra)


def tries_of(data: Path, need_items: bool, vocab: int):
    from recsys_cli.data.trie import EntityTrie, load_entity_trie

    if not (data / schemas.ENTITIES).is_file():
        if need_items:
            raise RecsysError(
                (
                    f"{data / schemas.ENTITIES}: file not found; constrained item generation needs the entity pool "
                    f"(run `recsys build-entities --data {data}`, or pass --unconstrained)"
                ),
                exit_code=2,
            )
        console.log(
            (
                f"[yellow]{data / schemas.ENTITIES} not found: dynamic positions restart at every token (run `recsys "
                f"build-entities`)"
            )
        )
        return EntityTrie(), None
    return load_entity_trie(data, None, vocab), load_entity_trie(data, ["item"], vocab)
