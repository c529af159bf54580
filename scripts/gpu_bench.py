"""The GPU speed bench behind scripts/gpu-bench.sh: the training step breakdown and throughput at
several batch sizes (bench/pretrain.py --profile on the real loop), and the inference modes
(`recsys infer --json` prompts/s; batched vs one-at-a-time full scoring in-process). Runs with the
machine's own python and torch, the repository on PYTHONPATH; installs and downloads nothing.

    python scripts/gpu_bench.py cuda                                  # one line; exit 2 unless a CUDA GPU is visible
    python scripts/gpu_bench.py run --model DIR_OR_GGUF [--data R] [--work W] [--budget 540] [--out FILE]
    python scripts/gpu_bench.py scoring --checkpoint C --data R      # full scoring: one prompt at a time vs batched
    GPU_BENCH_ALLOW_CPU=1 python scripts/gpu_bench.py run --model fixtures/tiny-model --quick   # the flow, on the CPU

`run` writes bench/results/gpu-<device>.json (`--out` elsewhere). Every stage runs in its own
process under a timeout, so an out-of-memory batch size or a failing mode is recorded and the rest
still runs; stages are skipped, and say so, once the time budget is spent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from gpu_bench_scoring import scoring

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from recsys_cli.artifacts.io import write_json  # noqa: E402

RECIPE = ROOT / "recipes" / "pretrain" / "quality-gpu.yaml"
BEFORE_TOKENS_PER_S = 9300.0  # issue 30: quality-gpu.yaml as written on one H200, median tokens/s
TARGET_MFU = 0.25
FAST = ["train.packing=true", "train.attention=sdpa", "train.log_every=50"]


def cuda() -> int:
    try:
        import torch
    except ImportError as exc:
        print(f"gpu-bench: {sys.executable} cannot import torch ({exc}); nothing was run", file=sys.stderr)
        return 2
    if not torch.cuda.is_available() and os.environ.get("GPU_BENCH_ALLOW_CPU") != "1":
        print(
            f"gpu-bench: no CUDA GPU visible to {sys.executable} (torch {torch.__version__}); nothing was run",
            file=sys.stderr,
        )
        return 2
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"{name}, torch {torch.__version__}")
    return 0


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "device"


def model_dir(model: str, work: Path) -> str:
    """A model directory for every stage: a .gguf file is converted once into WORK/model (the
    embedded model's converter, modeling/registry.py); a directory or 'embedded' is used as is."""
    path = Path(model).expanduser()
    if not (path.is_file() and path.suffix == ".gguf"):
        return model
    target = work / "model"
    if not (target / "model.safetensors").is_file():
        from recsys_cli.modeling import registry

        registry._embedded_gguf = lambda: path.resolve()  # the one converter, pointed at this file
        registry._convert_embedded(target)
    return str(target)


class Stages:
    """Runs commands under a shared time budget; records each one's seconds, status and output."""

    def __init__(self, budget: float, log_dir: Path):
        self.t0, self.budget, self.logs = time.monotonic(), budget, log_dir
        path = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")
        self.env = dict(
            os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=path
        )
        log_dir.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.t0)

    def run(self, name: str, args: list[str], timeout: float) -> dict:
        if self.left() < 15:
            print(f"SKIP  {name}: time budget spent", flush=True)
            return {"status": "skipped: time budget spent"}
        t0 = time.monotonic()
        log = self.logs / (slug(name) + ".log")
        try:
            p = subprocess.run(
                [sys.executable, *args],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=min(timeout, self.left()),
            )
            status = "ok" if not p.returncode else f"failed (exit {p.returncode}): {_last_error(p.stderr + p.stdout)}"
            out = p.stdout
            log.write_text(p.stdout + "\n--- stderr\n" + p.stderr)
        except subprocess.TimeoutExpired:
            status, out = "timed out", ""
        dt = round(time.monotonic() - t0, 1)
        verdict = "PASS" if status == "ok" else "FAIL"
        print(f"{verdict}  {name} ({dt} s){'' if status == 'ok' else ': ' + status}", flush=True)
        return {"status": status, "seconds": dt, "stdout": out}


def cli(*args: str) -> list[str]:
    """python arguments for one recsys command."""
    return ["-m", "recsys_cli.main", *args]


