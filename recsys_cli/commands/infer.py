"""`recsys infer`: predictions for prompts.parquet with a pretrained checkpoint.

    recsys infer --data runs/toys --checkpoint runs/ckpt --split test --limit 100
    recsys infer --data runs/toys --checkpoint runs/ckpt --family direct --kind rank --users 300
    recsys infer --data runs/toys --checkpoint none --model embedded --out runs/zero-shot.parquet
    recsys infer --data runs/toys --checkpoint runs/ckpt --family sequential --unconstrained
    recsys infer --data runs/toys --checkpoint runs/ckpt --candidates-from runs/toys/predictions/test/sasrec.parquet --rerank-k 50 --fusion 0.7
    recsys infer --data runs/toys --checkpoint runs/ckpt --candidates-from runs/toys/predictions/test/sasrec.parquet --tuning runs/toys/tuning.json
    recsys infer --data runs/toys --checkpoint runs/ckpt --shard 0/4     # then: recsys merge-predictions
    recsys infer --data runs/toys --checkpoint runs/rsllm --hybrid-embeddings runs/toys/baselines/sasrec.safetensors
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli import console
from recsys_cli.errors import RecsysError
from recsys_cli.options import AT_LEAST_1, UNIT, AsJson, DataDir, ModelOpt, Quiet, Seed, TrustRemoteCode, ranged


def _select(data: Path, split, family, template, seen, kind, users, prompt_ids, limit):
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.inference import selection

    everything = read_artifact(data, schemas.PROMPTS)
    df = selection.filter_prompts(everything, split, family, template, seen, kind)
    if users is not None:  # the first N users in prompt order: a fixed evaluation subset
        df = selection.first_users(df, users)
    if prompt_ids is not None:
        df = selection.pick_ids(df, everything, prompt_ids)
    if limit is not None:
        df = df.head(limit)
    if df.height == 0:
        what = ", ".join(f"{k}={v}" for k, v in (("split", split), ("family", family), ("template", template), ("seen", seen), ("kind", kind)) if v is not None)
        raise RecsysError(f"{data / schemas.PROMPTS}: no prompts match {what}", exit_code=2)
    return df


def _tuned(tuning: Path, data: Path, candidates_from: Optional[Path], rerank_k, fusion, item_scoring):
    """--tuning: (K, W, scorer, what the provenance records) from a `recsys tune` file (evaluation/tune.py)."""
    from recsys_cli.evaluation.tune import tuned_settings

    if candidates_from is None:
        raise typer.BadParameter("needs --candidates-from (the retriever whose lists are reranked)", param_hint="--tuning")
    return tuned_settings(tuning, data, candidates_from, rerank_k, fusion, item_scoring)


def _check_listwise(item_scoring: str, orders: int, rerank_k: Optional[int],
                    candidate_ids: Optional[bool] = None) -> None:
    from recsys_cli.data.listwise import MAX_K

    if orders > 1 and item_scoring != "listwise":
        raise typer.BadParameter("only with --item-scoring listwise", param_hint="--listwise-orders")
    if candidate_ids and item_scoring != "listwise":
        raise typer.BadParameter("only with --item-scoring listwise", param_hint="--listwise-candidate-ids")
    if item_scoring == "listwise" and rerank_k is not None and rerank_k > MAX_K:
        raise typer.BadParameter(f"at most {MAX_K} with --item-scoring listwise (one-token labels), got {rerank_k}", param_hint="--rerank-k")


def command(
    data: DataDir,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="Checkpoint directory from `recsys pretrain`, or 'none' for the bare base model (zero-shot).")],
    model: ModelOpt = None,
    split: Annotated[str, typer.Option("--split", help="train | valid | test.")] = "test",
    family: Annotated[Optional[str], typer.Option("--family", help="Only this task family.")] = None,
    template: Annotated[Optional[str], typer.Option("--template", help="Only this template id.")] = None,
    seen: Annotated[Optional[bool], typer.Option("--seen/--unseen", help="Only seen (trained) or unseen (zero-shot) templates.")] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="Only templates of this kind, e.g. rank (direct, 100 candidates) or yesno.")] = None,
    limit: Annotated[Optional[int], ranged("--limit", rule=AT_LEAST_1, help="At most N prompts (after filtering).")] = None,
    users: Annotated[Optional[int], ranged("--users", rule=AT_LEAST_1, help="Only the prompts of the first N users (in prompt order): a fixed evaluation subset.")] = None,
    prompt_ids: Annotated[Optional[Path], typer.Option("--prompt-ids", help="Answer exactly these prompts, in file order: a text file with one prompt_id per line.")] = None,
    batch_size: Annotated[int, ranged("--batch-size", rule=AT_LEAST_1, help="Prompts per forward pass.")] = 8,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Predictions file (default C/predictions/<split>.parquet; a shard adds .shard-i-of-n).")] = None,
    top_k: Annotated[int, ranged("--top-k", rule=AT_LEAST_1, help="Items in each ranked list.")] = 10,
    beams: Annotated[Optional[int], ranged("--beams", rule=AT_LEAST_1, help="Beams for item generation (>= top-k; default top-k).")] = None,
    exclude_history: Annotated[bool, typer.Option("--exclude-history", help="Drop items the user already interacted with.")] = False,
    unconstrained: Annotated[bool, typer.Option("--unconstrained", help="Free-text item generation grounded by MinHash (comparison mode).")] = False,
    max_new_tokens: Annotated[Optional[int], ranged("--max-new-tokens", rule=AT_LEAST_1, help="Length limit for explanation / review outputs (default: the recipe's max_new_tokens, else 64).")] = None,
    text_beams: Annotated[int, ranged("--text-beams", rule=AT_LEAST_1, help="Beams for explanation / review (1 = greedy).")] = 1,
    item_scoring: Annotated[Optional[str], typer.Option("--item-scoring", help="How ranked items are scored: 'constrained' (the default) = log P under decoding restricted to the catalogue (or candidate) titles, a hypothesis ends once its prefix is unique (fast); 'full' = summed full-vocabulary log-probs of every title token (P5-style, slower); 'listwise' = one prompt lists the K candidates with one-token labels, one forward pass scores them all by the labels' log-probs (docs/rerank.md).")] = None,
    listwise_orders: Annotated[int, ranged("--listwise-orders", rule=AT_LEAST_1, help="With --item-scoring listwise: average each candidate's label log-prob over N seeded candidate orders.")] = 1,
    listwise_candidate_ids: Annotated[Optional[bool], typer.Option("--listwise-candidate-ids/--no-listwise-candidate-ids", help="With --item-scoring listwise and an RSLLM checkpoint: each candidate title also carries its projected SASRec item embedding as a soft token (default: the checkpoint recipe's listwise.candidate_ids).")] = None,
    rating_scoring: Annotated[str, typer.Option("--rating-scoring", help="Star-rating prompts: 'distribution' (the default) = the expected star under the model's softmax over the five star tokens at the answer position, one forward pass; 'argmax' = its most probable star; 'generate' = greedy text, parsed (comparison).")] = "distribution",
    dynamic_positions: Annotated[bool, typer.Option("--dynamic-positions/--no-dynamic-positions", help="Trie-driven intra positions while generating (the paper's mechanism).")] = True,
    candidates_from: Annotated[Optional[Path], typer.Option("--candidates-from", help="Two-stage ranking: a predictions file (baseline or model, same --data) whose ranked lists the LLM reranks (docs/rerank.md).")] = None,
    rerank_k: Annotated[Optional[int], ranged("--rerank-k", rule=AT_LEAST_1, help="With --candidates-from: rerank the retriever's first K items; the rest keep its order.")] = None,
    fusion: Annotated[Optional[float], ranged("--fusion", rule=UNIT, help="With --candidates-from: W in W*llm + (1-W)*retriever over log-softmax-normalised scores (1 = LLM only, the default; 0 = retriever order).")] = None,
    tuning: Annotated[Optional[Path], typer.Option("--tuning", help="With --candidates-from: a `recsys tune` file (made on --data's validation split); applies its chosen --rerank-k, --fusion and --item-scoring.")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Answer shard i of n (i/n, round-robin over the selected prompts); default RANK/WORLD_SIZE under torchrun.")] = None,
    hybrid_embeddings: Annotated[Optional[Path], typer.Option("--hybrid-embeddings", help="RSLLM checkpoint: read the SASRec item embeddings from this file instead of the path recorded in the checkpoint (its content must be the same).")] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, bf16, or auto (bf16 where the CPU or GPU computes it natively, e.g. avx512_bf16: about 2x faster on such CPUs; the vocabulary projection stays fp32).")] = "fp32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start over instead of resuming (only replaces a file `recsys infer` wrote).")] = False,
    allow_other_data: Annotated[bool, typer.Option(
        "--allow-other-data",
        help="Use a checkpoint on data other than the data it was trained on (refused otherwise; the message says what differs).",
    )] = False,
    trust_remote_code: TrustRemoteCode = False,
    seed: Seed = 0,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Rank items, score candidates, predict ratings and write explanations for each prompt."""
    console.set_quiet(quiet)
    from recsys_cli.artifacts.io import file_sha256
    from recsys_cli.inference.runner import InferOptions
    from recsys_cli.inference.selection import parse_shard
    from recsys_cli.inference.session import InferRequest, run_inference

    from recsys_cli.modeling.precision import PRECISIONS

    tuned = None
    if tuning is not None:
        rerank_k, fusion, tuned_scorer, tuned = _tuned(tuning, data, candidates_from, rerank_k, fusion, item_scoring)
        from recsys_cli.evaluation.tune import parse_scorer

        item_scoring, listwise_orders, tuned_ids = parse_scorer(tuned_scorer)
        listwise_candidate_ids = tuned_ids if item_scoring == "listwise" else listwise_candidate_ids
    item_scoring = "constrained" if item_scoring is None else item_scoring
    fusion = 1.0 if fusion is None else fusion
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"expected one of {', '.join(PRECISIONS)}, got {precision!r}", param_hint="--precision")
    if item_scoring not in ("constrained", "full", "listwise"):
        raise typer.BadParameter(f"expected 'constrained', 'full' or 'listwise', got {item_scoring!r}", param_hint="--item-scoring")
    _check_listwise(item_scoring, listwise_orders, rerank_k, listwise_candidate_ids)
    from recsys_cli.inference.rating import SCORINGS

    if rating_scoring not in SCORINGS:
        raise typer.BadParameter(f"expected one of {', '.join(SCORINGS)}, got {rating_scoring!r}", param_hint="--rating-scoring")
    beams = beams or top_k
    if beams < top_k:
        raise typer.BadParameter(f"must be >= --top-k ({top_k})", param_hint="--beams")
    if (candidates_from is None) != (rerank_k is None):
        raise typer.BadParameter("--candidates-from and --rerank-k go together", param_hint="--candidates-from/--rerank-k")
    if candidates_from is not None and unconstrained:
        raise typer.BadParameter("reranks the retriever's items; it cannot be combined with --unconstrained", param_hint="--candidates-from")
    if users is not None and prompt_ids is not None:
        raise typer.BadParameter("choose one of --users and --prompt-ids", param_hint="--prompt-ids")
    shard_of = parse_shard(shard)
    if checkpoint.lower() != "none" and not Path(checkpoint).is_dir():
        raise RecsysError(f"{checkpoint}: checkpoint directory not found (run `recsys pretrain --out {checkpoint}`, or pass --checkpoint none)", exit_code=2)
    prompts = _select(data, split, family, template, seen, kind, users, prompt_ids, limit)
    opts = InferOptions(top_k=top_k, beams=beams, exclude_history=exclude_history, unconstrained=unconstrained,
                        max_new_tokens=max_new_tokens, text_beams=text_beams, batch_size=batch_size,
                        dynamic=dynamic_positions, item_scoring=item_scoring, rerank_k=rerank_k, fusion=fusion,
                        precision=precision, listwise_orders=listwise_orders, seed=seed,
                        listwise_candidate_ids=listwise_candidate_ids,
                        rating_scoring=rating_scoring)
    chosen = {"limit": limit, "users": users,
              "prompt_ids": None if prompt_ids is None else {"path": str(prompt_ids.resolve()), "sha256": file_sha256(prompt_ids)},
              **({} if tuned is None else {"tuning": tuned})}
    req = InferRequest(data=data, checkpoint=checkpoint, model_name=model, split=split, prompts=prompts, opts=opts, out=out,
                       filters={"family": family, "template": template, "seen": seen, "kind": kind}, selection=chosen,
                       candidates_from=candidates_from, shard=shard_of, overwrite=overwrite, seed=seed,
                       trust_remote_code=trust_remote_code, hybrid_embeddings=hybrid_embeddings,
                       allow_other_data=allow_other_data)
    t0 = time.perf_counter()
    summary = run_inference(req)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    from rich.table import Table

    table = Table(title=f"recsys infer -> {summary['out']}")
    for col in ("mode", "prompts", "valid", "prompts/s"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    for mode, m in sorted(summary["modes"].items()):
        table.add_row(mode, str(m["prompts"]), str(m["valid"]), f"{m['prompts_per_s']:.2f}")
    table.add_row("skipped (already written)", str(summary["skipped"]), "", "")
    notes = []
    if "rerank" in summary:
        r = summary["rerank"]
        notes.append(f"two-stage: {r['retriever']} first {r['k']} reranked, fusion W={r['fusion']}; "
                     f"retriever recall@{r['k']} = {r['recall_at_k']:.4f} on {r['prompts']} ranking prompts (the rerank ceiling)")
    console.emit(summary, as_json=as_json, title="infer", tables=[table], notes=notes or None)
