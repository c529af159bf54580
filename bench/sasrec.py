"""SASRec on the full P5 Toys split: the `recsys baseline sasrec` model (same data path, same
defaults), all items ranked, trained on CPU, test figures under both ranking protocols.

    flock /tmp/recsys-cpu.lock .venv/bin/python bench/sasrec.py                # textualizes to /tmp/toys_full first
    flock /tmp/recsys-cpu.lock .venv/bin/python bench/sasrec.py --run-dir R --include-history
    flock /tmp/recsys-cpu.lock .venv/bin/python bench/sasrec.py --check-refit   # valid split only

Test prompts are scored by the refit model (baselines/sasrec_train.refit: retrained on items[:-1]
for the epoch count early stopping chose); the test figures of the early-stopped items[:-2]
model are printed beside them. `--check-refit` asks the same question one position earlier, on
the validation split alone, with the product's valid protocol (`baseline sasrec --split valid`):
early stopping on items[-3], refit on items[:-2], both models scored on the valid target items[-2].
It writes bench/results/sasrec-refit-check.json.

Protocols (both from the same model): `exclude_history` ranks all items but the user's own
history (the CLI default; P5 sequences never repeat an item), `include_history` ranks every
item (P5 / the paper). The recipe was chosen on the validation split only (SELECTION below,
runs of the same code on the same data); the test split is read once, here.
Target (issue 13): test HR@10 >= 0.085 with <= 20 minutes of CPU training.
Writes bench/results/sasrec.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

from common import RESULTS, ROOT, loadavg, machine, write_json

from recsys_cli.artifacts import schemas

TARGET_HR10 = 0.085  # test HR@10, exclude_history (issue 13); bench/speed.py reads it back from "targets"
TARGET_TRAIN_S = 1200

# Validation runs that chose the recipe (full Toys, 19,412 users, seed 0, 2 threads; filled in
# from the lab runs, valid split only): name -> (changed settings, epochs, train s, valid figures)
SELECTION: list[dict] = [
    # earlier lab runs (2026-12-01, same data and code path, figures on valid): sampled softmax
    # (1,024 negatives) with every item ranked reached valid HR@10 ~0.08; full softmax with the
    # history left out of the ranking was best, so it became the default.
    {
        "name": "default: full softmax, history excluded, lr 2e-3, dropout 0.3, hidden 64, 2 blocks, max_len 50",
        "epochs": 30,
        "best_epoch": 22,
        "train_s": 469.3,
        "valid": {"x_HR@10": 0.0982, "x_NDCG@10": 0.0625},
    },
]


def _textualize(raw: Path, out: Path) -> None:
    from recsys_cli.main import main

    try:
        main(["textualize", "amazon", "--category", "toys", "--data-dir", str(raw), "--out", str(out), "--quiet"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def _parse_args() -> argparse.Namespace:
    """Command-line flags."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "amazon" / "toys",
        help="P5 Toys files (textualized into --run-dir when it has no manifest)",
    )
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/toys_full"))
    ap.add_argument("--include-history", action="store_true", help="train and early-stop for the P5 protocol instead")
    ap.add_argument(
        "--check-refit", action="store_true", help="valid split only: does the refit help? (no test target read)"
    )
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="SASRecConfig overrides")
    ap.add_argument("--out", type=Path, default=RESULTS / "sasrec.json")
    return ap.parse_args()


def _on_epoch(epoch: int, loss: float, row: dict) -> None:
    """Progress line for one training epoch with its valid @10 figures."""
    extra = "  ".join(f"{k[6:]}={v:.4f}" for k, v in row.items() if k.startswith("valid_") and k.endswith("@10"))
    print(f"epoch {epoch:3d}  loss {loss:.4f}  {row['elapsed_s']:.0f}s  {extra}", flush=True)


def _protocol(m: dict, prefix: str) -> dict:
    """The figures whose keys start with `prefix`, prefix dropped, rounded; HR@1 left out."""
    return {k[len(prefix) :]: round(v, 4) for k, v in m.items() if k.startswith(prefix) and "HR@1" != k[len(prefix) :]}


def _check_refit(args, cfg, ctx, users: list, load_before) -> None:
    """--check-refit: early-stopped vs refit model on the valid split; writes sasrec-refit-check.json."""
    from recsys_cli.baselines.context import load_context
    from recsys_cli.baselines.sasrec import rank_metrics
    from recsys_cli.baselines.sasrec_train import best_epoch, fit
    from recsys_cli.data import split as loo

    # the product's valid protocol (`recsys baseline sasrec --split valid`, baselines/sasrec.protocol)
    cfg.refit = True
    valid = fit(
        load_context(args.run_dir, "valid"),
        cfg,
        "valid",
        on_epoch=_on_epoch,
        on_refit_epoch=lambda e, loss, r: print(f"refit {e:3d}  loss {loss:.4f}", flush=True),
    )
    selected, history, model, rows = valid.selected, valid.history, valid.model, valid.refit_history
    seqs = [[ctx.index[i] + 1 for i in ctx.sequences[u]] for u in users]
    hist, tgt = [loo.history(s, "valid") for s in seqs], [s[loo.target_position(len(s), "valid")] for s in seqs]
    figures = {
        name: rank_metrics(m, hist, tgt, cfg.max_len) for name, m in (("early_stopped", selected), ("refit", model))
    }
    check = {
        "stage": "sasrec-refit-check",
        "protocol": "valid split only: train items[:-3], early stop on items[-3]; "
        "refit on items[:-2] for the chosen epochs; both models predict the valid target items[-2] "
        "from items[:-2], full ranking; no test target is read",
        "config": cfg.as_dict(),
        "best_epoch": best_epoch(history, cfg).get("epoch"),
        "epochs_run": len(history),
        "train_seconds": round(history[-1]["elapsed_s"], 1),
        "refit_seconds": round(rows[-1]["elapsed_s"], 1) if rows else 0.0,
        "valid": {
            name: {k: round(v, 4) for k, v in m.items() if k.startswith("x_") or k in ("HR@10", "NDCG@10")}
            for name, m in figures.items()
        },
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "history": history,
        "refit_history": rows,
    }
    write_json(args.out.with_name("sasrec-refit-check.json"), check)
    print(json.dumps({k: v for k, v in check.items() if "history" not in k}, indent=2))


