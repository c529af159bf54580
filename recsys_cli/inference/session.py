"""Wires `recsys infer` together: resolve the output (shard suffix), the producer and settings
(provenance, checked before any work), the retriever of a two-stage run; load the model
(merged LoRA), tries, titles and histories; run each mode in length-sorted batches with a
progress bar; write resumable chunks and merge them into the predictions file.

    recsys infer --data runs/toys --checkpoint runs/ckpt --limit 20
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli import console
from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.errors import RecsysError
from recsys_cli.inference import identity, listwise, selection
from recsys_cli.inference.runner import (ChunkWriter, InferOptions, claim_outputs, done_prompt_ids, history_of,
                                        merge_parts, mode_of)


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
    hybrid_emb: Any = None  # the loaded, checked embeddings (set by _producer)
    allow_other_data: bool = False  # --allow-other-data: a checkpoint trained on other data (one warning)


def inference_device() -> str:
    """The GPU of this process (LOCAL_RANK under torchrun) when CUDA is available, else the CPU."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def load_model(checkpoint: str, model_name: str | None, trust_remote_code: bool):
    """-> (RecsysLM in eval mode with LoRA merged, on `inference_device()`, tokenizer, checkpoint config)."""
    import warnings

    from recsys_cli.modeling.checkpoint import load_base_for_inference, load_checkpoint

    device = inference_device()
    with warnings.catch_warnings():  # transformers/peft deprecation chatter while merging LoRA
        warnings.simplefilter("ignore", FutureWarning)
        if checkpoint.lower() == "none":
            return load_base_for_inference(model_name, device=device, trust_remote_code=trust_remote_code)
        lm, tok, cfg = load_checkpoint(Path(checkpoint), base_model=model_name, device=device, merge=True, trust_remote_code=trust_remote_code)
    lm.eval()
    return lm, tok, cfg


def _producer(req: InferRequest) -> dict[str, Any]:
    """The producer, and the options a checkpoint decides (max_new_tokens, dynamic positions)."""
    o = req.opts
    if req.checkpoint.lower() == "none":
        o.max_new_tokens = 64 if o.max_new_tokens is None else o.max_new_tokens
        o.listwise_candidate_ids = listwise.candidate_ids_of(o, None)  # refused without a hybrid checkpoint
        return identity.base_producer(req.model_name)
    from recsys_cli.artifacts.checkpoint import CheckpointConfig, verify_files
    from recsys_cli.modeling.registry import check_fingerprint, resolve_model

    ckpt = Path(req.checkpoint)
    cfg = CheckpointConfig.read(ckpt)
    verify_files(ckpt, cfg)  # complete and as saved, before any work (the producer hashes these files)
    identity.check_trained_on(ckpt, cfg, req.data, req.allow_other_data)
    if req.model_name is not None:  # --model must be the base the checkpoint was trained on
        check_fingerprint(cfg, resolve_model(req.model_name), ckpt / schemas.CKPT_CONFIG)
    if o.max_new_tokens is None:
        o.max_new_tokens = int(((cfg.recipe or {}).get("eval") or {}).get("max_new_tokens") or 64)
    o.listwise_max_length = int(((cfg.recipe or {}).get("listwise") or {}).get("max_length") or o.listwise_max_length)
    o.listwise_candidate_ids = listwise.candidate_ids_of(o, cfg)
    if cfg.positions == "linear":
        o.dynamic = False
    producer = identity.checkpoint_producer(ckpt, cfg, req.model_name)
    if cfg.hybrid:
        req.hybrid_emb = _hybrid_embeddings(cfg, req.hybrid_embeddings)
        producer["hybrid"] = {"embeddings_sha256": cfg.hybrid["embeddings_sha256"], "projector": cfg.hybrid.get("projector"),
                              "id_tokens": bool(((cfg.recipe or {}).get("hybrid") or {}).get("id_tokens", True))}
    elif req.hybrid_embeddings is not None:
        raise RecsysError(f"--hybrid-embeddings: {ckpt} is a text-only checkpoint (no hybrid projector)", exit_code=2)
    return producer


def _hybrid_embeddings(cfg, override: Path | None):
    """The SASRec file of a hybrid checkpoint (its recorded path, or --hybrid-embeddings),
    refused in one line when its content differs from the one trained with."""
    from recsys_cli.artifacts import item_embeddings
    from recsys_cli.modeling.hybrid import table_sha256

    path = Path(override) if override is not None else Path(cfg.hybrid["embeddings"])
    emb = item_embeddings.load(path)
    sha = table_sha256(emb.item_ids, emb.table)
    if sha != cfg.hybrid.get("embeddings_sha256"):
        raise RecsysError(f"{path}: item embeddings differ from the ones this checkpoint was trained with (sha256 {sha[:12]}, "
                          f"expected {str(cfg.hybrid.get('embeddings_sha256'))[:12]}); pass the training run's file with --hybrid-embeddings", exit_code=2)
    emb.path = path
    return emb


