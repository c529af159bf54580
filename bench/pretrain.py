"""Pretrain speed: GLM objective vs plain causal-LM LoRA, batch-construction share, and the
embedded SmolLM2 at batch 4 x 256 with and without activation checkpointing (s/step, peak RSS);
`--tiny-loss`: how far the loss falls with recipes/pretrain/tiny-cpu.yaml on the Toys fixture.

    python bench/pretrain.py --data runs/toys                # writes bench/results/pretrain.json
    python bench/pretrain.py --data runs/toys --steps 2 --model fixtures/tiny-model   # quick
    python bench/pretrain.py --tiny-loss                     # 200 steps, recipe vs LoRA only
    python bench/pretrain.py --profile --data runs/toys --config recipes/pretrain/quality-cpu.yaml --steps 4 \
        --label after [--set train.packing=true ...]       # step-time breakdown (training/profile.py)

Each memory configuration runs in its own subprocess so peak RSS is per configuration. Each
mode merges its own keys and checks into bench/results/pretrain.json and keeps the others'.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import HERE, loadavg, machine, write_json
from common import RESULTS as RESULTS_DIR

from recsys_cli.artifacts import schemas

RESULTS = RESULTS_DIR / "pretrain.json"
TINY_RECIPE = HERE.parent / "recipes" / "pretrain" / "tiny-cpu.yaml"
TOYS = HERE.parent / "fixtures" / "amazon" / "toys"
TINY_CHECK = "tiny-cpu.yaml on the Toys fixture"  # prefix of the checks --tiny-loss owns
TINY_TARGET = 0.30  # smoothed loss falls by at least 30% within 200 steps


def save_results(update: dict, checks: list[dict], owns, keep_only: tuple[str, ...] | None = None) -> None:
    """Merge into RESULTS: `update` replaces its keys; `checks` replace the old checks whose name
    `owns(name)` claims; the other checks stay, and the other keys too (only `keep_only` if given)."""
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if keep_only is not None:
        old = {k: v for k, v in old.items() if k in keep_only or k == "checks"}
    kept = [c for c in old.get("checks", []) if not owns(c["name"])]
    old.update(update)
    old["checks"] = kept + checks
    write_json(RESULTS, old)


def _cli(*args) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    subprocess.run(
        [sys.executable, "-m", "recsys_cli.main", *map(str, args)],
        check=True,
        env=env,
        cwd=HERE.parent,
        stdout=subprocess.DEVNULL,
    )


def _smoothed(losses: list[float], w: int) -> tuple[float, float]:
    return sum(losses[:w]) / w, sum(losses[-w:]) / w


def tiny_loss(steps: int) -> dict:
    """Textualize the Toys fixture, then `recsys pretrain` the tiny recipe for `steps` steps, as
    written and with LoRA only (`--modules-to-save none`); first vs last smoothed training loss."""
    import tempfile

    runs = {"machine": machine()}  # its loadavg is the one at the start; loadavg_end is added at the end
    with tempfile.TemporaryDirectory(prefix="recsys-tiny-loss.") as tmp:
        data = Path(tmp) / "toys"
        _cli("textualize", "amazon", "--category", "toys", "--data-dir", TOYS, "--out", data, "--seed", "0", "--quiet")
        for label, extra in (("recipe", []), ("lora_only", ["--modules-to-save", "none"])):
            out = Path(tmp) / label
            t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            _cli(
                "pretrain",
                "--data",
                data,
                "--config",
                TINY_RECIPE,
                "--out",
                out,
                "--max-steps",
                steps,
                "--save-every",
                steps,
                "--eval-every",
                max(1, steps // 4),
                "--quiet",
                *extra,
            )
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            rows = [json.loads(line) for line in (out / schemas.CKPT_METRICS).read_text().splitlines()]
            losses = [r["loss"] for r in rows]
            w = max(1, steps // 10)
            first, last = _smoothed(losses, w)
            runs[label] = {
                "steps": len(rows),
                "window": w,
                "first_loss": losses[0],
                "last_loss": losses[-1],
                "first_smoothed": round(first, 4),
                "last_smoothed": round(last, 4),
                "drop": round(1 - last / first, 4),
                "val_loss": [[r["step"], r["val_loss"]] for r in rows if "val_loss" in r],
                "wall_s": round(time.perf_counter() - t0, 1),
                "cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 1),
            }
            print(label, json.dumps(runs[label]), flush=True)
    runs["machine"]["loadavg_end"] = loadavg()
    return {
        "recipe_file": str(TINY_RECIPE.relative_to(HERE.parent)),
        "data": "fixtures/amazon/toys (textualize --seed 0)",
        "smoothing": "mean of the first vs the last steps/10 training losses",
        "note": "wall_s / cpu_s are whole CLI runs (startup, eval, save) on a machine shared with other jobs "
        "(see loadavg); not speed figures",
        **runs,
    }


def _setup(model: str, data: str, length: int, batch: int, gc: bool):
    import torch

    from recsys_cli.data.special_tokens import SpecialIds
    from recsys_cli.training.data import ExampleStream, load_sources
    from recsys_cli.training.loop import build_model, intra_table_size
    from recsys_cli.training.recipe import load_recipe

    r = load_recipe(
        None,
        [
            ("model.name", model),
            ("train.max_length", length),
            ("train.batch_size", batch),
            ("train.gradient_checkpointing", gc),
            ("lora.dropout", 0.0),
            ("train.precision", "fp32"),
        ],
    )
    torch.manual_seed(0)
    lm, tok, _, _ = build_model(r, "cpu", 64)
    sources = load_sources(data, tok, 8)
    lm, tok, _, _ = build_model(r, "cpu", intra_table_size(r, sources.trie)[0], tok)
    stream = ExampleStream(sources, r, SpecialIds.from_tokenizer(tok))
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-4)
    return r, lm, tok, stream, opt


def _batch(stream, tok, step: int, batch: int, length: int, fixed: bool):
    import torch

    from recsys_cli.training.data import collate

    exs = [stream.example(step * batch + j) for j in range(batch)]
    b = collate(exs, tok.pad_token_id, torch.float32, pad_multiple=length if fixed else 8)
    return b


def _glm_step(lm, opt, b):
    out = lm(b["input_ids"], b["inter"], b["intra"], b["attn_mask_4d"], labels=b["labels"])
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def _causal_step(lm, opt, b):
    import torch

    ids = b["input_ids"]  # [B, L]
    am = (torch.arange(ids.shape[1])[None] < b["lengths"][:, None]).long()  # [B, L]
    labels = ids.masked_fill(am == 0, -100)  # HF shifts internally
    out = lm.base(input_ids=ids, attention_mask=am, labels=labels)
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def ratio(args) -> dict:
    """GLM vs causal on the same model, data and batch, alternating steps in one run."""
    r, lm, tok, stream, opt = _setup(args.model, args.data, args.length, args.batch, False)
    t_glm, t_causal, t_build = [], [], []
    for s in range(args.steps + 1):
        t0 = time.perf_counter()
        b = _batch(stream, tok, s, args.batch, args.length, True)
        t1 = time.perf_counter()
        _glm_step(lm, opt, b)
        t2 = time.perf_counter()
        _causal_step(lm, opt, b)
        t3 = time.perf_counter()
        if s:  # the first step warms up
            t_build.append(t1 - t0)
            t_glm.append(t2 - t1)
            t_causal.append(t3 - t2)
    g, c, bt = sum(t_glm) / len(t_glm), sum(t_causal) / len(t_causal), sum(t_build) / len(t_build)
    return {
        "model": args.model,
        "batch": f"{args.batch}x{args.length}",
        "steps": args.steps,
        "glm_s_per_step": round(g, 3),
        "causal_s_per_step": round(c, 3),
        "glm_throughput_vs_causal": round(c / g, 3),
        "batch_build_s": round(bt, 4),
        "batch_build_share_of_step": round(bt / (bt + g), 4),
    }


def _peak_rss_kib() -> int:
    """This process image's peak RSS (VmHWM); ru_maxrss where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(args) -> dict:
    r, lm, tok, stream, opt = _setup(args.model, args.data, args.length, args.batch, args.gc)
    times = []
    for s in range(args.steps + 1):
        b = _batch(stream, tok, s, args.batch, args.length, True)
        t0 = time.perf_counter()
        _glm_step(lm, opt, b)
        if s:
            times.append(time.perf_counter() - t0)
    # VmHWM, not ru_maxrss: Linux carries the parent's RSS at fork into the child's ru_maxrss
    # across exec, so ru_maxrss reported the parent's (ratio run's) peak for both configurations.
    rss_gb = _peak_rss_kib() / 1024**2  # KiB -> GiB
    return {
        "gradient_checkpointing": args.gc,
        "s_per_step": round(sum(times) / len(times), 2),
        "peak_rss_gb": round(rss_gb, 2),
    }


