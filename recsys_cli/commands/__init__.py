"""Command registry. One module per command; modules never import each other and keep
heavy imports (torch, transformers, peft, deepspeed) inside the command function.

COMMANDS: (name, function) pairs registered with `app.command`.
GROUPS:   (name, typer.Typer) pairs for commands with sub-commands.
"""

from __future__ import annotations

import importlib

# module name -> attribute kind. Add one line per command module.
_COMMAND_MODULES: list[tuple[str, str]] = [
    ("build-entities", "recsys_cli.commands.build_entities"),
    ("mask-preview", "recsys_cli.commands.mask_preview"),
    ("pretrain", "recsys_cli.commands.pretrain"),
    ("infer", "recsys_cli.commands.infer"),
    ("score", "recsys_cli.commands.score"),
]
_GROUP_MODULES: list[tuple[str, str]] = [
    ("textualize", "recsys_cli.commands.textualize"),
    ("baseline", "recsys_cli.commands.baseline"),
]


def _load(pairs: list[tuple[str, str]], attr: str) -> list:
    found = []
    for name, module in pairs:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # command not written yet
                continue
            raise
        found.append((name, getattr(mod, attr)))
    return found


COMMANDS = _load(_COMMAND_MODULES, "command")
GROUPS = _load(_GROUP_MODULES, "app")
