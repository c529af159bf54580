#!/usr/bin/env bash
# The whole pipeline on the committed Toys fixture with the embedded SmolLM2 model.
#   make demo          (creates .venv, installs, then runs this script)
# Override: RUN=runs/demo STEPS=30 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN=${RUN:-runs/demo}
STEPS=${STEPS:-30}
LIMIT=${LIMIT:-16}   # test prompts per family for the model (beam search over titles is the slow part on CPU)
DATA=$RUN/toys
CKPT=$RUN/ckpt
mkdir -p "$RUN"

echo "== 1/7 textualize the Toys fixture (300 real P5 users)"
recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out "$DATA" --seed 0

echo "== 2/7 build the entity pool with the embedded SmolLM2 tokenizer"
recsys build-entities --data "$DATA"

echo "== 3/7 what the training objective sees (one entity-level example)"
recsys mask-preview --data "$DATA" -n 1 --level entity --seed 0

echo "== 4/7 pretrain a LoRA adapter on the embedded model ($STEPS steps)"
recsys pretrain --data "$DATA" --config recipes/pretrain/smollm2-cpu.yaml --out "$CKPT" --max-steps "$STEPS" --grad-accum 1 --seed 0

echo "== 5/7 infer on the test prompts (sequential and direct, seen and unseen templates)"
recsys infer --data "$DATA" --checkpoint "$CKPT" --split test --family sequential --limit "$LIMIT" --out "$RUN/pred-sequential.parquet"
recsys infer --data "$DATA" --checkpoint "$CKPT" --split test --family direct --limit "$LIMIT" --out "$RUN/pred-direct.parquet"

echo "== 6/7 baselines on the same split"
recsys baseline popularity --data "$DATA" --out "$RUN/popularity.parquet"
recsys baseline sasrec --data "$DATA" --out "$RUN/sasrec.parquet" --seed 0

echo "== 7/7 score"
recsys score --data "$DATA" --task sequential --common-prompts --compare "$RUN/pred-sequential.parquet" "$RUN/popularity.parquet" "$RUN/sasrec.parquet"
recsys score --data "$DATA" --task direct --common-prompts --compare "$RUN/pred-direct.parquet" "$RUN/popularity.parquet" "$RUN/sasrec.parquet"
