"""Decoding with a KV cache and dynamic intra positions: prefill, greedy, beam search.

A prompt is Part A (prompt tokens + [gM], bidirectional) followed by [START]. Rows are
left-padded so every row appends its new token at the same cache column; the 4D float mask
(modeling/mask.py, the training layout) blocks the pad columns. The inter position of every
generated token is the index of [gM].

    python -m pytest tests/unit/test_inference.py -q
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from recsys_cli.data.positions import IntraTracker, answer_inter, part_a_inter
from recsys_cli.data.trie import ROOT, EntityTrie
from recsys_cli.modeling.mask import cached_attention_mask, prefill_attention_mask


def forward(model, ids, inter, intra, mask, cache, soft=None, last_only=False, hidden=False):
    """One RecsysLM call; returns (logits [B, q, V], or [B, 1, V] with `last_only`, cache), and the
    last layer's states [B, q, H] third with `hidden`. `soft`: RSLLM soft ID tokens (batch_idx
    [S], position [S], item_rows [S]), only given when there are some."""
    extra = {"soft": soft} if soft is not None else {}
    if last_only:
        extra["last_only"] = True
    out = model(
        input_ids=ids, inter=inter, intra=intra, attn_mask_4d=mask, cache=cache, use_cache=True, hidden=hidden, **extra
    )
    return (out.logits, out.cache, out.hidden) if hidden else (out.logits, out.cache)


def _dtype(model):
    return next(model.parameters()).dtype


def _device(model):
    return next(model.parameters()).device


@dataclass
class State:
    """Decoding state of a (padded) batch of rows."""

    cache: Any
    key_ok: Any  # [R, Lk] bool: which cache columns are real tokens
    inter: Any  # [R] long: inter position of generated tokens (index of [gM])
    logits: Any  # [R, V] next-token logits
    tracker: IntraTracker | None  # None: intra ids stay 1 (dynamic positions off)
    hidden: Any = None  # prefill(hidden=True): [R, L, H] last-layer states of Part A + [START], left padded

    def select(self, index) -> None:
        """Row r takes the state of row index[r] (beam reorder, expansion)."""
        import torch

        idx = torch.as_tensor(index, dtype=torch.long, device=self.key_ok.device)
        if len(idx) == self.key_ok.shape[0] and bool((idx == torch.arange(len(idx), device=idx.device)).all()):
            return
        _select_cache(self.cache, idx)
        self.key_ok = self.key_ok[idx]
        self.inter = self.inter[idx]
        self.logits = self.logits[idx]
        if self.tracker is not None:
            self.tracker.reorder(idx.tolist())


def _select_cache(cache, idx) -> None:
    """Index the batch dimension of every layer of a transformers Cache in place."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys = layer.keys.index_select(0, idx)
            layer.values = layer.values.index_select(0, idx)


def prefill(
    model,
    part_a: Sequence[Sequence[int]],
    part_a_intra: Sequence[Sequence[int]],
    start_id: int,
    trie: EntityTrie | None,
    dynamic: bool = True,
    soft: Sequence[Sequence[tuple[int, int]]] | None = None,
    hidden: bool = False,
) -> State:
    """Run Part A + [START] of every row once; returns the state ready to generate. `soft`
    (RSLLM, data/rsllm.hybrid_part_a): per row, (Part A position, item row) of each soft token.
    `hidden`: State.hidden keeps every position's last-layer state (row r's Part A token p sits
    at column max Part A length - len(part_a[r]) + p; [START] is the last column)."""
    import torch
    from transformers import DynamicCache

    dev, dt = _device(model), _dtype(model)
    rows = len(part_a)
    a_max = max(len(a) for a in part_a)
    length = a_max + 1
    ids = torch.zeros(rows, length, dtype=torch.long)  # [B, L]
    inter = torch.zeros(rows, length, dtype=torch.long)  # [B, L]
    intra = torch.zeros(rows, length, dtype=torch.long)  # [B, L]
    key_ok = torch.zeros(rows, length, dtype=torch.bool)  # [B, L]
    for r, (a, ai) in enumerate(zip(part_a, part_a_intra)):
        pad = a_max - len(a)
        ids[r, pad:a_max] = torch.tensor(a)
        inter[r, pad:a_max] = torch.tensor(part_a_inter(len(a)))
        intra[r, pad:a_max] = torch.tensor(ai)
        key_ok[r, pad:] = True
        inter[r, a_max] = answer_inter(len(a))  # [START] sits at the [gM] inter position
    ids[:, a_max] = start_id
    intra[:, a_max] = 1
    mask = prefill_attention_mask(key_ok, a_max, dt)  # [B, 1, L, L] Part A bidirectional, [START] causal
    soft_t = None
    if soft is not None and any(soft):
        # left padding shifts the soft tokens' positions
        trip = [(r, a_max - len(a) + p, row) for r, (a, sr) in enumerate(zip(part_a, soft)) for p, row in sr]
        soft_t = tuple(torch.tensor([t[i] for t in trip], dtype=torch.long, device=dev) for i in range(3))  # 3 x [S]
    logits, cache, *states = forward(
        model, ids.to(dev), inter.to(dev), intra.to(dev), mask.to(dev), DynamicCache(), soft_t, True, hidden
    )  # states: [the last layer's [B, L, H]] with `hidden`, else []
    tracker = IntraTracker(trie, rows) if (dynamic and trie is not None) else None
    last = states[0] if states else None
    return State(cache, key_ok.to(dev), inter[:, a_max].to(dev), logits[:, -1].float(), tracker, last)


