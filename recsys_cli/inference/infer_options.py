"""The option declarations of `recsys infer` (huggingface_hub style: typed aliases, shared with no
other command), kept apart so the command reads as one short function. Imports only typer and
recsys_cli.options, so `recsys infer --help` stays free of torch.

    recsys infer --help
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from recsys_cli.inference.candidates import ITEM_SCORINGS
from recsys_cli.options import AT_LEAST_0, AT_LEAST_1, UNIT, ranged

CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="Checkpoint directory from `recsys pretrain`, or 'none' for the bare base model (zero-shot).",
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="train | valid | test.")]
FamilyOpt = Annotated[Optional[str], typer.Option("--family", help="Only this task family.")]
TemplateOpt = Annotated[Optional[str], typer.Option("--template", help="Only this template id.")]
SeenOpt = Annotated[
    Optional[bool], typer.Option("--seen/--unseen", help="Only seen (trained) or unseen (zero-shot) templates.")
]
KindOpt = Annotated[
    Optional[str],
    typer.Option("--kind", help="Only templates of this kind, e.g. rank (direct, 100 candidates) or yesno."),
]
LimitOpt = Annotated[Optional[int], ranged("--limit", rule=AT_LEAST_1, help="At most N prompts (after filtering).")]
UsersOpt = Annotated[
    Optional[int],
    ranged(
        "--users",
        rule=AT_LEAST_1,
        help="Only the prompts of the first N users (in prompt order): a fixed evaluation subset.",
    ),
]
PromptIdsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--prompt-ids", help="Answer exactly these prompts, in file order: a text file with one prompt_id per line."
    ),
]
BatchSizeOpt = Annotated[int, ranged("--batch-size", rule=AT_LEAST_1, help="Prompts per forward pass.")]
OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--out", "-o", help="Predictions file (default C/predictions/<split>.parquet; a shard adds .shard-i-of-n)."
    ),
]
TopKOpt = Annotated[int, ranged("--top-k", rule=AT_LEAST_1, help="Items in each ranked list.")]
BeamsOpt = Annotated[
    Optional[int], ranged("--beams", rule=AT_LEAST_1, help="Beams for item generation (>= top-k; default top-k).")
]
ExcludeHistoryOpt = Annotated[
    bool, typer.Option("--exclude-history", help="Drop items the user already interacted with.")
]
UnconstrainedOpt = Annotated[
    bool, typer.Option("--unconstrained", help="Free-text item generation grounded by MinHash (comparison mode).")
]
MaxNewTokensOpt = Annotated[
    Optional[int],
    ranged(
        "--max-new-tokens",
        rule=AT_LEAST_1,
        help="Length limit for explanation / review outputs (default: the recipe's max_new_tokens, else 64).",
    ),
]
TextDecodingOpt = Annotated[
    Optional[str],
    typer.Option(
        "--text-decoding",
        help="Explanation / review decoding: 'greedy', 'beam' (beam search ranked by score / "
        "length**alpha), both with n-gram blocking, a minimum length and a first token that holds "
        "a word; or 'plain' (the decoding before issue 29, comparison). Default: the one chosen "
        "on validation prompts (inference/textgen.py).",
    ),
]
TextBeamsOpt = Annotated[
    Optional[int],
    ranged(
        "--text-beams",
        rule=AT_LEAST_1,
        help="Beams for explanation / review (given alone: 1 = greedy, more = beam).",
    ),
]
NoRepeatNgramOpt = Annotated[
    Optional[int],
    ranged(
        "--no-repeat-ngram",
        rule=AT_LEAST_0,
        help="Explanation / review: never repeat an n-gram of this size (0 = off).",
    ),
]
MinNewTokensOpt = Annotated[
    Optional[int],
    ranged("--min-new-tokens", rule=AT_LEAST_0, help="Explanation / review: no [END] before this many tokens."),
]
LengthPenaltyOpt = Annotated[
    Optional[float],
    ranged(
        "--length-penalty",
        rule=AT_LEAST_0,
        help="--text-decoding beam: alpha in score / length**alpha (0 = raw log-prob sums).",
    ),
]
TextAdapterScaleOpt = Annotated[
    Optional[float],
    ranged(
        "--text-adapter-scale",
        rule=AT_LEAST_0,
        help="Explanation / review: each LoRA delta times this while writing text (1 = as trained; 0 = the base "
        "model with the trained special-token rows); other answers always use the whole adapter.",
    ),
]
RepetitionPenaltyOpt = Annotated[
    Optional[float],
    ranged(
        "--repetition-penalty",
        rule=AT_LEAST_0,
        help="Explanation / review: nats off a token's log-prob per earlier use in the answer (0 = off).",
    ),
]
ItemScoringOpt = Annotated[
    Optional[str],
    typer.Option(
        "--item-scoring",
        help=(
            f"How ranked items are scored ({', '.join(ITEM_SCORINGS)}): 'constrained' (the default) = log P under "
            f"decoding restricted to the catalogue (or candidate) titles, a hypothesis ends once its prefix is "
            f"unique (fast); 'full' = summed full-vocabulary log-probs of every title token (P5-style, slower); "
            f"'full-norm' = that sum divided by the scored token count (title + [END]); 'pmi' = that sum minus "
            f"the same sum after a fixed neutral prompt (full-norm and pmi: candidate lists only, "
            f"inference/calibrated.py); 'listwise' = one prompt lists the K candidates with one-token labels, one "
            f"forward pass scores them all by the labels' log-probs (docs/rerank.md)."
        ),
    ),
]
ListwiseOrdersOpt = Annotated[
    int,
    ranged(
        "--listwise-orders",
        rule=AT_LEAST_1,
        help=("With --item-scoring listwise: average each candidate's label log-prob over N seeded candidate orders."),
    ),
]
ListwiseCandidateIdsOpt = Annotated[
    Optional[bool],
    typer.Option(
        "--listwise-candidate-ids/--no-listwise-candidate-ids",
        help=(
            "With --item-scoring listwise and an RSLLM checkpoint: each candidate title also carries its "
            "projected SASRec item embedding as a soft token (default: the checkpoint recipe's "
            "listwise.candidate_ids)."
        ),
    ),
]
RatingScoringOpt = Annotated[
    str,
    typer.Option(
        "--rating-scoring",
        help=(
            "Star-rating prompts: 'distribution' (the default) = the expected star under the model's softmax "
            "over the five star tokens at the answer position, one forward pass; 'argmax' = its most probable "
            "star; 'generate' = greedy text, parsed (comparison)."
        ),
    ),
]
RatingCalibrationOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--rating-calibration",
        help=(
            "A `recsys infer --split valid --family rating` predictions file of the same checkpoint: a "
            "temperature and five star biases are fitted on its star prompts (validation only) and applied to "
            "the star log-probs before the expected value."
        ),
    ),
]
DynamicPositionsOpt = Annotated[
    bool,
    typer.Option(
        "--dynamic-positions/--no-dynamic-positions",
        help="Trie-driven intra positions while generating (the paper's mechanism).",
    ),
]
CandidatesFromOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--candidates-from",
        help=(
            "Two-stage ranking: a predictions file (baseline or model, same --data) whose ranked lists the LLM "
            "reranks (docs/rerank.md)."
        ),
    ),
]
RerankKOpt = Annotated[
    Optional[int],
    ranged(
        "--rerank-k",
        rule=AT_LEAST_1,
        help="With --candidates-from: rerank the retriever's first K items; the rest keep its order.",
    ),
]
FusionOpt = Annotated[
    Optional[float],
    ranged(
        "--fusion",
        rule=UNIT,
        help=(
            "With --candidates-from: W in W*llm + (1-W)*retriever over log-softmax-normalised scores (1 = LLM "
            "only, the default; 0 = retriever order)."
        ),
    ),
]
TuningOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--tuning",
        help=(
            "With --candidates-from: a `recsys tune` file (made on --data's validation split); applies its "
            "chosen --rerank-k, --fusion and --item-scoring."
        ),
    ),
]
ShardOpt = Annotated[
    Optional[str],
    typer.Option(
        "--shard",
        help=(
            "Answer shard i of n (i/n, round-robin over the selected prompts); default RANK/WORLD_SIZE under torchrun."
        ),
    ),
]
HybridEmbeddingsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--hybrid-embeddings",
        help=(
            "RSLLM checkpoint: read the SASRec item embeddings from this file instead of the path recorded in "
            "the checkpoint (its content must be the same)."
        ),
    ),
]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help=(
            "fp32, bf16, or auto (bf16 where the CPU or GPU computes it natively, e.g. avx512_bf16: about 2x "
            "faster on such CPUs; the vocabulary projection stays fp32)."
        ),
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Start over instead of resuming (only replaces a file `recsys infer` wrote)."),
]
AllowOtherDataOpt = Annotated[
    bool,
    typer.Option(
        "--allow-other-data",
        help=(
            "Use a checkpoint on data other than the data it was trained on (refused otherwise; the message says "
            "what differs)."
        ),
    ),
]
