"""Silence third-party noise at its source, once, before any command runs: users see recsys'
own progress and results, not library deprecation notices or conversion progress bars.

    python -c "import recsys_cli.quiet_libraries as q; q.silence(); print('ok')"

Nothing here imports torch or transformers; it only sets warning filters and the
environment variables the libraries read when they are imported later.
"""

from __future__ import annotations

import logging
import os
import warnings

# (category, message regex) of notices that say nothing actionable to a recsys user
_IGNORED = (
    (FutureWarning, r".*is_gradient_checkpointing.*"),  # transformers 5 deprecates a name peft calls
    (DeprecationWarning, r".*torch\.jit\.script.*"),  # deepspeed / peft internals
    (UserWarning, r".*TypedStorage is deprecated.*"),
    (UserWarning, r".*Setting accelerator to CPU.*"),
    (FutureWarning, r".*`torch_dtype` is deprecated.*"),
)


def silence() -> None:
    """Warning filters + library environment defaults (a user's own settings win)."""
    for category, message in _IGNORED:
        warnings.filterwarnings("ignore", message=message, category=category)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # transformers' own logger
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # GGUF conversion, hub bars
    os.environ.setdefault("TQDM_DISABLE", "1")  # any tqdm a library starts (GGUF dequantization)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if _has_cuda_device() else "cpu")  # no "Setting accelerator" notice
    for name in ("DeepSpeed", "deepspeed", "torch.distributed.elastic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _has_cuda_device() -> bool:
    """A cheap CUDA check without importing torch: the NVIDIA driver's device files."""
    return os.path.exists("/dev/nvidia0") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))