def step(model, state: State, tokens) -> None:
    """Feed one new token per row ([R] long); updates cache, mask and next-token logits."""
    import torch

    dt = _dtype(model)
    rows = tokens.shape[0]
    if state.tracker is not None:
        intra = torch.tensor(state.tracker.push(tokens.tolist()), dtype=torch.long, device=tokens.device)  # [R]
    else:
        intra = torch.ones(rows, dtype=torch.long, device=tokens.device)  # [R]
    mask = cached_attention_mask(state.key_ok, dt)  # [R, 1, 1, Lk + 1]
    state.key_ok = torch.cat([state.key_ok, torch.ones(rows, 1, dtype=torch.bool, device=tokens.device)], 1)
    logits, state.cache = forward(model, tokens[:, None], state.inter[:, None], intra[:, None], mask, state.cache)
    state.logits = logits[:, -1].float()  # [R, V]


def greedy(model, state: State, end_ids: Sequence[int], max_new_tokens: int) -> list[list[int]]:
    """Greedy decoding until an end token or the length limit; returns the tokens per row
    (end token excluded)."""
    rows = state.logits.shape[0]
    out: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    ends = set(int(e) for e in end_ids)
    for t in range(max_new_tokens):
        toks = state.logits.argmax(-1)  # [R]
        for r, tok in enumerate(toks.tolist()):
            if not done[r]:
                if tok in ends:
                    done[r] = True
                else:
                    out[r].append(tok)
        if all(done) or t == max_new_tokens - 1:
            break
        step(model, state, toks)
    return out


class Constraint:
    """Trie-constrained next tokens: children of the beam's node, plus [END] at a terminal
    node unless all its payloads are excluded for that row.

    renormalize=False scores a title by its summed full-vocabulary log-probs (every token and
    [END] counted). renormalize=True scores it by log P under the constrained distribution
    (softmax over the allowed tokens only): tokens that are forced because the title is
    already decided cost nothing, so a hypothesis finishes as soon as its prefix identifies a
    single title (`EntityTrie.unique_tail`), and the scores form a distribution over titles."""

    def __init__(self, trie: EntityTrie, end_id: int, renormalize: bool = False):
        self.trie, self.end_id, self.renormalize = trie, end_id, renormalize

    def mask(self, nodes: Sequence[int], excluded: Sequence[set], vocab: int, device):
        import torch

        rows, cols = [], []
        for r, node in enumerate(nodes):
            if node < 0:
                continue  # dead beam: nothing allowed
            kids = self.trie.children_tensor(node)
            rows.append(torch.full((len(kids),), r, dtype=torch.long))
            cols.append(kids)
            pay = self.trie.payloads[node]
            if pay and not all(p in excluded[r] for p in pay):
                rows.append(torch.tensor([r]))
                cols.append(torch.tensor([self.end_id]))
        m = torch.full((len(nodes), vocab), float("-inf"))  # [R, V]
        if rows:
            m[torch.cat(rows), torch.cat(cols)] = 0.0
        return m.to(device)


def _next_logprobs(state: State, constraint: Constraint | None, nodes: list[int], row_excl: list[set], ban):
    """Log-probs of every next token per live beam: the trie's constraint (renormalised when it
    asks, dead beams stay -inf), or the banned tokens removed."""
    import torch

    neg = float("-inf")
    logp = torch.log_softmax(state.logits, -1).cpu()  # [A*K, V]
    if constraint is not None:
        logp = logp + constraint.mask(nodes, row_excl, logp.shape[1], "cpu")
        if constraint.renormalize:
            logp = torch.log_softmax(logp, -1)
            logp.masked_fill_(logp.isnan(), neg)
    elif len(ban):
        logp[:, ban] = neg
    return logp