PROFILE_RESULTS = RESULTS_DIR / "pretrain-profile.json"


def profile(args) -> dict:
    """The real training loop (training/loop.Trainer) for --warmup + 2 x --steps steps with the
    step-time breakdown (training/profile.py), on the recipe --config with --set overrides."""
    import tempfile

    from recsys_cli.training.loop import Trainer
    from recsys_cli.training.profile import profile_trainer, table
    from recsys_cli.training.recipe import load_recipe, parse_set

    stop = args.warmup + 2 * args.steps
    over = [("train.save_every", 10**6), ("eval.eval_every", 10**6)] + parse_set(args.set)
    if args.model:
        over.append(("model.name", args.model))
    r = load_recipe(args.config, over)
    if r.train.max_steps is not None and r.train.max_steps <= stop:
        r.train.max_steps = stop + 1  # no end-of-run evaluation inside the timed steps
    with tempfile.TemporaryDirectory(prefix="recsys-profile.") as tmp:
        trainer = Trainer(r, Path(args.data), Path(tmp) / "ckpt", command="bench-profile")
        res = profile_trainer(trainer, steps=args.steps, warmup=args.warmup)
    print(table(res), flush=True)
    res["recipe"] = str(args.config) if args.config else None
    res["overrides"] = args.set or []
    res["settings"] = {k: v for k, v in r.flat().items() if k.startswith(("train.", "model.name", "lora.rank"))}
    res["machine"] = machine()
    return res


