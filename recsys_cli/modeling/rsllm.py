"""RSLLM "Hybrid Encoding" (docs/rsllm.md): the projector that maps a trained recommender's
item-ID embeddings into the LLM's input space, and the user head of the user-alignment loss.

    python -c "from recsys_cli.modeling.rsllm import Projector; print(Projector(64, 576, 'mlp2', 256, 0.05))"

`HybridModules` is attached as `lm.hybrid` (modeling/wrapper.RecsysLM): `project(rows)` gives
the soft-token input embeddings, `extra_tensors()` what save_checkpoint writes into
C/extras.safetensors (keys `hybrid.*`), `describe()` the `CheckpointConfig.hybrid` dict that
`attach_from_checkpoint` rebuilds the modules from at `infer`. The item table itself is a
frozen, non-persistent buffer: it is read from the embeddings file named in the config and
checked against the sha256 stored there (never copied into the checkpoint).
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from recsys_cli.errors import RecsysError

PROJECTORS = ("mlp2", "linear")
NORMS = ("rms", "none")
PREFIX = "hybrid."


def table_sha256(item_ids: list[str], table: torch.Tensor) -> str:
    """Identity of an embeddings file's content: item ids + float32 table bytes."""
    h = hashlib.sha256("\n".join(item_ids).encode())
    h.update(table.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


class Projector(nn.Module):
    """d_rec -> H. mlp2: Linear(d_rec, h) - GELU - Linear(h, H) (LLaRA's shape, h free);
    linear: Linear(d_rec, H). norm="rms": the output is RMS-normalised and scaled by a trained
    scalar gain initialised to the RMS of the LLM's token embeddings, so a soft token starts
    at the norm of a real token (a project choice; LLaRA has no such step)."""

    def __init__(
        self, d_rec: int, hidden: int, kind: str = "mlp2", inner: int = 256, target_rms: float = 1.0, norm: str = "rms"
    ):
        super().__init__()
        if kind not in PROJECTORS:
            raise RecsysError(f"hybrid.projector must be one of {PROJECTORS}, got {kind!r}", exit_code=2)
        if norm not in NORMS:
            raise RecsysError(f"hybrid.projector_norm must be one of {NORMS}, got {norm!r}", exit_code=2)
        self.kind, self.norm = kind, norm
        if kind == "mlp2":
            self.net = nn.Sequential(nn.Linear(d_rec, inner), nn.GELU(), nn.Linear(inner, hidden))
        else:
            self.net = nn.Sequential(nn.Linear(d_rec, hidden))
        self.gain = nn.Parameter(torch.tensor(float(target_rms))) if norm == "rms" else None

    def forward(self, e: torch.Tensor) -> torch.Tensor:  # e [S, d_rec] -> [S, H]
        z = self.net(e)  # [S, H]
        if self.gain is not None:
            z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain  # [S, H]
        return z


class HybridModules(nn.Module):
    """Projector + user head (H -> d_rec) + the frozen item table [N + 1, d_rec] (row 0 = padding)."""

    def __init__(
        self,
        table: torch.Tensor,
        hidden: int,
        kind: str = "mlp2",
        inner: int = 256,
        target_rms: float = 1.0,
        norm: str = "rms",
        user_head: bool = True,
    ):
        super().__init__()
        self.d_rec, self.hidden, self.n_rows = int(table.shape[1]), int(hidden), int(table.shape[0])
        self.register_buffer("table", table.detach().float().clone(), persistent=False)  # [N + 1, d_rec]
        self.projector = Projector(self.d_rec, hidden, kind, inner, target_rms, norm)
        self.user_head = nn.Linear(hidden, self.d_rec) if user_head else None
        self.inner = int(inner)

    def project(self, rows: torch.Tensor) -> torch.Tensor:  # rows [S] long (>= 1) -> [S, H]
        e = self.table[rows]  # [S, d_rec]
        w = self.projector.net[0].weight
        with torch.autocast(device_type=w.device.type, enabled=False):  # keep the small MLP in fp32
            return self.projector(e.to(w.dtype))  # [S, H]

    def freeze_projector(self) -> None:
        """Ablation hybrid.freeze_projector: the projector stays at its (seeded) random init."""
        for p in self.projector.parameters():
            p.requires_grad_(False)

    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """Projector and head weights for C/extras.safetensors (float32, CPU)."""
        out = {
            PREFIX + "projector." + k: v.detach().float().contiguous().cpu()
            for k, v in self.projector.state_dict().items()
        }
        if self.user_head is not None:
            out.update(
                {
                    PREFIX + "user_head." + k: v.detach().float().contiguous().cpu()
                    for k, v in self.user_head.state_dict().items()
                }
            )
        return out

    def describe(self, embeddings_path: str, item_ids: list[str]) -> dict:
        """The CheckpointConfig.hybrid dict (everything needed to rebuild the modules)."""
        return {
            "format": 1,
            "projector": self.projector.kind,
            "projector_hidden": self.inner,
            "projector_norm": self.projector.norm,
            "d_rec": self.d_rec,
            "hidden": self.hidden,
            "user_head": self.user_head is not None,
            "n_rows": self.n_rows,
            "embeddings": str(embeddings_path),
            "embeddings_sha256": table_sha256(item_ids, self.table),
        }


def token_embedding_rms(lm) -> float:
    """RMS of the base's input embedding rows (the scale a soft token should start at)."""
    w = lm.base.get_input_embeddings().weight.detach().float()  # [V, H]
    return float(w.pow(2).mean().sqrt())


def build_hybrid(lm, emb, hyb, seed: int = 0) -> HybridModules:
    """Attach fresh hybrid modules to `lm` (recipe section `hybrid`, training/recipe.HybridArgs;
    `emb` an artifacts.item_embeddings.ItemEmbeddings). Seeded, so a run is reproducible and the
    freeze_projector ablation is a fixed random projector."""
    hidden = lm.base.get_input_embeddings().weight.shape[1]
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        mods = HybridModules(
            emb.table,
            hidden,
            hyb.projector,
            hyb.projector_hidden,
            token_embedding_rms(lm),
            getattr(hyb, "projector_norm", "rms"),
            user_head=True,
        )
    finally:
        torch.random.set_rng_state(gen_state)
    if hyb.freeze_projector:
        mods.freeze_projector()
    dev = lm.intra_embed.weight.device
    lm.hybrid = mods.to(dev)
    return mods


def attach_from_checkpoint(lm, desc: dict | None, extras: dict, emb) -> HybridModules | None:
    """Rebuild `lm.hybrid` from CheckpointConfig.hybrid (`desc`), the loaded extras
    (lm.extras) and the embeddings file `emb` (checked against the stored sha256).
    None when the checkpoint is text-only."""
    if not desc:
        return None
    sha = table_sha256(emb.item_ids, emb.table)
    if sha != desc.get("embeddings_sha256"):
        raise RecsysError(
            f"item embeddings {desc.get('embeddings')}: content differs from the embeddings this checkpoint "
            f"was trained with (sha256 {sha[:12]}, expected {str(desc.get('embeddings_sha256'))[:12]}); "
            "retrained SASRec?",
            exit_code=2,
        )
    mods = HybridModules(
        emb.table,
        int(desc["hidden"]),
        desc["projector"],
        int(desc["projector_hidden"]),
        1.0,
        desc.get("projector_norm", "rms"),
        user_head=bool(desc.get("user_head", True)),
    )
    state = {k[len(PREFIX) :]: v for k, v in extras.items() if k.startswith(PREFIX)}
    try:
        missing, unexpected = mods.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise RecsysError(
            "extras.safetensors: hybrid tensors do not fit the recorded projector "
            f"({' '.join(str(exc).split())[:160]})",
            exit_code=2,
        )
    missing = [k for k in missing if k != "table"]
    if missing or unexpected:
        raise RecsysError(
            f"extras.safetensors: hybrid tensors missing {missing[:3]} / unexpected {unexpected[:3]}", exit_code=2
        )
    dev = lm.intra_embed.weight.device
    lm.hybrid = mods.to(dev).eval() if not lm.training else mods.to(dev)
    return mods
