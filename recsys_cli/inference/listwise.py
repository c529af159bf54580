"""Listwise scoring (`recsys infer --item-scoring listwise`, docs/rerank.md "Listwise scoring"):
one prompt holds the user's history and the K candidates with one-token labels
(data/listwise.py); ONE forward pass gives the logits at `[START]`, and the log-softmax over
the K label tokens is the LLM's score of each candidate.

    recsys infer --data R --checkpoint C --split valid --item-scoring listwise \
        --candidates-from R/predictions/valid/sasrec.parquet --rerank-k 20 --listwise-orders 2

* the presented order of the candidates is a seeded permutation per (seed, prompt id, order);
  `--listwise-orders N` scores N orders (all in the same batched forward) and averages each
  candidate's label log-probs over them;
* the prompt template is the row's: a seen listwise template for a seen prompt, an unseen one
  for an unseen prompt, fixed by (seed, prompt id);
* the history is the user's items before the target (data/split.history), the last
  HISTORY_ITEMS, oldest dropped first when the budget (the recipe's listwise.max_length) is
  short; `prepare` checks every prompt's K candidates fit before the first one is scored;
* two-stage runs fuse these scores with the retriever's in inference/rerank.py, exactly as the
  walker's; a direct prompt without --candidates-from ranks its own candidate list;
* RSLLM checkpoint: history titles carry their soft ID token; with --listwise-candidate-ids
  (default: the checkpoint recipe's listwise.candidate_ids) each candidate title carries its
  own too (`candidate_ids_of`), so SASRec's item embedding reaches that candidate's score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from recsys_cli.data import listwise as lw
from recsys_cli.data.split import history as split_history
from recsys_cli.errors import RecsysError
from recsys_cli.training.recipe import recipe_from_saved


def check_modes(modes: Sequence[str]) -> None:
    """Listwise ranks candidate lists: refuse prompts that have none (catalogue generation)."""
    n = sum(m == "items" for m in modes)
    if n:
        raise RecsysError(
            f"--item-scoring listwise ranks a candidate list, and {n} selected ranking prompts have "
            "none: pass --candidates-from PRED --rerank-k K (or select direct prompts with their "
            "candidates)",
            exit_code=2,
        )


def settings(opts) -> dict:
    """What the provenance records of a listwise run (everything that changes its scores)."""
    return {
        "orders": opts.listwise_orders,
        "seed": opts.seed,
        "max_length": opts.listwise_max_length,
        "labels": lw.LABEL_CHARS,
        "title_tokens": lw.TITLE_TOKENS,
        "history_items": lw.HISTORY_ITEMS,
        "templates": [t.template_id for t in lw.TEMPLATES],
        "candidate_ids": bool(opts.listwise_candidate_ids),
        "head": opts.listwise_head,
        **({"temperature": opts.listwise_temperature} if opts.listwise_head == "pointer" else {}),
    }


def candidate_ids_of(opts, cfg) -> bool:
    """--listwise-candidate-ids resolved against the checkpoint (`cfg` its CheckpointConfig, None
    for the bare base model): the user's choice, else the checkpoint recipe's
    listwise.candidate_ids; refused in one line without an RSLLM (hybrid) checkpoint."""
    asked = opts.listwise_candidate_ids
    hybrid = cfg is not None and bool(cfg.hybrid)
    if asked and not hybrid:
        raise RecsysError(
            "--listwise-candidate-ids: candidate ID tokens need an RSLLM checkpoint (one trained with "
            "hybrid.embeddings); this one is text-only",
            exit_code=2,
        )
    if opts.item_scoring != "listwise" or not hybrid:
        return False
    if asked is None:
        return bool(recipe_from_saved(cfg.recipe).listwise.candidate_ids)
    return bool(asked)


class ListwiseScorer:
    def __init__(self, engine, sequences: dict[str, list[str]], split: str):
        o = engine.opts
        self.engine, self.sequences, self.split = engine, sequences, split
        self.seed, self.orders, self.budget = o.seed, o.listwise_orders, o.listwise_max_length
        self.vocab = lw.Vocab.of(engine.tok)
        hyb = engine.hybrid_rows is not None
        self.rows = engine.hybrid_rows if hyb else None  # RSLLM: soft tokens after history titles
        self.budget_rows = self.rows if hyb and engine.id_tokens else None  # counted in the budget
        self.candidate_ids = hyb and bool(o.listwise_candidate_ids)  # a soft token after each candidate title too
        self.pointer = o.listwise_head == "pointer"  # the checkpoint's listwise.head (modeling/pointer.py)
        self.temperature = o.listwise_temperature  # and its listwise.temperature

    def _key(self, row: dict) -> str:
        return f"{self.seed}:{row['prompt_id']}"

    def _titles(self, items: Sequence[str]) -> list[list[int]]:
        return [lw.title_tokens(self.engine.title_tokens(i)) for i in items]

    def _history(self, row: dict) -> list[tuple[str, list[int]]]:
        seq = self.sequences.get(row["user_id"]) or []
        items = split_history(seq, self.split, row["item_id"])[-lw.HISTORY_ITEMS :]
        return list(zip(items, self._titles(items)))

    def check(self, rows: Sequence[dict], cand_lists: Sequence[Sequence[str]]) -> None:
        """One line for the first prompt whose K candidates cannot be shown (labels, length)."""
        for row, cands in zip(rows, cand_lists):
            k = len(cands)
            if k > lw.MAX_K:
                raise RecsysError(
                    f"listwise: prompt {row['prompt_id']!r} has K={k} candidates, but there are only "
                    f"{lw.MAX_K} one-token labels; rerank a retriever's first K with "
                    "--candidates-from PRED --rerank-k K",
                    exit_code=2,
                )
            tpl = lw.pick_template(bool(row["seen"]), self._key(row))
            soft = lw.candidate_soft(cands if self.candidate_ids else None, self.budget_rows)
            need = lw.fixed_length(self.vocab, tpl, self._titles(cands), soft) + len(self.vocab.empty)
            if need > self.budget:
                raise lw.too_long(k, need, self.budget)

    def score_orders(self, rows: Sequence[dict], cand_lists: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """Per row, per order: each candidate's label log-prob (log-softmax over the K labels),
        in the row's candidate order. All rows and orders go through ONE batched forward."""
        import torch

        from recsys_cli.inference import decode

        e = self.engine
        a_ids, a_intra, softs, where, spans = [], [], [], [], []
        out: list[list[list[float]]] = [[[0.0] * len(c)] * (self.orders if c else 0) for c in cand_lists]
        for b, (row, cands) in enumerate(zip(rows, cand_lists)):
            if len(cands) < 2:
                continue  # one candidate: probability 1, no forward needed
            hist, titles = self._history(row), self._titles(cands)
            tpl = lw.pick_template(bool(row["seen"]), self._key(row))
            for o in range(self.orders):
                perm = lw.order(f"{self._key(row)}:{o}", len(cands))
                shown = [cands[i] for i in perm] if self.candidate_ids else None
                doc = lw.build(self.vocab, tpl, hist, [titles[i] for i in perm], self.budget, self.budget_rows, shown)
                ids, intra, soft = lw.part_a(doc, e.special, self.rows, e.tok.pad_token_id, e.id_tokens)
                a_ids.append(ids)
                a_intra.append(intra)
                softs.append(soft or [])
                where.append((b, o, perm))
                spans.append(lw.candidate_spans(doc, len(perm)))
        if not where:
            return out
        soft = softs if self.rows is not None else None
        st = decode.prefill(
            e.model, a_ids, a_intra, e.special.start, None, dynamic=False, soft=soft, hidden=self.pointer
        )
        if self.pointer:
            option_scores = pointer_scores(st.hidden, [len(a) for a in a_ids], spans, self.temperature)  # [P, max K]
        else:
            option_scores = st.logits.float().cpu()[:, self.vocab.labels]  # [P, MAX_K] label logits
        for p, (b, o, perm) in enumerate(where):
            lp = torch.log_softmax(option_scores[p, : len(perm)], -1).tolist()  # [K]: position j shows perm[j]
            got = [0.0] * len(perm)
            for j, c in enumerate(perm):
                got[c] = lp[j]
            if o == 0:
                out[b] = []
            out[b].append(got)
        return out

    def score(self, rows: Sequence[dict], cand_lists: Sequence[Sequence[str]]) -> list[list[float]]:
        """The LLM score of each candidate: its label log-prob averaged over the orders."""
        per_row = self.score_orders(rows, cand_lists)
        return [[sum(col) / len(col) for col in zip(*per)] if per else [] for per in per_row]