def beam_search(
    model,
    state: State,
    beams: int,
    top_k: int,
    end_id: int,
    max_new_tokens: int,
    constraint: Constraint | None = None,
    excluded: Sequence[set] | None = None,
    banned: Sequence[int] = (),
) -> list[list[tuple[float, list[int], int]]]:
    """Beam search over B rows with `beams` beams each. Returns, per row, up to `top_k`
    finished hypotheses (score = summed log-prob, tokens without [END], final trie node),
    best first. With a constraint every hypothesis is a complete trie entry. Rows that are
    done leave the batch (their cache rows are dropped)."""
    import torch

    batch, vocab = state.logits.shape
    neg = float("-inf")
    excluded = list(excluded) if excluded is not None else [set() for _ in range(batch)]
    state.select([b for b in range(batch) for _ in range(beams)])  # [B*K]
    active = list(range(batch))  # original row of each live row block
    scores = [0.0 if k == 0 else neg for _ in active for k in range(beams)]
    seqs: list[list[int]] = [[] for _ in range(batch * beams)]
    nodes = [ROOT] * (batch * beams)
    finished: list[list[tuple[float, list[int], int]]] = [[] for _ in range(batch)]
    ban = torch.tensor(list(banned), dtype=torch.long)
    for t in range(max_new_tokens):
        last = t == max_new_tokens - 1
        row_excl = [excluded[b] for b in active for _ in range(beams)]
        logp = _next_logprobs(state, constraint, nodes, row_excl, ban)  # [A*K, V]
        cand = (torch.tensor(scores).view(-1, 1) + logp).view(len(active), beams * vocab)  # [A, K*V]
        top_s, top_i = cand.topk(2 * beams, dim=1)  # [A, 2K]
        src, new_tok, new_scores, new_nodes, new_seqs, keep = [], [], [], [], [], []
        for p, b in enumerate(active):
            kept = 0
            blk_src, blk_tok, blk_sc, blk_nd, blk_sq = [], [], [], [], []
            for sc, i in zip(top_s[p].tolist(), top_i[p].tolist()):
                if kept == beams or sc == neg:
                    break
                k, tok = divmod(i, vocab)
                parent = p * beams + k
                if tok == end_id or (last and constraint is None):  # unconstrained: cut at the limit
                    finished[b].append((sc, seqs[parent] if tok == end_id else seqs[parent] + [tok], nodes[parent]))
                    continue
                node = constraint.trie.step(nodes[parent], tok) if constraint is not None else ROOT
                if constraint is not None and constraint.renormalize:
                    tail = constraint.trie.unique_tail(node)
                    if tail is not None:  # the title is decided: its remaining tokens are forced
                        if not all(p in excluded[b] for p in constraint.trie.payloads[tail[1]]):
                            finished[b].append((sc, seqs[parent] + [tok] + tail[0], tail[1]))
                        continue
                blk_src.append(parent)
                blk_tok.append(tok)
                blk_sc.append(sc)
                blk_nd.append(node)
                blk_sq.append(seqs[parent] + [tok])
                kept += 1
            finished[b].sort(key=lambda h: -h[0])
            best = max(blk_sc) if blk_sc else neg
            full = len(finished[b]) >= top_k
            if not blk_sc or (full and best <= finished[b][top_k - 1][0]):
                continue  # row done: scores only fall, nothing running can enter its top-k
            fill = beams - len(blk_sc)  # dead filler beams
            blk_src, blk_tok, blk_sc = blk_src + [parent] * fill, blk_tok + [end_id] * fill, blk_sc + [neg] * fill
            blk_nd, blk_sq = blk_nd + [-1] * fill, blk_sq + [[] for _ in range(fill)]
            keep.append(b)
            src += blk_src
            new_tok += blk_tok
            new_scores += blk_sc
            new_nodes += blk_nd
            new_seqs += blk_sq
        if not keep or last:
            break
        active, scores, nodes, seqs = keep, new_scores, new_nodes, new_seqs
        state.select(src)
        step(model, state, torch.tensor(new_tok, dtype=torch.long, device=state.key_ok.device))
    return [f[:top_k] for f in finished]
