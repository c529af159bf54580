"""Command registry. One module per command; modules never import each other and keep heavy
imports (torch, transformers, peft, deepspeed) inside the command function.

COMMANDS: (name, function) pairs registered with `app.command`.
GROUPS:   (name, typer.Typer) pairs for commands with sub-commands.
Add a command: write commands/<name>.py and add one line below.
"""

from __future__ import annotations

from recsys_cli.commands import (
    baseline,
    build_entities,
    infer,
    mask_preview,
    merge,
    pretrain,
    score,
    show,
    textualize,
    tune,
)

COMMANDS = [
    ("build-entities", build_entities.command),
    ("mask-preview", mask_preview.command),
    ("pretrain", pretrain.command),
    ("infer", infer.command),
    ("score", score.command),
    ("tune", tune.command),
    ("merge-predictions", merge.command),
]
GROUPS = [
    ("textualize", textualize.app),
    ("baseline", baseline.app),
    ("show", show.app),
]
