#!/usr/bin/env bash
# The whole pipeline on committed real data with the embedded SmolLM2-135M model, in under
# 10 minutes on 2 CPU cores with native bf16, install included (--precision auto; a CPU without
# bf16 runs fp32: 718 s measured; 8 min 18 s with the install on a bf16 CPU, 2026-12-06; bench/README.md "What make demo printed"):
#   make demo          (creates .venv, installs, then runs this script)
#   RUN=runs/demo STEPS=40 RERANK_K=10 LLM=1 bash scripts/demo.sh
#
# Toys fixture (300 real P5 users, 2,282 items): popularity, SASRec, the fine-tuned LLM
# reranking SASRec's top-K, and the LLM alone on direct prompts (100 candidates), on the same
# 300 sequential and 300 direct test prompts (one seen-template prompt per user; LLM=1 adds the
# LLM alone on sequential prompts, full-catalogue beam search, about one more minute). Then
# ratings (the star distribution's expected value, then the same through a calibration fitted on
# validation prompts) and explanations on the raw 2018 Gift Cards reviews beside their references;
# last, one user drawn with the seed: history, SASRec's top 5, the fused top 5 (W chosen on
# validation by bench/quality.py) and the held-out item's rank in each.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
RUN=${RUN:-runs/demo}
STEPS=${STEPS:-40}          # LoRA steps (recipes/pretrain/smollm2-cpu.yaml: 2 x 4 sequences of 256 tokens each)
RERANK_K=${RERANK_K:-10}    # SASRec candidates the LLM reranks
FUSION=${FUSION:-1.0}       # 1 = the LLM's order alone inside the top-K (no tuning on the demo's test prompts)
# The walker: pmi, best on validation (bench/results/quality-ranker-cpu.json), is slower still than
# full-norm, which took the demo to 12 min.
SCORER=${SCORER:-constrained}
DATA=$RUN/toys
GIFT=$RUN/gift_cards
CKPT=$RUN/ckpt
P=$RUN/predictions
mkdir -p "$RUN" "$P"
started=$SECONDS
step() { echo; echo "== $1  ($((SECONDS - started)) s)"; }

step "1/8 textualize the Toys fixture (300 real P5 users) and the raw Gift Cards 2018 reviews"
recsys textualize amazon --category toys --data-dir fixtures/amazon/toys --out "$DATA" --seed 0 --quiet
recsys textualize amazon --category gift_cards --data-dir fixtures/amazon/gift_cards --out "$GIFT" --seed 0 --quiet --json > /dev/null
echo "wrote $DATA and $GIFT"

step "2/8 entity pools (item titles, categories, brands) with the embedded tokenizer"
recsys build-entities --data "$DATA" --quiet
recsys build-entities --data "$GIFT" --quiet --json > /dev/null

step "3/8 what the training objective sees (one entity-level example)"
recsys mask-preview --data "$DATA" -n 1 --level entity --seed 0

step "4/8 baselines on the same split: popularity, SASRec (its top-50 is the rerank's candidate list)"
recsys baseline popularity --data "$DATA" --out "$P/popularity.parquet" --top-k 50 --quiet --json > /dev/null
recsys baseline sasrec --data "$DATA" --out "$P/sasrec.parquet" --top-k 50 --seed 0 --quiet --json > /dev/null
echo "wrote $P/popularity.parquet, $P/sasrec.parquet"

step "5/8 pretrain a LoRA adapter on the embedded model ($STEPS steps)"
recsys pretrain --data "$DATA" --config recipes/pretrain/smollm2-cpu.yaml --out "$CKPT" --max-steps "$STEPS" --seed 0 --overwrite

step "6/8 the LLM reranks SASRec's top-$RERANK_K on 300 sequential and 300 direct test prompts, and ranks the 100 direct candidates alone"
common=(--data "$DATA" --checkpoint "$CKPT" --split test --seen --exclude-history --top-k 10 --precision auto --quiet --overwrite)
recsys infer "${common[@]}" --family sequential --candidates-from "$P/sasrec.parquet" --rerank-k "$RERANK_K" --fusion "$FUSION" --item-scoring "$SCORER" --out "$P/llm-rerank.sequential.parquet"
recsys infer "${common[@]}" --family direct --kind rank --candidates-from "$P/sasrec.parquet" --rerank-k "$RERANK_K" --fusion "$FUSION" --item-scoring "$SCORER" --out "$P/llm-rerank.direct.parquet"
recsys infer "${common[@]}" --family direct --kind rank --out "$P/llm.direct.parquet"
seq_files=("$P/llm-rerank.sequential.parquet") dir_files=("$P/llm-rerank.direct.parquet" "$P/llm.direct.parquet")
if [ "${LLM:-0}" = 1 ]; then
  recsys infer "${common[@]}" --family sequential --out "$P/llm.sequential.parquet"
  seq_files+=("$P/llm.sequential.parquet")
fi

step "7/8 scores on the same prompts (n = prompts per row); plots: $RUN/scores-*.png"
recsys score --data "$DATA" --task sequential --common-prompts --compare \
  "${seq_files[@]}" "$P/popularity.parquet" "$P/sasrec.parquet" --plot "$RUN/scores-sequential.png"
recsys score --data "$DATA" --task direct --common-prompts --compare \
  "${dir_files[@]}" "$P/popularity.parquet" "$P/sasrec.parquet" --plot "$RUN/scores-direct.png"

step "8/8 rating and explanation on raw Gift Cards reviews (the Toys adapter, which never saw reviews); one user: SASRec vs fused top 5"
recsys infer --data "$GIFT" --checkpoint "$CKPT" --allow-other-data --split test --family rating --seen --limit 2 --precision auto --quiet --overwrite --out "$P/gift.rating.parquet"
# the same answers through a temperature and star biases fitted on Gift Cards VALIDATION rating prompts
recsys infer --data "$GIFT" --checkpoint "$CKPT" --allow-other-data --split valid --family rating --precision auto --quiet --overwrite --out "$P/gift.rating-valid.parquet"
recsys infer --data "$GIFT" --checkpoint "$CKPT" --allow-other-data --split test --family rating --seen --limit 2 --precision auto --quiet --overwrite \
  --rating-calibration "$P/gift.rating-valid.parquet" --out "$P/gift.rating-calibrated.parquet"
recsys infer --data "$GIFT" --checkpoint "$CKPT" --allow-other-data --split test --family explanation --seen --limit 2 --max-new-tokens 32 --precision auto --quiet --overwrite --out "$P/gift.explanation.parquet"
python scripts/demo_last_screen.py --data "$DATA" --sasrec "$P/sasrec.parquet" --rerank "$P/llm-rerank.sequential.parquet" \
  --text-data "$GIFT" --text "$P/gift.rating.parquet" "$P/gift.rating-calibrated.parquet" "$P/gift.explanation.parquet" --seed 0 -k 5
echo
echo "demo finished in $((SECONDS - started)) s (install not included)"
