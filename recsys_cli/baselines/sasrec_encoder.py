"""A saved SASRec (R/baselines/sasrec.safetensors, artifacts/item_embeddings.py) back as a frozen
sequence encoder: the recommender-side user representation of RSLLM's user-alignment loss.

    python -c "from recsys_cli.artifacts.item_embeddings import load; \\
from recsys_cli.baselines.sasrec_encoder import UserEncoder; \\
u = UserEncoder(load('runs/toys/baselines/sasrec.safetensors')); print(u.encode([[1, 2, 3]]).shape)"

The module is rebuilt with baselines/sasrec.build_model from the stored config and loaded from
`item_embeddings` + `encoder.*` (strict: every parameter must be there). `to_item_embeddings`
is the inverse (what `recsys baseline sasrec` writes; tests use it on a tiny trained SASRec).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Sequence

from recsys_cli.errors import RecsysError

ITEM_WEIGHT = "item.weight"  # the SASRec module's item table; stored as `item_embeddings`


def to_item_embeddings(model, cfg, item_ids: list[str], data_fingerprint: str | None):
    """ItemEmbeddings of a trained SASRec module (`item_ids[j]` = item j + 1)."""
    from recsys_cli.artifacts.item_embeddings import ItemEmbeddings

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    table = state.pop(ITEM_WEIGHT)  # [N + 1, d]
    if table.shape[0] != len(item_ids) + 1:
        raise RecsysError(f"SASRec has {table.shape[0] - 1} items but {len(item_ids)} item ids were given")
    return ItemEmbeddings(list(item_ids), table, "sasrec", cfg.as_dict(), data_fingerprint, state)


def sasrec_config(stored: dict):
    """SASRecConfig from the stored dict (unknown keys ignored, missing ones default)."""
    from recsys_cli.baselines.sasrec import SASRecConfig

    known = {f.name for f in fields(SASRecConfig)}
    return SASRecConfig(**{k: v for k, v in stored.items() if k in known})


def load_encoder(emb):
    """The SASRec module of an ItemEmbeddings, frozen, in eval mode (dropout off)."""
    import torch

    from recsys_cli.baselines.sasrec import build_model

    if emb.model != "sasrec":
        raise RecsysError(f"item embeddings of model {emb.model!r}: the user encoder needs a SASRec file", exit_code=2)
    cfg = sasrec_config(emb.config)
    if cfg.hidden != emb.dim:
        raise RecsysError(f"SASRec config says hidden={cfg.hidden} but the item table has d={emb.dim}", exit_code=2)
    model = build_model(emb.table.shape[0] - 1, cfg)
    state = dict(emb.encoder)
    if ITEM_WEIGHT in state and not torch.equal(state[ITEM_WEIGHT].float(), emb.table.float()):
        raise RecsysError("SASRec file: encoder.item.weight differs from item_embeddings", exit_code=2)
    state[ITEM_WEIGHT] = emb.table
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RecsysError(
            f"SASRec file: the encoder state does not fit its config ({' '.join(str(exc).split())[:200]})", exit_code=2
        )
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cfg


def left_pad(histories: Sequence[Sequence[int]], max_len: int):
    """Last `max_len` rows of each history, left-padded with 0.  -> long [U, L] (L >= 1)."""
    import torch

    length = max(1, min(max_len, max((len(h) for h in histories), default=1)))
    out = torch.zeros(len(histories), length, dtype=torch.long)  # [U, L]
    for r, h in enumerate(histories):
        tail = list(h)[-length:]
        if tail:
            out[r, length - len(tail) :] = torch.tensor(tail, dtype=torch.long)
    return out


class UserEncoder:
    """histories of item rows (1..N) -> SASRec's state after the last item (model.last_state)."""

    def __init__(self, emb, device: str = "cpu"):
        self.model, self.cfg = load_encoder(emb)
        self.model.to(device)
        self.device = device
        self.dim = emb.dim

    def encode(self, histories: Sequence[Sequence[int]]):
        """-> float32 [U, d], no grad (the recommender is frozen)."""
        import torch

        with torch.no_grad():
            seq = left_pad(histories, self.cfg.max_len).to(self.device)  # [U, L]
            return self.model.last_state(seq).float()  # [U, d]

    def encode_padded(self, seq):
        """Already left-padded rows (collate's user_hist [U, L]) -> float32 [U, d], no grad."""
        import torch

        with torch.no_grad():
            return self.model.last_state(seq[:, -self.cfg.max_len :].to(self.device)).float()  # [U, d]