def _settings(req: InferRequest, retr) -> dict[str, Any]:
    o = req.opts
    return {"split": req.split, **{k: req.filters.get(k) for k in ("family", "template", "seen", "kind")},
            "top_k": o.top_k, "beams": o.beams, "item_scoring": o.item_scoring, "dynamic_positions": o.dynamic,
            "unconstrained": o.unconstrained, "max_new_tokens": o.max_new_tokens, "text_beams": o.text_beams,
            "rating_scoring": o.rating_scoring,
            "exclude_history": o.exclude_history, "retriever": None if retr is None else retr.identity,
            "rerank_k": o.rerank_k if retr is not None else None, "fusion": o.fusion if retr is not None else None,
            "shard": None if req.shard is None else f"{req.shard[0]}/{req.shard[1]}", "precision": _precision(req),
            **({"listwise": listwise.settings(o)} if o.item_scoring == "listwise" else {})}


def _precision(req: InferRequest) -> str:
    """fp32 or bf16: --precision resolved for the inference device (auto: bf16 where native)."""
    from recsys_cli.modeling.precision import use_bf16

    return "bf16" if use_bf16(req.opts.precision, inference_device()) else "fp32"


def _out_path(req: InferRequest) -> Path:
    out = req.out
    if out is None:
        if req.checkpoint.lower() == "none":
            raise RecsysError("--out is required with --checkpoint none (there is no checkpoint directory to write into)", exit_code=2)
        name = schemas.PREDICTIONS_UNCONSTRAINED_FILE if req.opts.unconstrained else schemas.PREDICTIONS_FILE
        out = Path(req.checkpoint) / schemas.PREDICTIONS_DIR / name.format(split=req.split)
    return selection.shard_path(Path(out), req.shard)


def _inputs(req: InferRequest) -> list[Path]:
    """Every file `infer` reads: the run's artifacts, the checkpoint's files and the option files."""
    from recsys_cli.artifacts import layout

    found = [req.data / n for names in (layout.RUN_OWNERS["textualize"], layout.RUN_OWNERS["build-entities"]) for n in names]
    if req.checkpoint.lower() != "none":
        for name in layout.CKPT_OWNERS["pretrain"]:
            entry = Path(req.checkpoint) / name
            found += [entry, *(entry.rglob("*") if entry.is_dir() else [])]
    ids = (req.selection.get("prompt_ids") or {}).get("path")
    return found + [Path(p) for p in (req.candidates_from, req.hybrid_embeddings, ids) if p is not None]


def run_inference(req: InferRequest) -> dict:
    import torch

    from recsys_cli.inference import retriever as retrieval

    torch.manual_seed(req.seed)
    o = req.opts
    out = _out_path(req)
    claim_outputs(out, _inputs(req))
    rows_df = selection.shard_rows(req.prompts, req.shard)
    rows = rows_df.to_dicts()
    rerank = req.candidates_from is not None
    modes = [mode_of(r["family"], r["target"], r["candidates"], rerank) for r in rows]
    if o.item_scoring == "listwise":
        listwise.check_modes(modes)
    need_items = any(m == "items" for m in modes) and not o.unconstrained
    if need_items and not (req.data / schemas.ENTITIES).is_file():
        _tries(req.data, True, 0)  # one clear line before the model loads
    producer = _producer(req)
    histories: dict[str, list[str]] = {}
    if o.exclude_history:
        seqs = read_artifact(req.data, schemas.SEQUENCES)
        histories = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
    excluded = {r["prompt_id"]: history_of(histories.get(r["user_id"], []), req.split, r["item_id"]) if o.exclude_history else set()
                for r in rows}
    retr, extra = None, {"selected": req.prompts.height, **req.selection}
    if req.hybrid_emb is not None:  # where the (sha-checked) item table was read this time
        extra["hybrid_embeddings"] = str(Path(req.hybrid_emb.path).resolve())
    if rerank:
        ranking = rows_df.filter(pl.Series([m == "rerank" for m in modes], dtype=pl.Boolean))
        item_ids = set(read_artifact(req.data, schemas.ITEMS, ["item_id"])["item_id"].to_list())
        retr = retrieval.load(req.candidates_from, req.data, req.split, ranking.select("prompt_id", "candidates"), o.rerank_k, item_ids)
        targets = dict(zip(ranking["prompt_id"].to_list(), ranking["item_id"].to_list()))
        recall = retrieval.recall_at_k(retr, targets, excluded, o.rerank_k)
        extra["rerank"] = {"retriever": str(retr.path.resolve()), "retriever_producer": retr.producer, "k": o.rerank_k, "fusion": o.fusion, **recall}
    prov = provenance.make(req.data, producer, _settings(req, retr), extra)
    if req.overwrite:
        identity.check_overwrite(out)
        identity.clear(out)
    else:
        identity.check_resume(out, prov)
    done = done_prompt_ids(out)
    todo = [(r, m) for r, m in zip(rows, modes) if r["prompt_id"] not in done]
    summary: dict[str, Any] = {"out": str(out), "skipped": len(rows) - len(todo), "modes": {}}
    if req.shard is not None:
        summary["shard"] = f"{req.shard[0]}/{req.shard[1]} ({len(rows)} of {req.prompts.height} selected prompts)"
    if rerank:
        summary["rerank"] = {k: extra["rerank"][k] for k in ("retriever", "k", "fusion", "recall_at_k", "prompts")}
    meta = provenance.encode(prov)
    if todo:
        engine = _engine(req, need_items, todo)
        engine.retriever = retr
        if o.item_scoring == "listwise":  # every prompt's K candidates checked before the first is scored
            listwise.prepare(engine, req.data, req.split, todo, excluded)
        _run_modes(engine, todo, o, excluded, ChunkWriter(out, o.chunk_rows, meta), summary)
    summary["rows"] = merge_parts(out, rows_df["prompt_id"].to_list(), meta)
    return summary


