"""Wires `recsys infer` together: load the model (merged LoRA), the entity tries, titles and
histories; run each mode in length-sorted batches with a progress bar; write resumable
chunks and merge them into the predictions file.

    recsys infer --data runs/toys --checkpoint runs/ckpt --limit 20
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli import console
from recsys_cli.artifacts import schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.errors import InputError, RecsysError
from recsys_cli.inference.runner import ChunkWriter, InferOptions, done_prompt_ids, history_of, merge_parts, mode_of, parts_dir


def load_model(checkpoint: str, model_name: str | None, trust_remote_code: bool):
    """-> (RecsysLM in eval mode with LoRA merged, tokenizer, checkpoint config)."""
    from recsys_cli.modeling.checkpoint import load_base_for_inference, load_checkpoint

    import warnings

    with warnings.catch_warnings():  # transformers/peft deprecation chatter while merging LoRA
        warnings.simplefilter("ignore", FutureWarning)
        if checkpoint.lower() == "none":
            return load_base_for_inference(model_name, trust_remote_code=trust_remote_code)
        lm, tok, cfg = load_checkpoint(Path(checkpoint), base_model=model_name, merge=True, trust_remote_code=trust_remote_code)
    lm.eval()
    return lm, tok, cfg


def check_base(checkpoint: Path, model_name: str) -> None:
    """--model must be the base the checkpoint was trained on (checked before any work)."""
    from recsys_cli.artifacts.checkpoint import CheckpointConfig
    from recsys_cli.modeling.registry import check_fingerprint, resolve_model

    check_fingerprint(CheckpointConfig.read(checkpoint), resolve_model(model_name), checkpoint / schemas.CKPT_CONFIG)


def _tries(data: Path, need_items: bool, vocab: int):
    from recsys_cli.data.trie import EntityTrie, load_entity_trie

    if not (data / schemas.ENTITIES).is_file():
        if need_items:
            raise RecsysError(f"{data / schemas.ENTITIES}: file not found; constrained item generation needs the entity pool (run `recsys build-entities --data {data}`, or pass --unconstrained)", exit_code=2)
        console.log(f"[yellow]{data / schemas.ENTITIES} not found: dynamic positions restart at every token (run `recsys build-entities`)")
        return EntityTrie(), None
    return load_entity_trie(data, None, vocab), load_entity_trie(data, ["item"], vocab)


def run_inference(data: Path, checkpoint: str, model_name: str | None, prompts: pl.DataFrame, split: str,
                  out: Path | None, opts: InferOptions, overwrite: bool, seed: int, trust_remote_code: bool) -> dict:
    import shutil

    import torch

    from recsys_cli.inference.engine import Engine

    torch.manual_seed(seed)
    o = opts
    if out is None:
        if checkpoint.lower() == "none":
            raise RecsysError("--out is required with --checkpoint none (there is no checkpoint directory to write into)", exit_code=2)
        name = schemas.PREDICTIONS_UNCONSTRAINED_FILE if o.unconstrained else schemas.PREDICTIONS_FILE
        out = Path(checkpoint) / schemas.PREDICTIONS_DIR / name.format(split=split)
    if overwrite:
        out.unlink(missing_ok=True)
        shutil.rmtree(parts_dir(out), ignore_errors=True)
    rows = prompts.to_dicts()
    modes = [mode_of(r["family"], r["target"], r["candidates"]) for r in rows]
    need_items = any(m == "items" for m in modes) and not o.unconstrained
    if need_items and not (data / schemas.ENTITIES).is_file():
        _tries(data, True, 0)  # one clear line before the model loads
    if checkpoint.lower() != "none" and model_name is not None:
        check_base(Path(checkpoint), model_name)
    order = prompts["prompt_id"].to_list()
    done = done_prompt_ids(out)
    todo = [(r, m) for r, m in zip(rows, modes) if r["prompt_id"] not in done]
    summary: dict[str, Any] = {"out": str(out), "skipped": len(rows) - len(todo), "modes": {}}
    if todo:
        lm, tok, cfg = load_model(checkpoint, model_name, trust_remote_code)
        if o.max_new_tokens is None:
            o.max_new_tokens = int(((cfg.recipe or {}).get("eval") or {}).get("max_new_tokens") or 64)
        if cfg.positions == "linear":
            o.dynamic = False
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
        histories: dict[str, list[str]] = {}
        if o.exclude_history:
            seqs = read_artifact(data, schemas.SEQUENCES)
            histories = dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list()))
        engine = Engine(lm, tok, o, ent_trie, item_trie, titles, grounder)
        _run_modes(engine, todo, o, split, histories, out, summary)
    summary["rows"] = merge_parts(out, order)
    return summary


def _run_modes(engine, todo, o: InferOptions, split: str, histories, out: Path, summary: dict) -> None:
    from rich.progress import TextColumn

    writer = ChunkWriter(out, o.chunk_rows)
    by_mode: dict[str, list[dict]] = {}
    for r, m in todo:
        by_mode.setdefault(m, []).append(r)
    t_start = time.perf_counter()
    with console.progress(TextColumn("{task.fields[rate]} prompts/s")) as bar:
        task = bar.add_task("infer", total=len(todo), rate="-")
        n_done = 0
        for mode in ("candidates", "yesno", "items", "rating", "text"):
            group = sorted(by_mode.get(mode, []), key=lambda r: len(r["source"] or ""))  # length-sorted batches
            if not group:
                continue
            bs = 1 if mode == "candidates" else o.batch_size
            stats = summary["modes"].setdefault(mode, {"prompts": 0, "valid": 0, "prompts_per_s": 0.0})
            t0 = time.perf_counter()
            for i in range(0, len(group), bs):
                batch = group[i:i + bs]
                excl = [history_of(histories.get(r["user_id"], []), split, r["item_id"]) if o.exclude_history else set() for r in batch]
                preds = engine.run(mode, batch, excl)
                writer.add(preds)
                stats["prompts"] += len(preds)
                stats["valid"] += sum(p["valid"] for p in preds)
                n_done += len(preds)
                rate = n_done / max(time.perf_counter() - t_start, 1e-9)
                bar.update(task, advance=len(preds), rate=f"{rate:.2f}")
            stats["prompts_per_s"] = stats["prompts"] / max(time.perf_counter() - t0, 1e-9)
    writer.flush()
