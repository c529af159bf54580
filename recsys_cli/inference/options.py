"""`recsys infer` options and routing: the settings one run decodes with (InferOptions), and
the mode each prompt is answered in, chosen from the answer type of its template
(data/templates.py), never from the gold answer:

* `candidates`: item answers with a candidate list (log-likelihood, shared prompt cache);
* `rerank`: item answers with --candidates-from (inference/rerank.py);
* `yesno`: yes/no answers, P(yes) against P(no);
* `items`: item answers without candidates (trie-constrained beam search, or free text grounded
  by MinHash with --unconstrained);
* `rating`: the five star tokens' distribution at the answer position (inference/rating.py;
  --rating-scoring generate: greedy text, parsed, clipped to [1, 5]);
* `text`: explanation / review (inference/textgen.py).

    python -c "from recsys_cli.inference.options import InferOptions; print(InferOptions())"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from recsys_cli.data import templates
from recsys_cli.data.split import history as split_history
from recsys_cli.inference.textgen import TextDecoding
from recsys_cli.modeling import pointer

YES_WORDS = (templates.YES, templates.YES.capitalize())  # first tokens scored as P(yes) / P(no)
NO_WORDS = (templates.NO, templates.NO.capitalize())


@dataclass
class InferOptions:
    top_k: int = 10
    beams: int = 10
    exclude_history: bool = False
    unconstrained: bool = False
    max_new_tokens: int | None = 64  # None: the recipe's max_new_tokens, else 64
    text_beams: int = 1
    text_decoding: TextDecoding = field(default_factory=TextDecoding)  # explanation / review (inference/textgen.py)
    batch_size: int = 8
    max_prompt_len: int = 1024
    dynamic: bool = True
    chunk_rows: int = 64
    item_scoring: str = "constrained"  # constrained | full (see decode.Constraint) | listwise (inference/listwise.py)
    rerank_k: int | None = None  # two-stage: rerank the retriever's first K (inference/rerank.py)
    fusion: float = 1.0  # W in W * llm + (1 - W) * retriever (inference/fusion.py)
    precision: str = "fp32"  # fp32 | bf16 | auto (modeling/precision.py)
    rating_scoring: str = "distribution"  # distribution | argmax | generate (inference/rating.py)
    rating_calibration: dict | None = None  # T and star biases fitted on validation (rating.fit_calibration)
    listwise_orders: int = 1  # listwise: candidate orders averaged per prompt
    listwise_max_length: int = field(default_factory=lambda: _listwise_default())  # the recipe's listwise.max_length
    listwise_candidate_ids: bool | None = None  # RSLLM: soft ID tokens after candidate titles (None: the recipe's)
    listwise_head: str = "labels"  # labels | pointer: the checkpoint recipe's listwise.head (modeling/pointer.py)
    listwise_temperature: float = pointer.TEMPERATURE  # the checkpoint recipe's listwise.temperature
    seed: int = 0  # listwise: the candidate orders and templates


def _listwise_default() -> int:
    from recsys_cli.training.recipe import ListwiseArgs

    return ListwiseArgs().max_length


def mode_of(answer: str, candidates: Any, rerank: bool = False) -> str:
    """The decoding mode of a prompt whose template answers `answer` (templates.ANSWER_TYPES).
    `rerank` (with --candidates-from): every item prompt reranks the retriever's list."""
    if answer == templates.ITEM:
        if rerank:
            return "rerank"
        return "candidates" if candidates is not None and len(candidates) > 1 else "items"
    return {templates.YES_NO_ANSWER: "yesno", templates.RATING: "rating", templates.TEXT: "text"}[answer]


def modes_of(prompts: pl.DataFrame, rerank: bool, where: Path) -> list[str]:
    """`mode_of` for every row of `prompts` (template_id, candidates); `where`: the prompts file."""
    answers = templates.answer_types(prompts["template_id"], str(where)).to_list()
    return [mode_of(a, c, rerank) for a, c in zip(answers, prompts["candidates"].to_list())]


def history_of(items: list[str], split: str, target: str | None) -> set[str]:
    """Items the user saw before the prompt's target (the leave-one-out rule of data/split.py)."""
    return set(split_history(items, split, target))
