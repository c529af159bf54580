"""fp32 against bf16 on this CPU, side by side in one run, for the embedded SmolLM2-135M:
a prompt prefill (what candidate reranking costs) and a LoRA-shaped training step
(forward + backward under autocast). Writes bench/results/precision.json.

    python bench/precision.py                 # ~2 minutes on 2 cores; run it alone
    python bench/precision.py --tokens 256 --batch 4 --repeats 3

bf16 only pays where the CPU has native bf16 dot products (avx512_bf16 / AMX); the script
prints the flags it found next to the ratio, so a missed speed-up is visible as such.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import RESULTS, machine, write_json


def _cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    wanted = ("avx512_bf16", "amx_bf16", "avx512f", "avx2")
    return [f for f in wanted if f" {f}" in text]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import torch

    from recsys_cli.modeling.checkpoint import prepare_base

    torch.manual_seed(0)
    model, _, _, _ = prepare_base("embedded")
    model.eval()
    vocab = model.get_input_embeddings().weight.shape[0]
    prompt = torch.randint(0, vocab, (1, a.tokens))  # [1, T] one prompt (rerank prefill)
    batch = torch.randint(0, vocab, (a.batch, a.tokens))  # [B, T] one micro-batch of training

    def prefill(dtype):
        def run():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                model(input_ids=prompt, use_cache=True)

        return run

    def train_step(dtype):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
                out = model(input_ids=batch, labels=batch)
            out.loss.backward()
            model.zero_grad(set_to_none=True)

        return run

    rows = {}
    for name, make in (("prefill", prefill), ("train_step", train_step)):
        fp32 = _time(make("fp32"), a.repeats)
        bf16 = _time(make("bf16"), a.repeats)
        rows[name] = {"fp32_s": round(fp32, 3), "bf16_s": round(bf16, 3), "speedup": round(fp32 / bf16, 2)}
        print(f"{name:<11} fp32 {fp32:7.3f} s   bf16 autocast {bf16:7.3f} s   speed-up x{fp32 / bf16:.2f}")
    result = {
        "stage": "precision",
        "model": "embedded SmolLM2-135M",
        "tokens": a.tokens,
        "train_batch": a.batch,
        "repeats": a.repeats,
        "cpu_flags": _cpu_flags(),
        "machine": machine(),
        "results": rows,  # machine(): its loadavg is the one at the end
        "note": "prefill = one prompt forward with KV cache (the rerank's cost); "
        "train_step = forward + backward of a full-parameter "
        "graph (an upper bound on a LoRA step's matmul work)",
    }
    dest = write_json(RESULTS / "precision.json", result)
    print(f"cpu flags: {', '.join(result['cpu_flags']) or 'none found'}; wrote {dest}")


if __name__ == "__main__":
    main()
