"""Scoring fixed answers instead of generating them.

* `score_candidates`: log-likelihood of each candidate answer (`[START] title [END]`) after one
  prompt. The prompt's KV cache is computed once and shared by all candidates, so 100
  candidates cost one prompt pass plus 100 short ones. `score_candidates_batch` prefills
  several prompts in one pass and runs the candidate rows of all of them in shared forwards.
* `score_candidates_constrained`: log P of each candidate under decoding constrained to the
  candidate titles (softmax over the allowed next tokens). The candidates' trie is walked
  exhaustively, but only up to the point where a prefix identifies one candidate (the rest is
  forced), so 100 candidates usually cost one prompt pass plus a few dozen one-token rows.
  `score_candidates_constrained_batch` walks several prompts' tries in the same forwards.
* `yes_no`: log P(yes) against log P(no) for the first answer token, batched.
* `score_batch`: the `constrained` or `full` scores (--item-scoring, ITEM_SCORINGS); the
  calibrated scorers built on `full` are in inference/calibrated.py.

    python -m pytest tests/unit/test_inference.py -q
"""

from __future__ import annotations

from typing import Sequence

from recsys_cli.data.positions import part_b_intra
from recsys_cli.data.trie import ROOT, EntityTrie
from recsys_cli.inference import decode
from recsys_cli.modeling.mask import cached_attention_mask

# --item-scoring: the one list of candidate scorers (commands/infer.py, evaluation/tune.py, calibrated.py read it).
# constrained and full: here; full-norm and pmi: inference/calibrated.py; listwise: inference/listwise.py
ITEM_SCORINGS = ("constrained", "full", "full-norm", "pmi", "listwise")
CALIBRATED_SCORINGS = ("full-norm", "pmi")  # built on `full` (calibrated.score_items)
PER_ITEM_SCORINGS = ("full", "full-norm", "pmi")  # a candidate's score ignores the other candidates

# candidate rows per forward: on 2 CPU cores 32 beat 256 (the [rows, W, V] logits dominate); a GPU
# wants larger forwards (scripts/gpu-bench.sh measures 32 against 256)
CHUNK_ROWS = {"cpu": 32, "cuda": 256}


def score_candidates(
    model,
    part_a: Sequence[int],
    part_a_intra: Sequence[int],
    start_id: int,
    end_id: int,
    candidates: Sequence[Sequence[int]],
    trie: EntityTrie | None,
    chunk: int | None = None,
    dynamic: bool = True,
    soft: Sequence[tuple[int, int]] | None = None,
) -> list[float]:
    """Summed log-prob of `candidate tokens + [END]` for each candidate, after one prompt
    (one prompt of `score_candidates_batch`)."""
    return score_candidates_batch(
        model,
        [part_a],
        [part_a_intra],
        start_id,
        end_id,
        [candidates],
        trie,
        chunk=chunk,
        dynamic=dynamic,
        soft=None if soft is None else [soft],
    )[0]