def _tries(data: Path, need_items: bool, vocab: int):
    from recsys_cli.data.trie import EntityTrie, load_entity_trie

    if not (data / schemas.ENTITIES).is_file():
        if need_items:
            raise RecsysError(f"{data / schemas.ENTITIES}: file not found; constrained item generation needs the entity pool (run `recsys build-entities --data {data}`, or pass --unconstrained)", exit_code=2)
        console.log(f"[yellow]{data / schemas.ENTITIES} not found: dynamic positions restart at every token (run `recsys build-entities`)")
        return EntityTrie(), None
    return load_entity_trie(data, None, vocab), load_entity_trie(data, ["item"], vocab)


def _engine(req: InferRequest, need_items: bool, todo):
    from recsys_cli.inference.engine import Engine

    o, data = req.opts, req.data
    lm, tok, cfg = load_model(req.checkpoint, req.model_name, req.trust_remote_code)
    rows, id_tokens = None, True
    if req.hybrid_emb is not None:  # RSLLM: projector + user head from the checkpoint, item table from the file
        from recsys_cli.data.hybrid import item_rows
        from recsys_cli.modeling.hybrid import attach_from_checkpoint

        attach_from_checkpoint(lm, cfg.hybrid, lm.extras, req.hybrid_emb)
        lm.eval()
        rows = item_rows(req.hybrid_emb.item_ids)
        id_tokens = bool(((cfg.recipe or {}).get("hybrid") or {}).get("id_tokens", True))
    if _precision(req) == "bf16":
        from recsys_cli.modeling.precision import to_bf16_inference

        to_bf16_inference(lm)
    if (data / schemas.ENTITIES).is_file():
        from recsys_cli.data.entities import check_pool_tokenizer

        check_pool_tokenizer(data, tok)
    ent_trie, item_trie = _tries(data, need_items, len(tok))
    items = read_artifact(data, schemas.ITEMS, columns=["item_id", "title"])
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    grounder = None
    if o.unconstrained and any(m == "items" for _, m in todo):
        from recsys_cli.data.entities import Grounder

        grounder = Grounder.load(data)
    return Engine(lm, tok, o, ent_trie, item_trie, titles, grounder, hybrid_rows=rows, id_tokens=id_tokens)


MODE_ORDER = ("candidates", "rerank", "yesno", "items", "rating", "text")


def _run_modes(engine, todo, o: InferOptions, excluded: dict[str, set], writer: ChunkWriter, summary: dict) -> None:
    from rich.progress import TextColumn

    by_mode: dict[str, list[dict]] = {}
    for r, m in todo:
        by_mode.setdefault(m, []).append(r)
    t_start = time.perf_counter()
    with console.progress(TextColumn("{task.fields[rate]} prompts/s")) as bar:
        task = bar.add_task("infer", total=len(todo), rate="-")
        n_done = 0
        for mode in MODE_ORDER:
            group = sorted(by_mode.get(mode, []), key=lambda r: len(r["source"] or ""))  # length-sorted batches
            if not group:
                continue
            bs = 1 if (mode in ("candidates", "rerank") and o.item_scoring == "full") else o.batch_size
            stats = summary["modes"].setdefault(mode, {"prompts": 0, "valid": 0, "prompts_per_s": 0.0})
            t0 = time.perf_counter()
            for i in range(0, len(group), bs):
                batch = group[i:i + bs]
                preds = engine.run(mode, batch, [excluded[r["prompt_id"]] for r in batch])
                writer.add(preds)
                stats["prompts"] += len(preds)
                stats["valid"] += sum(p["valid"] for p in preds)
                n_done += len(preds)
                rate = n_done / max(time.perf_counter() - t_start, 1e-9)
                bar.update(task, advance=len(preds), rate=f"{rate:.2f}")
            stats["seconds"] = round(time.perf_counter() - t0, 3)
            stats["prompts_per_s"] = stats["prompts"] / max(time.perf_counter() - t0, 1e-9)
    writer.flush()
