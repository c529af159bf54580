"""SASRec (Kang & McAuley, 2018): causal self-attention over item embeddings, in torch.

Leave-one-out (data/split.py): for a sequence `items`, `items[:-2]` is the training part (every
position predicts the next item), `items[-2]` the validation target (early stopping on valid
NDCG@10) and `items[-1]` the test target, predicted from `items[:-1]`. For train prompts
(`recsys baseline sasrec --split train`) the model gets the sequences without their test target
(`training_sequences`): it learns from `items[:-3]` and stops early on `items[-3]`, so no valid
or test target reaches it. Test prompts (`refit`, on by default) are scored by a fresh model
trained on `items[:-1]` for the epoch count early stopping chose (baselines/sasrec_train.py).
Valid prompts with `refit` get the same protocol shifted one position earlier, so the
validation retriever is built exactly like the test one: early stopping on `items[-3]` (trained
on `items[:-3]`), then a refit on `items[:-2]`; the valid target is never a label and never
selects an epoch. `protocol` says which one answered a split (recorded in the provenance).

Loss: softmax cross-entropy at every real position over all items (`negatives=0`, the default),
or against K uniform negatives shared by the batch. Early stopping ranks all items but the
user's history (`exclude_history`, the protocol of `recsys baseline`: P5 sequences never repeat
an item) or every item (P5). `mask_seen` also leaves the items seen so far out of the training
softmax; on full Toys it lost on validation, so it is off (bench/sasrec.py, SELECTION).
On a plateau (`decay_patience` epochs without gain) the lr is cut by `lr_decay`, at most 3 times.

    recsys baseline sasrec --data runs/toys --out runs/toys/sasrec.parquet --seed 0
    python bench/sasrec.py   # full P5 Toys, all 11,924 items ranked

Items are encoded as integers 1..N (0 is padding) by the caller; see `encode_sequences`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from recsys_cli.data import split as loo
from recsys_cli.evaluation.metrics import ranking_from_ranks

# torch is imported inside the functions, as `recsys --help` must never load it:
# commands/baseline.py imports this module.


@dataclass
class SASRecConfig:
    max_len: int = 50
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    dropout: float = 0.3
    lr: float = 2e-3
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 8  # epochs without validation NDCG@10 improvement before stopping
    eval_every: int = 1
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 2
    max_minutes: float = 18.0  # stop training (keeping the best weights) after this long
    negatives: int = 0  # 0: full softmax over all items; K > 0: sampled softmax, K uniform negatives per batch
    head_skip: bool = True  # False: the head reads only what the blocks added (no residual copy of the input item)
    exclude_history: bool = True  # ranking protocol of early stopping: all items but the user's own history
    mask_seen: bool = False  # True: the softmax at position t leaves out the items seen at positions <= t
    lr_decay: float = 1.0  # < 1: multiply the lr by this after `decay_patience` epochs without gain (at most 3 times)
    decay_patience: int = 3
    refit: bool = True  # test prompts: retrain on items[:-1] for the epochs early stopping chose (sasrec_train.refit)

    def as_dict(self) -> dict:
        return asdict(self)


def encode_sequences(sequences: Sequence[Sequence[str]]) -> tuple[list[list[int]], list[str]]:
    """Map string item ids to 1..N (sorted, so the encoding is deterministic)."""
    vocab = sorted({i for seq in sequences for i in seq}, key=lambda s: (len(s), s))
    index = {item: n + 1 for n, item in enumerate(vocab)}
    return [[index[i] for i in seq] for seq in sequences], vocab


def shifted(split: str, refit: bool) -> bool:
    """Whether early stopping for `split` happens one position early, on items[-3]: for train prompts,
    and for valid prompts with the refit (the test protocol moved back by one position)."""
    return split == "train" or (split == "valid" and refit)


def training_sequences(sequences: Sequence[Sequence[int]], split: str, refit: bool = False) -> list[list[int]]:
    """What `train` gets for a split: whole sequences for valid/test (it holds out the last two
    itself); for train prompts, and valid prompts with the refit, the sequences without their test
    target, so the model trains on items[:-3] and stops early on items[-3] (no valid or test
    target reaches it). `refit` trains on these sequences but their last item (sasrec_train.refit)."""
    if shifted(split, refit):
        return [list(loo.history(s, "test")) for s in sequences]
    return [list(s) for s in sequences]


def protocol(split: str, refit: bool) -> str:
    """How the model that answers `split`'s prompts is trained, in words (provenance and summary)."""
    if split == "train":
        return "trained on items[:-3], early-stopped on items[-3]"
    if not refit:
        return "trained on items[:-2], early-stopped on items[-2] (the valid target)"
    if split == "valid":
        return "early-stopped on items[-3] (trained on items[:-3]), refit on items[:-2] for the chosen epochs"
    return "early-stopped on items[-2] (trained on items[:-2]), refit on items[:-1] for the chosen epochs"