def score_candidates_batch(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    end_id: int,
    candidates: Sequence[Sequence[Sequence[int]]],
    trie: EntityTrie | None,
    chunk: int | None = None,
    dynamic: bool = True,
    soft: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[list[float]]:
    """Per prompt b, the summed log-prob of `tokens + [END]` of each of `candidates[b]`. The
    prompts are prefilled as one left-padded batch; then every (prompt, candidate) row, the
    rows of all prompts sorted by length together, runs in forwards of `chunk` rows, each on
    its own prompt's cached keys (so chunks stay full across prompts, with little padding).
    `chunk` None: CHUNK_ROWS for the model's device type."""
    import torch

    chunk = chunk or CHUNK_ROWS.get(decode._device(model).type, CHUNK_ROWS["cpu"])

    out = [[0.0] * len(c) for c in candidates]
    live = [b for b, c in enumerate(candidates) if c]
    if not live:
        return out
    base = decode.prefill(
        model,
        [part_a[b] for b in live],
        [part_a_intra[b] for b in live],
        start_id,
        trie,
        dynamic=dynamic,
        soft=None if soft is None else [soft[b] for b in live],
    )
    first = torch.log_softmax(base.logits, -1).cpu()  # [P, V] next token after [START]
    key_ok, inter = base.key_ok.cpu(), base.inter.cpu()  # [P, past], [P]
    rows = sorted(
        ((p, i) for p, b in enumerate(live) for i in range(len(candidates[b]))),
        key=lambda pi: len(candidates[live[pi[0]]][pi[1]]),
    )  # length-sorted chunks: little padding
    for c0 in range(0, len(rows), chunk):
        members = rows[c0 : c0 + chunk]
        src = torch.tensor([p for p, _ in members])  # [N] prompt of each row
        group = [list(candidates[live[p]][i]) for p, i in members]
        ids, total = _candidate_logprobs(model, base.cache, src, key_ok, inter, group, end_id, trie, dynamic)
        total = total + first[src, ids[:, 0]]  # [N]
        for (p, i), v in zip(members, total.tolist()):
            out[live[p]][i] = v
    return out


def _candidate_logprobs(model, cache, src, key_ok, inter, group: list[list[int]], end_id: int, trie, dynamic: bool):
    """One forward of candidate rows, row r after the cached keys of prompt src[r] (`key_ok`
    [P, past]: which are real; `inter` [P]: [gM]'s position). -> (ids [N, W], summed log-prob of
    each row's tokens 2.. and [END] [N]), on the host."""
    import torch

    dt, dev = decode._dtype(model), decode._device(model)
    n = len(group)
    width = max(len(c) for c in group)
    ids = torch.zeros(n, width, dtype=torch.long)  # [N, W] right-padded candidate tokens
    intra = torch.ones(n, width, dtype=torch.long)  # [N, W]
    lens = torch.tensor([len(c) for c in group])  # [N]
    for i, c in enumerate(group):
        ids[i, : len(c)] = torch.tensor(c)
        if dynamic and trie is not None:
            intra[i, : len(c)] = torch.tensor(part_b_intra(c, trie)[1:])
    mask = cached_attention_mask(key_ok[src], dt, width, lens)  # [N, 1, W, past+W]
    inter_rows = inter[src][:, None].expand(n, width)  # [N, W] every candidate token sits at [gM]'s position
    logits, _ = decode.forward(
        model, ids.to(dev), inter_rows.to(dev), intra.to(dev), mask.to(dev), _cache_rows(cache, src.to(dev))
    )
    nxt = torch.cat([ids[:, 1:], torch.zeros(n, 1, dtype=torch.long)], 1)  # [N, W] token predicted at each pos
    nxt[torch.arange(n), lens - 1] = end_id
    logits = logits.float()  # [N, W, V]
    tok_lp = logits.gather(-1, nxt[..., None].to(dev))[..., 0] - torch.logsumexp(logits, -1)  # [N, W]
    valid = torch.arange(width)[None, :] < lens[:, None]  # [N, W]
    return ids, (tok_lp.cpu() * valid).sum(1)


def score_candidates_constrained(
    model,
    part_a: Sequence[int],
    part_a_intra: Sequence[int],
    start_id: int,
    end_id: int,
    candidates: Sequence[Sequence[int]],
    trie: EntityTrie | None,
    dynamic: bool = True,
    soft: Sequence[tuple[int, int]] | None = None,
) -> list[float]:
    """log P(candidate) under the distribution constrained to the candidates' titles; equal
    titles share their probability (each gets the full value). One prompt of
    `score_candidates_constrained_batch`."""
    return score_candidates_constrained_batch(
        model,
        [part_a],
        [part_a_intra],
        start_id,
        end_id,
        [candidates],
        trie,
        dynamic=dynamic,
        soft=None if soft is None else [soft],
    )[0]


def score_candidates_constrained_batch(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    end_id: int,
    candidates: Sequence[Sequence[Sequence[int]]],
    trie: EntityTrie | None,
    dynamic: bool = True,
    soft: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[list[float]]:
    """Per prompt b, log P of each of `candidates[b]` under decoding constrained to that
    prompt's candidate titles. The prompts are prefilled as one left-padded batch; every
    walker row (prompt, trie node) of every prompt then advances in one forward per depth, so
    a batch of prompts costs about as many forwards as its deepest candidate trie."""
    import torch

    tries = [EntityTrie((c, i) for i, c in enumerate(cands)) for cands in candidates]
    out = [[float("-inf")] * len(c) for c in candidates]
    live = []  # prompts whose candidates need the model
    for b, ct in enumerate(tries):
        whole = ct.unique_tail(ROOT) if candidates[b] else None
        if whole is not None:  # one distinct title: probability 1
            for i in ct.payloads[whole[1]]:
                out[b][i] = 0.0
        elif candidates[b]:
            live.append(b)
    if not live:
        return out
    state = decode.prefill(
        model,
        [part_a[b] for b in live],
        [part_a_intra[b] for b in live],
        start_id,
        trie,
        dynamic=dynamic,
        soft=None if soft is None else [soft[b] for b in live],
    )
    cons = [decode.Constraint(ct, end_id, renormalize=True) for ct in tries]
    frontier = [(b, ROOT, 0.0) for b in live]  # (prompt, trie node, log P of reaching it); `state` row r: frontier[r]
    while frontier:
        vocab = state.logits.shape[1]
        allowed = torch.full((len(frontier), vocab), float("-inf"))  # [F, V]
        rows_of: dict[int, list[int]] = {}
        for r, (b, _, _) in enumerate(frontier):
            rows_of.setdefault(b, []).append(r)
        for b, rows in rows_of.items():
            allowed[rows] = cons[b].mask([frontier[r][1] for r in rows], [set()] * len(rows), vocab, "cpu")
        logp = torch.log_softmax(state.logits.cpu() + allowed, -1)  # [F, V]
        src, toks, nxt = [], [], []
        for r, (b, node, sc) in enumerate(frontier):
            ct = tries[b]
            if ct.payloads[node]:  # a title ends here and others continue it
                for i in ct.payloads[node]:
                    out[b][i] = sc + logp[r, end_id].item()
            for tok in ct.children(node):
                child, lp = ct.step(node, tok), sc + logp[r, tok].item()
                tail = ct.unique_tail(child)
                if tail is not None:  # decided: the remaining tokens are forced
                    for i in ct.payloads[tail[1]]:
                        out[b][i] = lp
                    continue
                src.append(r)
                toks.append(tok)
                nxt.append((b, child, lp))
        if not nxt:
            break
        state.select(src)
        decode.step(model, state, torch.tensor(toks, dtype=torch.long, device=state.key_ok.device))
        frontier = nxt
    return out


def score_batch(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    end_id: int,
    candidates: Sequence[Sequence[Sequence[int]]],
    trie: EntityTrie | None,
    scoring: str = "constrained",
    dynamic: bool = True,
    soft: Sequence[Sequence[tuple[int, int]]] | None = None,
) -> list[list[float]]:
    """Scores of each prompt's candidates under `--item-scoring` (constrained: the batched
    walker; full: summed full-vocabulary log-probs, the prompts batched too). full-norm and pmi:
    calibrated.score_items (pmi needs item ids); listwise: inference/listwise.py."""
    if scoring not in ("constrained", "full"):
        raise ValueError(f"score_batch scores 'constrained' or 'full', not {scoring!r}")
    if scoring == "constrained":
        return score_candidates_constrained_batch(
            model, part_a, part_a_intra, start_id, end_id, candidates, trie, dynamic=dynamic, soft=soft
        )
    return score_candidates_batch(
        model, part_a, part_a_intra, start_id, end_id, candidates, trie, dynamic=dynamic, soft=soft
    )


def _cache_rows(cache, rows):
    """A new DynamicCache whose row r is row rows[r] of `cache` in every layer."""
    from transformers import DynamicCache

    new = DynamicCache()
    for i, layer in enumerate(cache.layers):
        new.update(layer.keys.index_select(0, rows), layer.values.index_select(0, rows), i)
    return new


def yes_no(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    yes_ids: Sequence[int],
    no_ids: Sequence[int],
    soft=None,
) -> list[tuple[float, float]]:
    """(log P(yes), log P(no)) of the first answer token per prompt; each side sums the
    probability of its spellings (e.g. " yes", " Yes")."""
    import torch

    st = decode.prefill(model, part_a, part_a_intra, start_id, None, dynamic=False, soft=soft)
    logp = torch.log_softmax(st.logits, -1).cpu()  # [B, V]
    y = torch.logsumexp(logp[:, list(yes_ids)], -1)  # [B]
    n = torch.logsumexp(logp[:, list(no_ids)], -1)  # [B]
    return list(zip(y.tolist(), n.tolist()))