def pointer_scores(hidden, part_a_lens: Sequence[int], spans: Sequence[Sequence[tuple[int, int]]], temperature: float):
    """modeling/pointer scores of each prompt's candidates (presented order) from prefill's left-
    padded states hidden [P, L, H] ([START] last).  -> [P, max K] float on the CPU, -inf padded."""
    import torch

    from recsys_cli.modeling import pointer

    a_max = hidden.shape[1] - 1
    width = max(len(s) for s in spans)
    cols = torch.full((len(spans), width, 2), -1, dtype=torch.long)  # [P, K, 2]
    for p, (n, sp) in enumerate(zip(part_a_lens, spans)):
        cols[p, : len(sp)] = torch.tensor(sp) + (a_max - n)  # left padding shifts every column
    cols = cols.to(hidden.device)
    rows = torch.arange(len(spans), device=hidden.device)  # [P]
    means = pointer.span_means(hidden, rows, cols)  # [P, K, H]
    return pointer.scores(hidden[:, -1], means, cols[..., 0] < 0, temperature).float().cpu()  # [P, K]


def prepare(engine, data: Path, split: str, todo: Sequence[tuple[dict, str]], excluded: dict[str, set]) -> None:
    """Attach the scorer to `engine` and check every listwise prompt's candidates before any
    prompt is scored (rerank: the retriever's first K after exclusion; candidates: the list)."""
    from recsys_cli.artifacts import schemas
    from recsys_cli.artifacts.io import read_artifact
    from recsys_cli.inference.retriever import head

    seqs = read_artifact(data, schemas.SEQUENCES, ["user_id", "items"])
    engine.listwise = ListwiseScorer(engine, dict(zip(seqs["user_id"].to_list(), seqs["items"].to_list())), split)
    rows, cands = [], []
    for r, mode in todo:
        excl = excluded.get(r["prompt_id"], set())
        if mode == "rerank" and engine.opts.fusion != 0.0:  # W = 0: the retriever's order, no prompt is built
            cands.append(head(*engine.retriever.lists[r["prompt_id"]], excl, engine.opts.rerank_k)[0])
        elif mode == "candidates":
            cands.append(candidate_list(r, excl))
        else:
            continue
        rows.append(r)
    engine.listwise.check(rows, cands)


def candidate_list(row: dict, excluded: set) -> list[str]:
    """A direct prompt's own candidates, excluded (history) items dropped: the `candidates` mode's list."""
    return [c for c in row["candidates"] if c not in excluded]


def candidate_rows(engine, rows: list[dict], excluded: list[set]) -> list[dict]:
    """The `candidates` mode in listwise scoring: each direct prompt's list sorted by its scores."""
    cands = [candidate_list(r, excl) for r, excl in zip(rows, excluded)]
    out = []
    for r, cs, s in zip(rows, cands, engine.listwise.score(rows, cands)):
        order = sorted(range(len(cs)), key=lambda i: (-s[i], i))
        ranked = [cs[i] for i in order]
        top = engine.titles.get(ranked[0], ranked[0]) if ranked else ""
        out.append(engine._row(r, top, ranked, [s[i] for i in order], bool(ranked)))
    return out