def _left_pad(seqs: Sequence[Sequence[int]], max_len: int) -> np.ndarray:
    """Last `max_len` items of each sequence, left-padded with 0: int64 [B, L]."""
    length = min(max_len, max((len(s) for s in seqs), default=1)) or 1
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = list(seq)[-length:]
        if tail:
            out[row, length - len(tail) :] = tail
    return out


def build_model(num_items: int, cfg: SASRecConfig):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        """Pre-LN causal self-attention + point-wise feed-forward, both residual."""

        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.hidden)
            self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
            self.proj = nn.Linear(cfg.hidden, cfg.hidden)
            self.ln2 = nn.LayerNorm(cfg.hidden)
            self.ff = nn.Sequential(
                nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.hidden)
            )
            self.drop = nn.Dropout(cfg.dropout)

        def forward(self, x, mask):  # x [B, L, H], mask bool [B, 1, L, L] (True = may attend)
            b, length, h = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)  # 3 x [B, L, H]
            shape = (b, length, cfg.heads, h // cfg.heads)
            q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))  # [B, heads, L, H/heads]
            p = cfg.dropout if self.training else 0.0
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, heads, L, H/heads]
            x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, length, h)))  # [B, L, H]
            return x + self.drop(self.ff(self.ln2(x)))  # [B, L, H]

    class SASRec(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.item = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)  # row 0 = padding
            self.pos = nn.Embedding(cfg.max_len, cfg.hidden)
            self.drop = nn.Dropout(cfg.dropout)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.blocks))
            self.ln = nn.LayerNorm(cfg.hidden)
            nn.init.normal_(self.item.weight, std=cfg.hidden**-0.5)
            with torch.no_grad():
                self.item.weight[0].zero_()

        def forward(self, seq):  # seq int64 [B, L] left-padded -> hidden states [B, L, H]
            b, length = seq.shape
            valid = seq > 0  # [B, L]
            # positions counted from the right: the last item is always at max_len - 1
            pos = torch.arange(cfg.max_len - length, cfg.max_len, device=seq.device)  # [L]
            x = self.item(seq) * math.sqrt(cfg.hidden) + self.pos(pos)[None]  # [B, L, H]
            x = self.drop(x) * valid[..., None]  # [B, L, H]
            x0 = x  # [B, L, H] the input stream every residual carries to the output
            causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()  # [L, L]
            eye = torch.eye(length, dtype=torch.bool, device=seq.device)  # [L, L]
            mask = ((causal[None] & valid[:, None, :]) | eye[None])[:, None]  # [B, 1, L, L]; pads see themselves
            for block in self.blocks:
                x = block(x, mask) * valid[..., None]  # [B, L, H]
            if not cfg.head_skip:
                x = x - x0  # [B, L, H] only the blocks' contribution
            return self.ln(x)  # [B, L, H]

        def item_logits(self, h):  # h [N, H] -> [N, num_items] (scores of items 1..N)
            return h @ self.item.weight[1:].T  # [N, num_items]

        def last_state(self, seq):  # seq [B, L] -> [B, H], the state after the last item
            return self.forward(seq)[:, -1]  # [B, H]

    return SASRec()


def score_all(model, histories: Sequence[Sequence[int]], max_len: int, batch: int = 512) -> np.ndarray:
    """Scores of all items for each history: float32 [U, num_items] (column j = item j+1)."""
    import torch

    model.eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(histories), batch):
            seq = torch.from_numpy(_left_pad(histories[start : start + batch], max_len))  # [B, L]
            rows.append(model.item_logits(model.last_state(seq)).numpy())  # [B, N]
    return np.concatenate(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def rank_metrics(model, histories, targets, max_len: int, ks=(1, 5, 10), batch: int = 512) -> dict[str, float]:
    """Full-ranking HR@k / NDCG@k over all items under both protocols (ties count against the
    target): `HR@10` ranks every item (P5), `x_HR@10` leaves out each user's whole history."""
    import torch

    ranks, ranks_x = [], []
    for start in range(0, len(histories), batch):
        hists = histories[start : start + batch]
        logits = torch.from_numpy(score_all(model, hists, max_len, batch))  # [B, N]
        t_score = logits.gather(1, torch.as_tensor(targets[start : start + batch])[:, None] - 1)  # [B, 1]
        ranks.append(((logits >= t_score).sum(1) - 1).numpy())  # [B] 0-based rank
        rows = torch.as_tensor(np.repeat(np.arange(len(hists)), [len(h) for h in hists]))  # [S]
        cols = torch.as_tensor(np.concatenate([np.asarray(h, dtype=np.int64) for h in hists]) - 1)  # [S]
        logits[rows, cols] = float("-inf")  # [B, N]; a target inside its own history ranks last
        ranks_x.append(((logits >= t_score).sum(1) - 1).numpy())  # [B]
    return {**ranking_from_ranks(np.concatenate(ranks), ks), **ranking_from_ranks(np.concatenate(ranks_x), ks, "x_")}