def _last_error(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    hits = [ln for ln in lines if re.match(r"^(Error|\w*Error|RuntimeError|torch\.\w+\.\w*Error)", ln.strip())]
    return (hits[-1] if hits else (lines[-1] if lines else "no output")).strip()[:300]


def training(st: Stages, model: str, data: str, work: Path, quick: bool) -> dict:
    """The breakdown of quality-gpu.yaml as written, then the fast settings at several batch sizes."""
    results = work / "profile.json"
    steps, warm = ("2", "1") if quick else ("6", "2")
    configs = [
        ("recipe", [], warm),
        ("fast-b32", FAST, warm),
        ("fast-b128", FAST + ["train.batch_size=128"], warm),
        ("fast-b512", FAST + ["train.batch_size=512"], warm),
        ("fast-b128-compile", FAST + ["train.batch_size=128", "train.compile=true"], "5"),
    ]
    if quick:
        configs = [(n, s + ["train.max_length=64", "train.batch_size=4"], w) for n, s, w in configs[:2]]
    out = {}
    for name, sets, warmup in configs:
        args = [
            "bench/pretrain.py",
            "--profile",
            "--data",
            data,
            "--config",
            str(RECIPE),
            "--model",
            model,
            "--steps",
            steps,
            "--warmup",
            warmup,
            "--label",
            name,
            "--results",
            str(results),
        ]
        for s in sets:
            args += ["--set", s]
        res = st.run(f"train {name}", args, 240)
        row = {"settings": sets, "status": res["status"], "seconds": res.get("seconds")}
        if res["status"] == "ok":
            prof = json.loads(results.read_text())[name]
            row.update({k: v for k, v in prof.items() if k not in ("rows", "machine")})
        out[name] = row
    return out


def _infer(st: Stages, name: str, args: list[str], timeout: float) -> dict:
    res = st.run(name, cli("infer", *args, "--overwrite", "--json", "--quiet"), timeout)
    row = {"args": args, "status": res["status"], "seconds": res.get("seconds")}
    if res["status"] == "ok":
        summary = json.loads(res["stdout"])
        row["modes"] = {
            m: {"prompts": v["prompts"], "prompts_per_s": round(v["prompts_per_s"], 2)}
            for m, v in summary["modes"].items()
        }
    return row


def _checkpoint_and_sasrec(st: Stages, model: str, data: str, ckpt: Path, pred: Path, k: str, quick: bool) -> dict:
    """Train the short checkpoint into `ckpt` and SASRec's top k into `pred`; their statuses."""
    n_steps = "3" if quick else "20"
    sets = [a for s in FAST + (["train.batch_size=4", "train.max_length=64"] if quick else []) for a in ("--set", s)]
    train = cli(
        "pretrain",
        "--data",
        data,
        "--config",
        str(RECIPE),
        "--model",
        model,
        "--out",
        str(ckpt),
        "--max-steps",
        n_steps,
        "--save-every",
        n_steps,
        "--eval-every",
        n_steps,
        "--overwrite",
        "--quiet",
        *sets,
    )
    out = {"checkpoint": st.run("pretrain checkpoint", train, 300)["status"]}
    sasrec = cli(
        "baseline",
        "sasrec",
        "--data",
        data,
        "--out",
        str(pred / "sasrec.parquet"),
        "--top-k",
        k,
        "--max-epochs",
        "2" if quick else "5",
        "--seed",
        "0",
        "--quiet",
    )
    out["sasrec"] = st.run(f"sasrec top {k}", sasrec, 180)["status"]
    return out


def inference(st: Stages, model: str, data: str, work: Path, quick: bool) -> dict:
    """A short checkpoint and SASRec's top 50, then every item-scoring mode at two batch sizes."""
    ckpt, pred = work / "ckpt", work / "pred"
    pred.mkdir(exist_ok=True)
    k = "10" if quick else "50"
    out = _checkpoint_and_sasrec(st, model, data, ckpt, pred, k, quick)
    if out["checkpoint"] != "ok":
        return out
    limit = {"walker": "8" if quick else "256", "full": "4" if quick else "128"}
    base = ["--data", data, "--checkpoint", str(ckpt), "--split", "test", "--precision", "auto"]
    rer = ["--family", "sequential", "--candidates-from", str(pred / "sasrec.parquet"), "--rerank-k", k]
    runs = []
    direct = ["--family", "direct", "--kind", "rank"]
    full = ["--item-scoring", "full", "--limit", limit["full"]]
    listwise = ["--item-scoring", "listwise", "--limit", limit["walker"]]
    for bs in ("8", "32") if not quick else ("4",):  # batch 8 (infer's default) first: the budget may end at 32
        if out["sasrec"] == "ok":
            runs += [
                (f"rerank {k} constrained b{bs}", rer + ["--limit", limit["walker"]], bs),
                (f"rerank {k} full b{bs}", rer + full, bs),
                (f"rerank 20 listwise b{bs}", rer[:-1] + ["20"] + listwise, bs),
            ]
        runs += [
            (f"direct 100 constrained b{bs}", direct + ["--limit", limit["walker"]], bs),
            (f"direct 100 full b{bs}", direct + full, bs),
        ]
    scoring = [
        "scripts/gpu_bench.py",
        "scoring",
        "--checkpoint",
        str(ckpt),
        "--data",
        data,
        "--prompts",
        "8" if quick else "64",
    ]
    runs.insert(len(runs) // 2 if not quick else len(runs), ("full_scoring_batched", scoring, None))
    for name, args, bs in runs:
        if bs is None:  # in-process: one prompt at a time against batched
            res = st.run("full scoring one-at-a-time vs batched", args, 180)
            out[name] = json.loads(res["stdout"]) if res["status"] == "ok" else {"status": res["status"]}
            continue
        args = base + args + ["--batch-size", bs, "--out", str(pred / (slug(name) + ".parquet"))]
        out[name] = _infer(st, name, args, 120)
    return out


def checks(train: dict) -> list[dict]:
    """Issue 30's GPU targets, on the fastest batch size that ran."""
    ran = [v for v in train.values() if v.get("tokens_per_s")]
    if not ran:
        return [{"name": "training ran", "value": False, "target": True, "ok": False}]
    best = max(ran, key=lambda v: v["tokens_per_s"])
    mfu = best.get("mfu") or 0.0
    gain = best["tokens_per_s"] / BEFORE_TOKENS_PER_S
    return [
        {
            "name": "MFU of the fastest configuration (6 * params * tokens / s over the dense bf16 peak)",
            "value": mfu,
            "target": f">= {TARGET_MFU}",
            "ok": mfu >= TARGET_MFU,
        },
        {
            "name": f"tokens/s over issue 30's {BEFORE_TOKENS_PER_S:.0f}",
            "value": round(gain, 2),
            "target": ">= 5",
            "ok": gain >= 5,
        },
    ]


def run(args) -> int:
    import platform

    import torch

    if cuda() != 0:
        return 2
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    work = Path(args.work or f"/tmp/recsys-gpu-bench-{os.getpid()}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    st = Stages(args.budget, work / "logs")
    model = model_dir(args.model, work)
    data = args.data
    if data is None:
        data = str(work / "toys")
        if not (work / "toys" / "entities.parquet").is_file():
            textualize = cli(
                "textualize",
                "amazon",
                "--category",
                "toys",
                "--data-dir",
                "fixtures/amazon/toys",
                "--out",
                data,
                "--seed",
                "0",
                "--quiet",
            )
            st.run("textualize toys (fixture)", textualize, 120)
            st.run("build-entities", cli("build-entities", "--data", data, "--model", model, "--quiet"), 120)
    res = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "model": args.model,
        "data": data,
        "recipe": str(RECIPE.relative_to(ROOT)),
        "fast_settings": FAST,
        "before_tokens_per_s": BEFORE_TOKENS_PER_S,
    }
    res["training"] = training(st, model, data, work, args.quick)
    res["inference"] = inference(st, model, data, work, args.quick)
    res["checks"] = checks(res["training"])
    res["wall_s"] = round(time.monotonic() - st.t0, 1)
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"gpu-{slug(device)}.json"
    write_json(res, out)  # atomic (artifacts/io.py -> outputs.atomic_file)
    print(f"gpu-bench: {device}, {res['wall_s']} s; wrote {out}")
    for c in res["checks"]:
        print(f"{'PASS' if c['ok'] else 'MISS'}  {c['name']}: {c['value']} (target {c['target']})")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("cuda")
    r = sub.add_parser("run")
    r.add_argument("--model", default="embedded", help="model directory, a .gguf file, or 'embedded'")
    r.add_argument("--data", help="textualized data (default: the Toys fixture, textualized into WORK)")
    r.add_argument("--work", help="scratch directory (default /tmp/recsys-gpu-bench-PID)")
    r.add_argument("--budget", type=float, default=540, help="seconds for all stages (default 540)")
    r.add_argument("--out", help="results JSON (default bench/results/gpu-<device>.json)")
    r.add_argument("--quick", action="store_true", help="tiny sizes: checks the flow (CPU smoke)")
    s = sub.add_parser("scoring")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--prompts", type=int, default=64)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--precision", default="auto", help="fp32, bf16 or auto (bf16 where native)")
    args = ap.parse_args()
    if args.cmd == "cuda":
        return cuda()
    if args.cmd == "scoring":
        print(json.dumps(scoring(args)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
