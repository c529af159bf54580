#!/usr/bin/env bash
# Training and inference speed on one CUDA GPU in about 10 minutes (issue 30); writes
# bench/results/gpu-<device>.json with the device name. Nothing is installed or downloaded: the
# machine's own python and torch run the repository from PYTHONPATH (plus the wheels the project
# adds: transformers, peft, polars, typer, rich, pyyaml, safetensors).
#
#   MODEL=/models/SmolLM2-135M-Instruct bash scripts/gpu-bench.sh     # a model directory
#   MODEL=/models/SmolLM2-135M-Instruct.Q4_1.gguf bash scripts/gpu-bench.sh   # or the GGUF file
#   PYTHON=/opt/py/bin/python MODEL=... DATA=runs/toys WORK=/tmp/gb BUDGET=540 bash scripts/gpu-bench.sh
#
# Stages (scripts/gpu_bench.py): textualize the Toys fixture + build-entities; the step-time
# breakdown of recipes/pretrain/quality-gpu.yaml as written, then with packing + SDPA + the loss
# read back every 50 steps at 32, 128 and 512 sequences, and with compiled layers at 128; a short
# checkpoint and SASRec's top 50; infer prompts/s for the constrained walker, full scoring and
# listwise reranking of SASRec's top K and for 100-candidate direct prompts, at --batch-size 8 and
# 32; full scoring one prompt at a time against batched. Logs: $WORK/logs/.
# Without a CUDA GPU it prints one line and exits 2 before doing anything.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PYTHON" scripts/gpu_bench.py cuda >/dev/null || exit 2

args=(run --model "${MODEL:-embedded}" --budget "${BUDGET:-540}")
[ -n "${DATA:-}" ] && args+=(--data "$DATA")
[ -n "${WORK:-}" ] && args+=(--work "$WORK")
[ -n "${RESULTS:-}" ] && args+=(--out "$RESULTS")
exec "$PYTHON" scripts/gpu_bench.py "${args[@]}"
