#!/usr/bin/env bash
# Every recsys command that touches the model, on one CUDA GPU, in bf16, in a few minutes; one
# PASS / FAIL / SKIP line per step, then a total. Exit 0 only when nothing failed.
#
#   bash scripts/gpu-check.sh                       # the machine's python3, the repository on PYTHONPATH
#   PYTHON=/opt/py/bin/python WORK=/tmp/gc bash scripts/gpu-check.sh
#   GPU_CHECK_ALLOW_CPU=1 bash scripts/gpu-check.sh # the same steps on the CPU, tiny model only
#   WORK=/tmp/gc GPU_CHECK_ONLY='^infer' bash scripts/gpu-check.sh   # again, only the infer steps
#
# Steps: textualize the Toys and Musical Instruments fixtures; build-entities (tiny and embedded
# tokenizers); pretrain the tiny model with a mid-run save, then --resume; SASRec with
# --embeddings-out; RSLLM (stage 1 + stage 2, continuing the tiny checkpoint); DeepSpeed ZeRO-2 and
# ZeRO-3 with a mid-run save; infer in every mode (constrained beam item generation in bf16 and
# fp32, unconstrained generation, direct candidates with --item-scoring constrained and full,
# yes/no, --candidates-from rerank constrained and full, rating, explanation greedy and beam,
# zero-shot, the hybrid and the ZeRO-3 checkpoints); the embedded SmolLM2 (pretrain + resume,
# RSLLM stage 2, infer). Logs: $WORK/logs/. Nothing is installed and nothing is downloaded.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
CPU=${GPU_CHECK_ALLOW_CPU:-0}
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# refuse before anything is written: no CUDA, no run (unless the CPU run is asked for)
if [ "$CPU" != 1 ]; then
  gpu=$("$PYTHON" scripts/gpu_check.py cuda) || exit 2
else
  gpu="CPU (GPU_CHECK_ALLOW_CPU=1: tiny model only)"
fi

WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/recsys-gpu-check.XXXXXX")}
STEP_TIMEOUT=${STEP_TIMEOUT:-300}
ONLY=${GPU_CHECK_ONLY:-}  # an extended regex: run only the steps whose names match (WORK=... keeps earlier outputs)
PREC=bf16
mkdir -p "$WORK/logs" "$WORK/pred"
R=$WORK/toys REMB=$WORK/toys-emb MUS=$WORK/musical P=$WORK/pred
TINY_RECIPE=recipes/pretrain/tiny-cpu.yaml EMB_RECIPE=recipes/pretrain/smollm2-cpu.yaml
n_pass=0 n_fail=0 n_skip=0 idx=0 last_ok=0 started=$SECONDS
echo "gpu-check on $gpu; python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); work dir $WORK"

recsys() { timeout "$STEP_TIMEOUT" "$PYTHON" -m recsys_cli.main "$@"; }
check() { timeout "$STEP_TIMEOUT" "$PYTHON" scripts/gpu_check.py "$@"; }

