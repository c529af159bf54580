"""`recsys infer`, steps 2 and 3: build the engine from the plan (inference/plan.py), with the
plan's retriever passed in, then run each mode in length-sorted batches with a progress bar,
writing resumable chunks and merging them into the predictions file (inference/chunks.py). The
loop reads the plan and never changes it.

    recsys infer --data runs/toys --checkpoint runs/ckpt --limit 20
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recsys_cli import console
from recsys_cli.artifacts import provenance, schemas
from recsys_cli.artifacts.io import read_artifact
from recsys_cli.inference import listwise, provenance_checks
from recsys_cli.inference.chunks import ChunkWriter, done_prompt_ids, merge_parts
from recsys_cli.inference.options import InferOptions
from recsys_cli.inference.plan import InferPlan, InferRequest, inference_device, plan_inference, precision_of, tries_of


def load_model(checkpoint: str, model_name: str | None, trust_remote_code: bool):
    """-> (RecsysLM in eval mode with LoRA merged, on `inference_device()`, tokenizer, checkpoint config)."""
    import warnings

    from recsys_cli.modeling.checkpoint import load_base_for_inference, load_checkpoint

    device = inference_device()
    with warnings.catch_warnings():  # transformers/peft deprecation chatter while merging LoRA
        warnings.simplefilter("ignore", FutureWarning)
        if checkpoint.lower() == "none":
            return load_base_for_inference(model_name, device=device, trust_remote_code=trust_remote_code)
        lm, tok, cfg = load_checkpoint(
            Path(checkpoint), base_model=model_name, device=device, merge=True, trust_remote_code=trust_remote_code
        )
    lm.eval()
    return lm, tok, cfg


def run_inference(req: InferRequest) -> dict:
    """plan -> engine -> run: resume or start, score what is not done, merge the chunks."""
    import torch

    torch.manual_seed(req.seed)
    plan = plan_inference(req)
    out, o = plan.out, plan.resolved.opts
    if req.overwrite:
        provenance_checks.check_overwrite(out)
        provenance_checks.clear(out)
    else:
        provenance_checks.check_resume(out, plan.prov)
    done = done_prompt_ids(out)
    rows = plan.rows_df.to_dicts()
    todo = [(r, m) for r, m in zip(rows, plan.modes) if r["prompt_id"] not in done]
    summary: dict[str, Any] = {"out": str(out), "skipped": len(rows) - len(todo), "modes": {}}
    if req.shard is not None:
        summary["shard"] = f"{req.shard[0]}/{req.shard[1]} ({len(rows)} of {req.prompts.height} selected prompts)"
    if plan.retriever is not None:
        summary["rerank"] = {k: plan.extra["rerank"][k] for k in ("retriever", "k", "fusion", "recall_at_k", "prompts")}
    meta = provenance.encode(plan.prov)
    if todo:
        engine = _engine(req, plan, todo)
        if o.item_scoring == "listwise":  # every prompt's K candidates checked before the first is scored
            listwise.prepare(engine, req.data, req.split, todo, plan.excluded)
        _run_modes(engine, todo, o, plan.excluded, ChunkWriter(out, o.chunk_rows, meta), summary)
    summary["rows"] = merge_parts(out, plan.rows_df["prompt_id"].to_list(), meta)
    return summary


def _engine(req: InferRequest, plan: InferPlan, todo):
    """The model (merged LoRA, bf16 when asked), tries and titles, with the plan's retriever."""
    from recsys_cli.inference.engine import Engine

    o, data, res = plan.resolved.opts, req.data, plan.resolved
    need_items = any(m == "items" for m in plan.modes) and not o.unconstrained
    lm, tok, cfg = load_model(req.checkpoint, req.model_name, req.trust_remote_code)
    rows = None
    if res.hybrid_emb is not None:  # RSLLM: projector + user head from the checkpoint, item table from the file
        from recsys_cli.data.rsllm import item_rows
        from recsys_cli.modeling.rsllm import attach_from_checkpoint

        attach_from_checkpoint(lm, cfg.hybrid, lm.extras, res.hybrid_emb)
        lm.eval()
        rows = item_rows(res.hybrid_emb.item_ids)
    if precision_of(o) == "bf16":
        from recsys_cli.modeling.precision import to_bf16_inference

        to_bf16_inference(lm)
    if (data / schemas.ENTITIES).is_file():
        from recsys_cli.data.entities import check_pool_tokenizer

        check_pool_tokenizer(data, tok)
    ent_trie, item_trie = tries_of(data, need_items, len(tok))
    items = read_artifact(data, schemas.ITEMS, columns=["item_id", "title"])
    titles = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    grounder = None
    if o.unconstrained and any(m == "items" for _, m in todo):
        from recsys_cli.data.entities import Grounder

        grounder = Grounder.load(data)
    return Engine(
        lm,
        tok,
        o,
        ent_trie,
        item_trie,
        titles,
        grounder,
        hybrid_rows=rows,
        id_tokens=res.recipe.hybrid.id_tokens,
        retriever=plan.retriever,
    )


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
            bs = o.batch_size  # full scoring batches prompts too (candidates.score_batch)
            stats = summary["modes"].setdefault(mode, {"prompts": 0, "valid": 0, "prompts_per_s": 0.0})
            t0 = time.perf_counter()
            for i in range(0, len(group), bs):
                batch = group[i : i + bs]
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
