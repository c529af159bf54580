"""Calibrated generative scores of candidate titles (`--item-scoring full-norm | pmi`,
docs/rerank.md "Calibrated scoring"). Both start from what `--item-scoring full` scores: the
summed full-vocabulary log-prob of `title tokens + [END]` after the prompt
(candidates.score_candidates_batch), which favours short and a priori frequent titles.

* full-norm: that sum divided by the number of scored tokens, len(title) + 1 (the [END] token
  counts, as in `full`): the mean log-prob per token, so a long title is not punished for its
  length.
* pmi: that sum minus the same sum after a fixed neutral prompt, log P(title | prompt) -
  log P(title | neutral): how much the user's prompt raises the title above its prior. The
  neutral prompt is NEUTRAL_SOURCE, a short request that names no user and no item, laid out
  by the same Part A builder as every prompt (Engine.part_a: tokenization, the final [gM], the
  RSLLM layout, which has no soft token here since no item is named). Its score of an item does
  not depend on the user, so `NeutralScores` computes it once per distinct item per run (the
  items missing from its cache are scored together, one batched call per scoring batch) and
  keeps it in memory.

A candidate's score depends on no other candidate under either scorer, like `full`
(evaluation/tune.py: a smaller K of one run is exact).

    recsys infer --data R --checkpoint C --candidates-from R/predictions/test/sasrec.parquet --rerank-k 20 \
        --item-scoring pmi
    python -m pytest tests/unit/test_batched_scoring.py -q
"""

from __future__ import annotations

from typing import Sequence

from recsys_cli.data.trie import EntityTrie
from recsys_cli.errors import RecsysError
from recsys_cli.inference import candidates as cand

NEUTRAL_SOURCE = "Which item should we recommend next?"  # pmi's neutral prompt (no user, no history)


def check_modes(scoring: str, modes: Sequence[str]) -> None:
    """full-norm and pmi score candidate lists: refuse ranking prompts that have none (catalogue
    beam search, which sums raw log-probs)."""
    n = sum(m == "items" for m in modes)
    if scoring in cand.CALIBRATED_SCORINGS and n:
        raise RecsysError(
            f"--item-scoring {scoring} scores a candidate list, and {n} selected ranking prompts have "
            "none: pass --candidates-from PRED --rerank-k K (or select direct prompts with their "
            "candidates)",
            exit_code=2,
        )


def scored_tokens(title: Sequence[int]) -> int:
    """How many log-probs `full` sums for a title: its tokens and [END]."""
    return len(title) + 1


class NeutralScores:
    """The `full` score of titles after the neutral prompt, cached per item id for one run."""

    def __init__(
        self,
        model,
        part_a: Sequence[int],
        part_a_intra: Sequence[int],
        start_id: int,
        end_id: int,
        trie: EntityTrie | None,
        dynamic: bool = True,
        soft: Sequence[tuple[int, int]] | None = None,
    ):
        self.model, self.part_a, self.part_a_intra, self.soft = model, list(part_a), list(part_a_intra), soft
        self.start_id, self.end_id, self.trie, self.dynamic = start_id, end_id, trie, dynamic
        self.cache: dict[str, float] = {}  # item id -> summed log-prob of its title + [END] after the neutral prompt

    def scores(self, items: Sequence[Sequence[str]], titles: Sequence[Sequence[Sequence[int]]]) -> list[list[float]]:
        """Per list, the neutral score of each item (`titles` its title tokens); the items not
        yet cached are scored in one batched call."""
        missing: dict[str, Sequence[int]] = {}
        for ids, toks in zip(items, titles):
            for i, t in zip(ids, toks):
                if i not in self.cache and i not in missing:
                    missing[i] = t
        if missing:
            got = cand.score_candidates_batch(
                self.model,
                [self.part_a],
                [self.part_a_intra],
                self.start_id,
                self.end_id,
                [list(missing.values())],
                self.trie,
                dynamic=self.dynamic,
                soft=None if self.soft is None else [self.soft],
            )[0]
            self.cache.update(zip(missing, got))
        return [[self.cache[i] for i in ids] for ids in items]


def score_calibrated(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    end_id: int,
    titles: Sequence[Sequence[Sequence[int]]],
    trie: EntityTrie | None,
    scoring: str,
    neutral: NeutralScores | None = None,
    items: Sequence[Sequence[str]] | None = None,
    dynamic: bool = True,
    soft: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[list[float]]:
    """Per prompt b, the `scoring` ('full-norm' or 'pmi') score of each of `titles[b]`; pmi needs
    `neutral` and the item ids `items` (parallel to `titles`)."""
    full = cand.score_candidates_batch(
        model, part_a, part_a_intra, start_id, end_id, titles, trie, dynamic=dynamic, soft=soft
    )
    if scoring == "full-norm":
        return [[s / scored_tokens(t) for s, t in zip(row, ts)] for row, ts in zip(full, titles)]
    if scoring != "pmi" or neutral is None or items is None:
        raise ValueError(f"score_calibrated: 'full-norm', or 'pmi' with neutral scores and item ids; got {scoring!r}")
    base = neutral.scores(items, titles)
    return [[s - b for s, b in zip(row, bs)] for row, bs in zip(full, base)]


def neutral_of(engine) -> NeutralScores:
    """The run's neutral-prompt scores, made on first use and kept on the engine."""
    got = getattr(engine, "neutral_scores", None)
    if got is None:
        a, ai, soft = engine.part_a([{"source": NEUTRAL_SOURCE, "source_entities": []}])
        got = NeutralScores(
            engine.model,
            a[0],
            ai[0],
            engine.special.start,
            engine.special.end,
            engine.entity_trie,
            dynamic=engine.opts.dynamic,
            soft=soft[0] if soft else None,
        )
        engine.neutral_scores = got
    return got


def score_items(
    engine, part_a, part_a_intra, soft, items: Sequence[Sequence[str]], titles: Sequence[Sequence[Sequence[int]]]
) -> list[list[float]]:
    """The scores of each prompt's candidate `items` (title tokens `titles`) under the run's
    --item-scoring (every scorer but listwise, which lays out its own prompt)."""
    o = engine.opts
    args = (engine.model, part_a, part_a_intra, engine.special.start, engine.special.end, titles, engine.entity_trie)
    if o.item_scoring not in cand.CALIBRATED_SCORINGS:
        return cand.score_batch(*args, o.item_scoring, dynamic=o.dynamic, soft=soft)
    neutral = neutral_of(engine) if o.item_scoring == "pmi" else None
    return score_calibrated(*args, o.item_scoring, neutral, items, dynamic=o.dynamic, soft=soft)