step() {  # step NAME COMMAND...: run it, log it, print one line
  local name=$1 t0=$SECONDS log rc
  shift
  if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then
    skip "$name" "not selected (GPU_CHECK_ONLY)"
    last_ok=0
    return
  fi
  idx=$((idx + 1))
  log=$WORK/logs/$(printf %02d "$idx")-${name//[^A-Za-z0-9_.-]/_}.log
  last_ok=0
  if "$@" >"$log" 2>&1; then
    last_ok=1
    n_pass=$((n_pass + 1))
    printf 'PASS  %-58s %4d s\n' "$name" $((SECONDS - t0))
  else
    rc=$?
    n_fail=$((n_fail + 1))
    printf 'FAIL  %-58s %4d s  rc=%d: %s\n' "$name" $((SECONDS - t0)) "$rc" \
      "$( (grep -m1 -E '^(Error|RuntimeError|.*Error:)' "$log" || tail -n 1 "$log") | cut -c1-240)"
  fi
}

skip() {  # skip NAME WHY
  n_skip=$((n_skip + 1))
  printf 'SKIP  %-58s        %s\n' "$1" "$2"
}

need() {  # need PATH...: every input of a step exists (else the step is skipped: an earlier one failed)
  local p
  for p in "$@"; do [ -e "$p" ] || return 1; done
}

run_if() {  # run_if "PATHS" NAME COMMAND...
  local paths=$1
  shift
  # shellcheck disable=SC2086
  if need $paths; then step "$@"; else skip "$1" "needs $paths (an earlier step failed)"; fi
}

# --- data -------------------------------------------------------------------------------------
step "textualize amazon toys (fixture)" \
  recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out "$R" --seed 0 --quiet
step "textualize amazon Musical_Instruments (fixture)" \
  recsys textualize amazon --category Musical_Instruments --data-dir fixtures/amazon/musical_instruments \
    --out "$MUS" --seed 0 --quiet
run_if "$R/manifest.json" "build-entities (tiny model tokenizer)" recsys build-entities --data "$R" \
  --model fixtures/tiny-model --quiet

# --- tiny model: pretrain, save mid-run, resume -----------------------------------------------
CT=$WORK/ckpt-tiny
tiny=(--config "$TINY_RECIPE" --precision "$PREC" --batch-size 4 --max-length 128 --eval-every 2 --seed 0 --quiet)
pretrain_resume_tiny() {
  recsys pretrain --data "$R" --out "$CT" "${tiny[@]}" --max-steps 2 --save-every 1 &&
    check ckpt "$CT" 2 &&
    recsys pretrain --data "$R" --out "$CT" "${tiny[@]}" --max-steps 4 --save-every 1 --resume \
      --allow-changed train.max_steps &&
    check ckpt "$CT" 4
}
run_if "$R/entities.parquet" "pretrain tiny $PREC: save at steps 1, 2, resume to 4" pretrain_resume_tiny

# --- SASRec and RSLLM (stage 1 + stage 2 continuing the tiny checkpoint) ----------------------
sasrec() {
  recsys baseline sasrec --data "$R" --out "$P/sasrec.parquet" --embeddings-out "$WORK/sasrec.safetensors" --top-k 20 \
    --max-epochs 2 --hidden 32 --blocks 1 --max-len 20 --seed 0 --quiet
}
run_if "$R/manifest.json" "baseline sasrec --embeddings-out" sasrec
CH=$WORK/ckpt-rsllm
rsllm_tiny() {
  recsys pretrain --data "$R" --out "$CH" "${tiny[@]}" --max-steps 3 --save-every 2 \
    --set hybrid.embeddings="$WORK/sasrec.safetensors" --set hybrid.init_checkpoint="$CT" --set hybrid.stage1_steps=1 &&
    check ckpt "$CH" 3
}
run_if "$CT/recsys_checkpoint.json $WORK/sasrec.safetensors" \
  "pretrain RSLLM tiny $PREC: stage 1 + 2 from the tiny ckpt" rsllm_tiny

# --- DeepSpeed, one process ---------------------------------------------------------------------
zero() {  # zero STAGE
  recsys pretrain --data "$R" --out "$WORK/ckpt-zero$1" "${tiny[@]}" --max-steps 3 --save-every 2 \
    --deepspeed "recipes/deepspeed/zero$1.json" && check ckpt "$WORK/ckpt-zero$1" 3
}
if check deepspeed >"$WORK/logs/deepspeed-import.log" 2>&1; then
  for z in 2 3; do
    run_if "$R/entities.parquet" "pretrain tiny DeepSpeed ZeRO-$z $PREC: save at 2 and 3" zero "$z"
  done
else
  skip "pretrain tiny DeepSpeed ZeRO-2 / ZeRO-3" "$(tail -n 1 "$WORK/logs/deepspeed-import.log" | cut -c1-160)"
fi

# --- infer, every mode, on the tiny checkpoint ------------------------------------------------
infer_rows() {  # infer_rows OUT ROWS ARGS...: one infer run, then its row count checked
  local out=$1 n=$2
  shift 2
  recsys infer --out "$out" --overwrite --quiet "$@" && check rows "$out" "$n"
}
T=(--data "$R" --checkpoint "$CT" --split test)
run_if "$CT/recsys_checkpoint.json" "infer items: constrained beam, $PREC" \
  infer_rows "$P/items.parquet" 4 "${T[@]}" --family sequential --limit 4 --top-k 5 --beams 8 --precision "$PREC"
run_if "$CT/recsys_checkpoint.json" "infer items: constrained beam, fp32, --exclude-history" \
  infer_rows "$P/items-fp32.parquet" 2 "${T[@]}" --family sequential --limit 2 --top-k 5 --exclude-history \
    --precision fp32
run_if "$CT/recsys_checkpoint.json" "infer items: --unconstrained generation + grounding" \
  infer_rows "$P/items-free.parquet" 2 "${T[@]}" --family sequential --limit 2 --top-k 3 --unconstrained \
    --precision "$PREC"
run_if "$CT/recsys_checkpoint.json" "infer direct candidates: --item-scoring constrained" \
  infer_rows "$P/cands.parquet" 2 "${T[@]}" --family direct --kind rank --limit 2 --precision "$PREC"
run_if "$CT/recsys_checkpoint.json" "infer direct candidates: --item-scoring full" \
  infer_rows "$P/cands-full.parquet" 1 "${T[@]}" --family direct --kind rank --limit 1 --item-scoring full \
    --precision "$PREC"
run_if "$CT/recsys_checkpoint.json" "infer yes/no" \
  infer_rows "$P/yesno.parquet" 4 "${T[@]}" --family direct --kind yesno --limit 4 --precision "$PREC"
run_if "$CT/recsys_checkpoint.json $P/sasrec.parquet" "infer --candidates-from rerank: constrained" \
  infer_rows "$P/rerank.parquet" 4 "${T[@]}" --family sequential --limit 4 \
    --candidates-from "$P/sasrec.parquet" --rerank-k 10 --precision "$PREC"
run_if "$CT/recsys_checkpoint.json $P/sasrec.parquet" "infer --candidates-from rerank: full, --fusion 0.5" \
  infer_rows "$P/rerank-full.parquet" 2 "${T[@]}" --family sequential --limit 2 \
    --candidates-from "$P/sasrec.parquet" --rerank-k 10 --item-scoring full --fusion 0.5 --precision "$PREC"
M=(--data "$MUS" --checkpoint "$CT" --allow-other-data --split test --precision "$PREC")
run_if "$CT/recsys_checkpoint.json $MUS/manifest.json" "infer rating (other data: --allow-other-data)" \
  infer_rows "$P/rating.parquet" 2 "${M[@]}" --family rating --limit 2
run_if "$CT/recsys_checkpoint.json $MUS/manifest.json" "infer explanation: greedy generation" \
  infer_rows "$P/expl.parquet" 2 "${M[@]}" --family explanation --limit 2 --max-new-tokens 8
run_if "$CT/recsys_checkpoint.json $MUS/manifest.json" "infer explanation: beam generation (--text-beams 3)" \
  infer_rows "$P/expl-beam.parquet" 2 "${M[@]}" --family explanation --limit 2 --max-new-tokens 8 --text-beams 3
run_if "$R/entities.parquet" "infer zero-shot (--checkpoint none, tiny model)" \
  infer_rows "$P/zero-shot.parquet" 2 --data "$R" --checkpoint none --model fixtures/tiny-model \
    --family sequential --limit 2 --precision "$PREC"
H=(--data "$R" --checkpoint "$CH" --split test --precision "$PREC")
run_if "$CH/recsys_checkpoint.json" "infer RSLLM checkpoint: items (soft tokens in the prefill)" \
  infer_rows "$P/rsllm-items.parquet" 2 "${H[@]}" --family sequential --limit 2 --top-k 5
run_if "$CH/recsys_checkpoint.json $P/sasrec.parquet" "infer RSLLM checkpoint: --candidates-from rerank" \
  infer_rows "$P/rsllm-rerank.parquet" 4 "${H[@]}" --family sequential --limit 4 \
    --candidates-from "$P/sasrec.parquet" --rerank-k 10
run_if "$WORK/ckpt-zero3/recsys_checkpoint.json" "infer the ZeRO-3 checkpoint" \
  infer_rows "$P/zero3.parquet" 2 --data "$R" --checkpoint "$WORK/ckpt-zero3" --family sequential --limit 2 \
    --precision "$PREC"

# --- the embedded SmolLM2-135M ----------------------------------------------------------------
CE=$WORK/ckpt-embedded CER=$WORK/ckpt-embedded-rsllm
emb=(--config "$EMB_RECIPE" --precision "$PREC" --batch-size 8 --grad-accum 1 --max-length 128 --eval-every 2 \
  --seed 0 --quiet)
data_emb() {
  recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out "$REMB" --seed 0 --quiet &&
    recsys build-entities --data "$REMB" --quiet
}
pretrain_resume_emb() {
  recsys pretrain --data "$REMB" --out "$CE" "${emb[@]}" --max-steps 2 --save-every 1 && check ckpt "$CE" 2 &&
    recsys pretrain --data "$REMB" --out "$CE" "${emb[@]}" --max-steps 4 --save-every 1 --resume \
      --allow-changed train.max_steps &&
    check ckpt "$CE" 4
}
sasrec_emb() {
  recsys baseline sasrec --data "$REMB" --out "$P/sasrec-emb.parquet" --embeddings-out "$WORK/sasrec-emb.safetensors" \
    --top-k 20 --max-epochs 2 --hidden 32 --blocks 1 --max-len 20 --seed 0 --quiet
}
rsllm_emb() {
  recsys pretrain --data "$REMB" --out "$CER" "${emb[@]}" --max-steps 3 --save-every 2 \
    --set hybrid.embeddings="$WORK/sasrec-emb.safetensors" --set hybrid.init_checkpoint="$CE" && check ckpt "$CER" 3
}
rerank_emb() {
  infer_rows "$P/emb-rerank.parquet" 4 "${E[@]}" --family sequential --limit 4 \
    --candidates-from "$P/sasrec-emb.parquet" --rerank-k 10 &&
    infer_rows "$P/emb-rerank-full.parquet" 2 "${E[@]}" --family sequential --limit 2 \
      --candidates-from "$P/sasrec-emb.parquet" --rerank-k 10 --item-scoring full
}
E=(--data "$REMB" --checkpoint "$CE" --split test --precision "$PREC")
if [ "$CPU" = 1 ]; then
  skip "embedded model: data, pretrain + resume, RSLLM, infer" "GPU_CHECK_ALLOW_CPU=1 runs the tiny model only"
else
  step "embedded model resolves (converted once from the GGUF)" check embedded
  if [ "$last_ok" = 1 ]; then
    step "textualize toys + build-entities (embedded tokenizer)" data_emb
    run_if "$REMB/entities.parquet" "pretrain embedded $PREC: save at 1, 2, resume to 4" pretrain_resume_emb
    run_if "$REMB/entities.parquet" "baseline sasrec --embeddings-out (embedded run dir)" sasrec_emb
    run_if "$CE/recsys_checkpoint.json $WORK/sasrec-emb.safetensors" \
      "pretrain RSLLM embedded $PREC: stage 2 from the ckpt" rsllm_emb
    run_if "$CE/recsys_checkpoint.json" "infer embedded: items, constrained beam" \
      infer_rows "$P/emb-items.parquet" 4 "${E[@]}" --family sequential --limit 4 --top-k 5 --beams 8
    run_if "$CE/recsys_checkpoint.json $P/sasrec-emb.parquet" "infer embedded: rerank constrained + full" rerank_emb
    run_if "$CE/recsys_checkpoint.json" "infer embedded: direct prompts" \
      infer_rows "$P/emb-direct.parquet" 4 "${E[@]}" --family direct --limit 4
    run_if "$CER/recsys_checkpoint.json" "infer embedded RSLLM checkpoint: items" \
      infer_rows "$P/emb-rsllm.parquet" 2 --data "$REMB" --checkpoint "$CER" --family sequential --limit 2 \
        --precision "$PREC"
  else
    skip "embedded model: data, pretrain + resume, RSLLM, infer" "the embedded model is not available (the step above)"
  fi
fi

echo
echo "gpu-check: $n_pass passed, $n_fail failed, $n_skip skipped in $((SECONDS - started)) s (logs: $WORK/logs)"
[ "$n_fail" -eq 0 ]
