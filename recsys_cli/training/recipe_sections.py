"""The pretrain recipe's sections (training/recipe.py puts them together as `Recipe`): grouped dataclasses,
one per section, whose annotations are the rules a value must follow (its type, and for strings with a
fixed set of values a `Literal`); numeric ranges live in options.RECIPE_RANGES. A setting is one field.

    python -c "from recsys_cli.training.recipe_sections import MaskArgs; print(MaskArgs())"
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from recsys_cli.data.masking import LEVELS, MaskLevel
from recsys_cli.errors import RecsysError
from recsys_cli.modeling.pointer import TEMPERATURE
from recsys_cli.modeling.precision import Precision
from recsys_cli.options import RECIPE_RANGES
from recsys_cli.training.speed import Attention

# the choices of string keys: set_value accepts a Literal field's values only (choices_of)
Positions = Literal["glm", "linear"]  # glm: 2D (inter + intra) | linear: plain positions, the ablation
Projector = Literal["mlp2", "linear"]  # mlp2: Linear-GELU-Linear, LLaRA's shape
ProjectorNorm = Literal["rms", "none"]
ItemText = Literal["hidden", "embedding"]


@dataclass
class ModelArgs:
    name: str | None = None  # None -> the embedded SmolLM2 (`--model`)
    positions: Positions = "glm"
    max_intra: int | None = None  # rows of the intra table; None -> longest pool entity + 2
    trust_remote_code: bool = False  # only from the --trust-remote-code flag (a recipe or --set saying true is refused)


@dataclass
class LoraArgs:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] | None = None  # None -> every attention and MLP projection
    # modules trained in full next to LoRA and saved whole in the adapter (peft modules_to_save),
    # e.g. [embed_tokens] for a randomly initialised model; a tied output head follows the embedding
    modules_to_save: list[str] | None = None


@dataclass
class MaskArgs:
    """GLM blank infilling (data/masking.py): how much of a document each level masks, and how often."""

    entity_ratio: float = 0.15  # share of an entity-level document's units masked
    poisson_lambda: float = 3.0  # span lengths (in units) ~ Poisson(lambda), at least 1
    sentence_ratio: float = 0.15  # share of a sentence-level document's sentences masked
    doc_min: float = 0.5  # a document-level span covers doc_min..doc_max of the document
    doc_max: float = 1.0
    level_weights: dict[MaskLevel, float] = field(
        default_factory=lambda: {"entity": 0.6, "sentence": 0.2, "document": 0.2}
    )

    def __post_init__(self) -> None:
        problem = mask_problem(self)
        if problem is not None:
            raise RecsysError(problem, exit_code=2)


def mask_problem(m: MaskArgs) -> str | None:
    """What is wrong with a mask section (its keys' ranges, doc_min <= doc_max, the level weights), or None."""
    for f in fields(m):
        rule = RECIPE_RANGES.get(f"mask.{f.name}")
        if rule is not None and rule.violation(getattr(m, f.name)) is not None:
            return f"mask.{f.name} in the range {rule.text}; got {getattr(m, f.name)!r}"
    if m.doc_min > m.doc_max:
        return f"mask.doc_min <= mask.doc_max; got {m.doc_min} > {m.doc_max}"
    if any(k not in LEVELS for k in m.level_weights) or sum(m.level_weights.values()) <= 0:
        return f"mask.level_weights: positive weights for {', '.join(LEVELS)}; got {m.level_weights}"
    return None


@dataclass
class TrainArgs:
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio
    warmup_steps: int = 10
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_steps: int | None = 200
    epochs: float | None = None  # when max_steps is null: steps = epochs * train examples / global batch
    batch_size: int = 4  # per device
    grad_accum: int = 1
    max_length: int = 256
    corpus_ratio: float = 0.5  # share of examples drawn from corpus.parquet; the rest are training prompts
    rating_stars: bool = True  # a one-star answer's loss: CE over the 5 star tokens at [START] (inference/rating.py)
    family_weights: dict[str, float] = field(
        default_factory=lambda: {"rating": 1.0, "sequential": 1.0, "explanation": 1.0, "review": 1.0, "direct": 1.0}
    )
    save_every: int = 100
    seed: int = 0
    precision: Precision = (
        "auto"  # auto (bf16 where native: a bf16 GPU, a CPU with avx512_bf16/AMX; modeling/precision.py) | fp32 | bf16
    )
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # path to a DeepSpeed JSON config
    # speed (training/packing.py, training/speed.py); none of these changes the loss curve
    packing: bool = False  # several examples per row, block-diagonal GLM mask: same loss terms, less padding
    attention: Attention = "eager"  # eager | sdpa (torch scaled_dot_product_attention, same float mask added)
    compile: bool = False  # torch.compile each decoder layer (the first steps compile)
    log_every: int = 1  # read the loss back from the device every N steps (metrics rows are still per step)


@dataclass
class EvalArgs:
    eval_every: int = 50
    eval_prompts: int = 64  # valid prompts used for the validation loss
    max_new_tokens: int = 64  # `infer` length limit for explanation / review answers


@dataclass
class RerankArgs:
    """Training prompts whose candidates are a retriever's top-K for training positions
    (docs/rerank.md): the answer's loss is taken over the candidates' titles only."""

    candidates: str | None = None  # predictions file of the retriever on split=train prompts
    k: int = 20
    weight: float = 0.0  # share of examples that are rerank prompts (0: off)


@dataclass
class ListwiseArgs:
    """Listwise examples (docs/rerank.md "Listwise scoring"): a training position's retriever
    top-K in one labelled prompt; the loss is the cross-entropy over the K labels."""

    candidates: str | None = None  # predictions file of the retriever on split=train prompts
    k: int = 20  # candidates per example (at most 52: one-token labels)
    weight: float = 0.0  # share of examples that are listwise prompts (0: off; with rerank.weight <= 1)
    max_length: int = 512  # the whole listwise example's length, in training and in `infer` (data/listwise.py)
    candidate_ids: bool = False  # RSLLM: each candidate title also carries its soft ID token (needs hybrid.embeddings)
    # labels: the K one-token labels' logits at [START]; pointer: [START]'s state against each candidate
    # title's mean state (modeling/pointer.py; text-only checkpoints)
    head: Literal["labels", "pointer"] = "labels"
    temperature: float = TEMPERATURE  # pointer head: its scores are cosine / temperature; > 0


@dataclass
class HybridArgs:
    """RSLLM Text-ID hybrid prompts (docs/rsllm.md)."""

    embeddings: str | None = None  # the SASRec file of `recsys baseline sasrec`; "{data}/..." = under --data
    projector: Projector = "mlp2"
    projector_hidden: int = 256
    projector_norm: ProjectorNorm = (
        "rms"  # rms: output RMS-normalised x a trained gain (init: token-embedding RMS) | none
    )
    freeze_projector: bool = False  # ablation: the projector stays at its (seeded) random init
    id_tokens: bool = True  # ablation: False = stage 2 without soft tokens (same text, same losses)
    stage1_steps: int = 0  # text-only steps before the hybrid stage (0: single-stage, hybrid from the start)
    restart_schedule: bool = True  # stage 2 gets its own lr warmup + cosine decay
    init_checkpoint: str | None = None  # continue from this (stage-1, text-only) checkpoint's adapter and intra table
    item_loss_weight: float = 0.1  # InfoNCE: item ID <-> item text representation (0: off)
    user_loss_weight: float = 0.1  # InfoNCE: LLM user representation <-> recommender's (0: off)
    item_text: ItemText = "hidden"  # title representation: hidden (last layer, mean over title tokens) | embedding
    temperature: float = 0.07
