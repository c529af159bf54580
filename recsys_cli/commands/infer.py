"""`recsys infer`: predictions for prompts.parquet with a pretrained checkpoint. Flags are resolved
in inference/flags.py; the run is plan -> engine -> loop (inference/plan.py, inference/run.py).

    recsys infer --data runs/toys --checkpoint runs/ckpt --split test --limit 100
    recsys infer --data runs/toys --checkpoint runs/ckpt --family direct --kind rank --users 300
    recsys infer --data runs/toys --checkpoint none --model embedded --out runs/zero-shot.parquet
    recsys infer --data runs/toys --checkpoint runs/ckpt --family sequential --unconstrained
    recsys infer --data runs/toys --checkpoint runs/ckpt --candidates-from SASREC --rerank-k 50 --fusion 0.7
    recsys infer --data runs/toys --checkpoint runs/ckpt --candidates-from SASREC --tuning runs/toys/tuning.json
    recsys infer --data runs/toys --checkpoint runs/ckpt --shard 0/4     # then: recsys merge-predictions
    recsys infer --data runs/toys --checkpoint runs/rsllm --hybrid-embeddings runs/toys/baselines/sasrec.safetensors

SASREC: a baseline's predictions file, e.g. runs/toys/predictions/test/sasrec.parquet.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

from recsys_cli import console
from recsys_cli.inference import infer_options as flags
from recsys_cli.options import (
    AsJson,
    DataDir,
    ModelOpt,
    Quiet,
    Seed,
    TrustRemoteCode,
)


def command(
    data: DataDir,
    checkpoint: flags.CheckpointOpt,
    model: ModelOpt = None,
    split: flags.SplitOpt = "test",
    family: flags.FamilyOpt = None,
    template: flags.TemplateOpt = None,
    seen: flags.SeenOpt = None,
    kind: flags.KindOpt = None,
    limit: flags.LimitOpt = None,
    users: flags.UsersOpt = None,
    prompt_ids: flags.PromptIdsOpt = None,
    batch_size: flags.BatchSizeOpt = 8,
    out: flags.OutOpt = None,
    top_k: flags.TopKOpt = 10,
    beams: flags.BeamsOpt = None,
    exclude_history: flags.ExcludeHistoryOpt = False,
    unconstrained: flags.UnconstrainedOpt = False,
    max_new_tokens: flags.MaxNewTokensOpt = None,
    text_decoding: flags.TextDecodingOpt = None,
    text_beams: flags.TextBeamsOpt = None,
    no_repeat_ngram: flags.NoRepeatNgramOpt = None,
    min_new_tokens: flags.MinNewTokensOpt = None,
    length_penalty: flags.LengthPenaltyOpt = None,
    repetition_penalty: flags.RepetitionPenaltyOpt = None,
    text_adapter_scale: flags.TextAdapterScaleOpt = None,
    item_scoring: flags.ItemScoringOpt = None,
    listwise_orders: flags.ListwiseOrdersOpt = 1,
    listwise_candidate_ids: flags.ListwiseCandidateIdsOpt = None,
    rating_scoring: flags.RatingScoringOpt = "distribution",
    rating_calibration: flags.RatingCalibrationOpt = None,
    dynamic_positions: flags.DynamicPositionsOpt = True,
    candidates_from: flags.CandidatesFromOpt = None,
    rerank_k: flags.RerankKOpt = None,
    fusion: flags.FusionOpt = None,
    tuning: flags.TuningOpt = None,
    shard: flags.ShardOpt = None,
    hybrid_embeddings: flags.HybridEmbeddingsOpt = None,
    precision: flags.PrecisionOpt = "fp32",
    overwrite: flags.OverwriteOpt = False,
    allow_other_data: flags.AllowOtherDataOpt = False,
    trust_remote_code: TrustRemoteCode = False,
    seed: Seed = 0,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Rank items, score candidates, predict ratings and write explanations for each prompt."""
    console.set_quiet(quiet)
    from recsys_cli.artifacts.io import file_sha256
    from recsys_cli.inference import flags as flags_of
    from recsys_cli.inference.plan import InferRequest
    from recsys_cli.inference.run import run_inference
    from recsys_cli.inference.selection import parse_shard

    flags = SimpleNamespace(**locals())  # every option by name, for the checks below
    tuned = flags_of.apply_tuning(flags)
    flags_of.check_flags(flags)
    calibration = flags_of.rating_calibration(flags)
    prompts = flags_of.select_prompts(data, split, family, template, seen, kind, users, prompt_ids, limit)
    chosen = {
        "limit": limit,
        "users": users,
        "prompt_ids": None
        if prompt_ids is None
        else {"path": str(prompt_ids.resolve()), "sha256": file_sha256(prompt_ids)},
        **({} if tuned is None else {"tuning": tuned}),
        **({} if calibration is None else {"rating_calibration": calibration}),
    }
    req = InferRequest(
        data=data, checkpoint=checkpoint, model_name=model, split=split, prompts=prompts,
        opts=flags_of.infer_options(flags, calibration), out=out, selection=chosen,
        filters={"family": family, "template": template, "seen": seen, "kind": kind},
        candidates_from=candidates_from, shard=parse_shard(shard), overwrite=overwrite, seed=seed,
        trust_remote_code=trust_remote_code, hybrid_embeddings=hybrid_embeddings, allow_other_data=allow_other_data,
    )  # fmt: skip
    t0 = time.perf_counter()
    summary = run_inference(req)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    _print(summary, as_json)


def _print(summary: dict, as_json: bool) -> None:
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
        notes.append(
            f"two-stage: {r['retriever']} first {r['k']} reranked, fusion W={r['fusion']}; "
            f"retriever recall@{r['k']} = {r['recall_at_k']:.4f} on {r['prompts']} ranking prompts (the rerank ceiling)"
        )
    console.emit(summary, as_json=as_json, title="infer", tables=[table], notes=notes or None)
