"""Two training processes on CPU (gloo), launched with torchrun as a user would: DDP and
DeepSpeed ZeRO-2/3 follow the single-process loss curve, survive SIGKILL of rank 0 with an
exact resume, export an adapter plain peft loads, and resume without unpickling anything.

    python -m pytest tests/dist -q

The reference is one process with batch 4; the two-process runs split that global batch
(2 x batch 2, or 2 x batch 1 x grad_accum 2), so every step sees the same examples.
Each torchrun start costs ~15 s of imports on 2 cores; the runs are 10 steps of 64 tokens.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
STEPS, KILL_AT, SAVE_EVERY = 10, 5, 3
COMMON = [
    "--max-steps",
    str(STEPS),
    "--max-length",
    "64",
    "--lr",
    "0.01",
    "--lora-dropout",
    "0",
    "--precision",
    "fp32",
    "--eval-every",
    "5",
    "--save-every",
    str(SAVE_EVERY),
    "--set",
    "eval.eval_prompts=8",
    "--set",
    "train.warmup_steps=2",
]
ZERO = {2: str(ROOT / "recipes/deepspeed/zero2.json"), 3: str(ROOT / "recipes/deepspeed/zero3.json")}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, module: str = "recsys_cli.main", nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
    )
    env.pop("RECSYS_DEBUG", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(nproc),
        "--master_port",
        str(_port()),
        "-m",
        module,
        *args,
    ]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def pretrain(data: Path, out: Path, model: str, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
    """`recsys pretrain` on 2 ranks; `kill_at`: rank 0 is SIGKILLed as it starts that step."""
    args = ["pretrain", "--data", str(data), "--model", model, "--out", str(out), *COMMON, "--quiet", "--json", *extra]
    if kill_at is None:
        return torchrun(*args)
    return torchrun(str(kill_at), *args, module="tests.dist._kill_rank0")


def curve(ckpt: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (ckpt / "metrics.jsonl").read_text().splitlines())]


def assert_same_curve(got, want, rel: float = 1e-4) -> None:
    assert [s for s, _ in got] == [s for s, _ in want] == list(range(1, STEPS + 1))
    worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(got, want))
    assert worst < rel, (worst, got, want)


def adapter(ckpt: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))


def assert_close_tensors(got: dict, want: dict, atol: float) -> None:
    assert sorted(got) == sorted(want)
    worst = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert worst < atol, worst


def assert_same_adapter(got: dict, want: dict) -> None:
    """Equal up to float reordering, which Adam's normalised steps lift to ~1e-4 on elements
    whose gradient is near zero; training itself moved the weights by ~100x more."""
    assert_close_tensors(got, want, atol=1e-3)
    moved = max(float(v.abs().max()) for k, v in want.items() if "lora_B" in k)  # lora_B starts at zero
    assert moved > 0.05, moved


@pytest.fixture(scope="module")
def reference(toys_data, tiny_model, tmp_path_factory):
    """One process, batch 4, in this process: (checkpoint dir, the trained RecsysLM, the
    initial trainable tensors; every run here starts from them: same seed, same init)."""
    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.recipe import load_recipe

    sets = [
        ("model.name", tiny_model),
        ("train.batch_size", 4),
        ("train.max_steps", STEPS),
        ("train.max_length", 64),
        ("train.lr", 0.01),
        ("lora.dropout", 0.0),
        ("train.precision", "fp32"),
        ("eval.eval_every", 5),
        ("train.save_every", SAVE_EVERY),
        ("eval.eval_prompts", 8),
        ("train.warmup_steps", 2),
    ]
    out = tmp_path_factory.mktemp("ref") / "C"
    tr = Trainer(load_recipe(None, sets), toys_data, out)
    init = {n: p.detach().clone() for n, p in tr.lm.named_parameters() if p.requires_grad}
    tr.train()
    return out, tr.lm, init


def test_ddp_two_processes_follow_one(reference, toys_data, tiny_model, tmp_path):
    """2 ranks x batch 1 x grad_accum 2 (no_sync on the first micro-step) = 1 rank x batch 4."""
    from safetensors.torch import load_file

    ref, _, init = reference
    out = tmp_path / "C"
    run = pretrain(toys_data, out, tiny_model, "--batch-size", "1", "--grad-accum", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)  # rank 0 alone prints the summary
    assert summary["engine"] == "ddp" and summary["processes"] == 2 and summary["steps"] == STEPS
    assert_same_curve(curve(out), curve(ref))
    assert_same_adapter(adapter(out), adapter(ref))
    state = json.loads((out / "train_state/state.json").read_text())
    assert state["world_size"] == 2 and sorted(state["sha256"]) == ["rank-0.pt", "rank-1.pt", "trainable.safetensors"]
    trained = load_file(str(out / "train_state" / "trainable.safetensors"))
    assert sorted(trained) == sorted(init)  # exactly the trainable tensors: LoRA, intra table, new-token rows
    assert all(not trained[n].equal(init[n]) for n in init), [n for n in init if trained[n].equal(init[n])]


def _plain_peft_logits(ckpt: Path, model: str, ids):
    """The adapter through plain transformers + peft (no recsys code past the base model)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from recsys_cli.modeling.registry import load_base_model, resolve_model

    tok = AutoTokenizer.from_pretrained(str(ckpt / "tokenizer"))
    base = load_base_model(resolve_model(model))  # the tiny model is a seeded random init (no weights file)
    base.resize_token_embeddings(len(tok), mean_resizing=False)
    peft_model = PeftModel.from_pretrained(base, str(ckpt / "adapter")).eval()
    with torch.no_grad():
        return peft_model(input_ids=ids).logits  # [1, L, V]


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_two_processes_follow_one_and_resume_after_sigkill(stage, reference, toys_data, tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file

    ref, ref_lm, _ = reference
    shape = ["--batch-size", "2"] if stage == 2 else ["--batch-size", "1", "--grad-accum", "2"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run = pretrain(toys_data, full, tiny_model, *shape, "--deepspeed", ZERO[stage])
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["engine"] == f"deepspeed-zero{stage}"
    noise = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert not noise, noise[:5]  # --quiet: no DeepSpeed / torch notices reach the user
    assert_same_curve(curve(full), curve(ref))
    assert_same_adapter(adapter(full), adapter(ref))  # gathered whole under ZeRO-3, not placeholders

    killed = pretrain(toys_data, cut, tiny_model, *shape, "--deepspeed", ZERO[stage], kill_at=KILL_AT)
    assert killed.returncode != 0 and [s for s, _ in curve(cut)] == list(range(1, KILL_AT + 1))
    assert json.loads((cut / "train_state/state.json").read_text())["step"] == KILL_AT // SAVE_EVERY * SAVE_EVERY
    for f in sorted((cut / "train_state").iterdir()):  # all shards; nothing needs unpickling
        assert f.name in ("state.json", "trainable.safetensors") or torch.load(f, weights_only=True)["optimizer"]
    resumed = pretrain(toys_data, cut, tiny_model, *shape, "--deepspeed", ZERO[stage], "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert curve(cut) == curve(full)  # the uninterrupted curve, to the logged digit
    assert_close_tensors(adapter(cut), adapter(full), atol=1e-6)

    ids = torch.tensor([[5, 17, 300, 4242, ref_lm.new_token_ids[0], 42, ref_lm.new_token_ids[2], 7]])  # [1, 8]
    got = _plain_peft_logits(cut, tiny_model, ids)
    with torch.no_grad():
        want = ref_lm.base(input_ids=ids).logits  # the trained single-process model
    assert float((got - want).abs().max()) < 1e-2 * float(want.abs().max())
    extras, ref_extras = load_file(str(cut / "extras.safetensors")), load_file(str(ref / "extras.safetensors"))
    assert_close_tensors(extras, ref_extras, atol=1e-3)  # the intra table and the new-token rows, whole
    assert float(extras["intra_embed.weight"].abs().sum()) > 0  # trained away from its zero init