def save_profile(label: str, res: dict, path: Path = PROFILE_RESULTS) -> None:
    """Merge one labelled breakdown into `path` (the others stay); written atomically."""
    old = json.loads(path.read_text()) if path.is_file() else {}
    old[label] = res
    write_json(path, old)


def _check(name: str, value, target: str, ok: bool) -> dict:
    """One check row of the results file."""
    return {"name": name, "value": value, "target": target, "ok": ok}


def _parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Command-line flags; the parser too, for its error()."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="textualized data (speed modes)")
    ap.add_argument("--model", help="base model (default: the recipe's, else embedded)")
    ap.add_argument(
        "--profile", action="store_true", help="step-time breakdown of the real loop (--config, --set, --steps)"
    )
    ap.add_argument("--config", help="recipe YAML for --profile")
    ap.add_argument("--set", action="append", help="recipe override for --profile (repeatable)")
    ap.add_argument("--warmup", type=int, default=1, help="--profile: untimed first steps")
    ap.add_argument("--label", default="profile", help="--profile: key in the results file")
    ap.add_argument("--results", type=Path, default=PROFILE_RESULTS, help="--profile: results JSON")
    ap.add_argument("--steps", type=int, help="timed steps (default 3), or --tiny-loss steps (default 200)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--child", choices=["memory"], help=argparse.SUPPRESS)
    ap.add_argument("--gc", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--tiny-loss", action="store_true", help="loss drop of the tiny recipe (uses --steps, default 200)")
    return ap, ap.parse_args()


def _memory_runs(args) -> list[dict]:
    """One `--child memory` subprocess per checkpointing setting; their JSON lines."""
    runs = []
    for gc in (False, True):
        cmd = [sys.executable, __file__, "--child", "memory", "--data", args.data, "--model", args.model]
        cmd += ["--steps", str(args.steps), "--batch", str(args.batch), "--length", str(args.length)]
        cmd += ["--gc"] if gc else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        runs.append(json.loads(out))
        print(out, flush=True)
    return runs


def _speed_checks(res: dict, model: str) -> list[dict]:
    """Checks of the ratio run and of each memory configuration."""
    r = res["ratio"]
    glm, share = r["glm_throughput_vs_causal"], r["batch_build_share_of_step"]
    checks = [
        _check("GLM / causal-LM LoRA throughput", glm, ">= 0.95", glm >= 0.95),
        _check("batch construction share of step", share, "< 0.05", share < 0.05),
    ]
    for m in res.get("memory", []):
        tag = " (activation checkpointing)" if m["gradient_checkpointing"] else ""
        cap = 3.5 if m["gradient_checkpointing"] else 6.5
        checks.append(_check(f"{model} {r['batch']} s/step{tag}", m["s_per_step"], "<= 15", m["s_per_step"] <= 15))
        rss = m["peak_rss_gb"]
        checks.append(_check(f"{model} {r['batch']} peak RSS GB{tag}", rss, f"<= {cap}", rss <= cap))
    return checks


def main() -> None:
    ap, args = _parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child:
        print(json.dumps(memory_child(args)))
        return
    if args.tiny_loss:
        steps = args.steps or 200
        res = tiny_loss(steps)
        drop = res["recipe"]["drop"]
        name = f"{TINY_CHECK}: smoothed loss drop in {steps} steps"
        checks = [_check(name, drop, f">= {TINY_TARGET}", drop >= TINY_TARGET)]
        save_results({"tiny_loss": res}, checks, lambda n: n.startswith(TINY_CHECK))
        return
    if not args.data:
        ap.error("--data is required (or pass --tiny-loss)")
    if args.profile:
        args.steps = args.steps or 3
        save_profile(args.label, profile(args), args.results)
        return
    args.model = args.model or "embedded"
    args.steps = args.steps or 3
    res = {
        "machine": machine(),
        "note": "CPU only: no GPU in this session, so the single-GPU recipe figures are not measured.",
        "ratio": ratio(args),
    }
    print(json.dumps(res["ratio"], indent=2), flush=True)
    if not args.skip_memory:
        res["memory"] = _memory_runs(args)
    res["targets"] = {
        "glm_throughput_vs_causal": ">= 0.95",
        "batch_build_share_of_step": "< 0.05",
        "s_per_step": "<= 15",
        "peak_rss_gb": "<= 6.5 (<= 3.5 with checkpointing)",
    }
    save_results(res, _speed_checks(res, args.model), lambda n: not n.startswith(TINY_CHECK), keep_only=("tiny_loss",))


if __name__ == "__main__":
    main()