def _fit_test(ctx, cfg, users: list):
    """Train for the test protocol, then score the final and the early-stopped models on test;
    -> (fitted, test figures, early-stopped figures, wall s, test eval s, loadavg after training)."""
    from recsys_cli.baselines.sasrec import rank_metrics
    from recsys_cli.baselines.sasrec_train import fit
    from recsys_cli.data import split as loo

    t0 = time.perf_counter()
    fitted = fit(
        ctx,
        cfg,
        "test",
        on_epoch=_on_epoch,
        on_refit_epoch=lambda e, loss, r: print(f"refit {e:3d}  loss {loss:.4f}  {r['elapsed_s']:.0f}s", flush=True),
    )
    wall_s = time.perf_counter() - t0
    load_after = loadavg()
    seqs = [[ctx.index[i] + 1 for i in ctx.sequences[u]] for u in users]
    t1 = time.perf_counter()
    test_hist, test_tgt = [loo.history(s, "test") for s in seqs], [s[-1] for s in seqs]
    test = rank_metrics(fitted.model, test_hist, test_tgt, cfg.max_len)
    eval_s = time.perf_counter() - t1
    early = (
        rank_metrics(fitted.selected, test_hist, test_tgt, cfg.max_len) if fitted.model is not fitted.selected else test
    )
    return fitted, test, early, wall_s, eval_s, load_after


def _figures(best: dict, test: dict, early: dict) -> dict:
    """Valid figures at the best epoch and both models' test figures, under both protocols."""
    return {
        "valid_at_best_epoch": {
            "exclude_history": _protocol({k[6:]: v for k, v in best.items() if k.startswith("valid_x_")}, ""),
            "include_history": _protocol(
                {k[6:]: v for k, v in best.items() if k.startswith("valid_") and "_x_" not in k}, ""
            ),
        },
        "test": {
            "exclude_history": _protocol(test, "x_"),
            "include_history": _protocol({k: v for k, v in test.items() if not k.startswith("x_")}, ""),
        },
        "test_early_stopped_model": {
            "exclude_history": _protocol(early, "x_"),
            "include_history": _protocol({k: v for k, v in early.items() if not k.startswith("x_")}, ""),
        },
    }


def main() -> None:
    args = _parse_args()

    from recsys_cli.baselines.context import load_context
    from recsys_cli.baselines.sasrec import SASRecConfig
    from recsys_cli.baselines.sasrec_train import best_epoch

    if not (args.run_dir / schemas.MANIFEST).is_file():
        _textualize(args.data_dir, args.run_dir)
    cfg = SASRecConfig(exclude_history=not args.include_history)
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    for kv in args.set:
        key, value = kv.split("=", 1)
        setattr(cfg, key, value in ("1", "true", "True") if types[key] is bool else types[key](value))
    load_before = loadavg()
    ctx = load_context(args.run_dir, "test")
    users = list(ctx.sequences)
    print(f"users {len(users)}  items {len(ctx.items)}  load {load_before}", flush=True)

    if args.check_refit:
        _check_refit(args, cfg, ctx, users, load_before)
        return

    fitted, test, early, wall_s, eval_s, load_after = _fit_test(ctx, cfg, users)
    best = best_epoch(fitted.history, cfg)
    refit_s = fitted.refit_history[-1]["elapsed_s"] if fitted.refit_history else 0.0
    train_s = fitted.history[-1]["elapsed_s"] + refit_s
    result = {
        "stage": "sasrec",
        "run_dir": str(args.run_dir),
        "users": len(users),
        "items_ranked": len(ctx.items),
        "protocol": "leave-one-out (data/split.py); train items[:-2], early stop on valid NDCG@10 of items[-2] "
        f"({'history excluded' if cfg.exclude_history else 'all items'})"
        f"{', refit on items[:-1] for the chosen epochs' if cfg.refit else ''}, "
        "test items[-1] from items[:-1]; full ranking",
        "config": cfg.as_dict(),
        "epochs_run": len(fitted.history),
        "best_epoch": best.get("epoch"),
        "refit_epochs": len(fitted.refit_history),
        "refit_seconds": round(refit_s, 1),
        "train_seconds": round(train_s, 1),
        "wall_seconds_with_validation": round(wall_s, 1),
        "test_eval_seconds": round(eval_s, 1),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        **_figures(best, test, early),
        "selection_on_valid": SELECTION,
        "published": {"eSASRec Toys (HR@10, NDCG@10)": [0.0970, 0.0580], "RecSysLLM paper Toys": [0.0712, 0.0596]},
        "targets": {"test HR@10 (exclude_history)": TARGET_HR10, "train_seconds": TARGET_TRAIN_S},
        "machine": machine(),
        "history": fitted.history,
        "refit_history": fitted.refit_history,
    }
    main_protocol = "exclude_history" if cfg.exclude_history else "include_history"
    result["ok"] = result["test"][main_protocol]["HR@10"] >= TARGET_HR10 and train_s <= TARGET_TRAIN_S
    write_json(args.out, result)
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("history", "refit_history", "selection_on_valid")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
