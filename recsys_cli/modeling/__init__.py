"""The model side shared by `pretrain` and `infer`: RecsysLM (base LM + LoRA + intra-position
table), the float 4D GLM attention mask, and checkpoint save/load.

Heavy: importing this package imports torch. Command modules import it inside functions.
"""

import warnings

# transformers 5 deprecates a name peft still calls; the notice is noise on every LoRA run.
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)

from recsys_cli.modeling.checkpoint import (  # noqa: E402
    add_special_tokens,
    attach_lora,
    load_base_for_inference,
    load_checkpoint,
    prepare_base,
    read_checkpoint_config,
    resize_for_tokens,
    save_checkpoint,
)
from recsys_cli.modeling.mask import build_attention_mask, extend_attention_mask  # noqa: E402
from recsys_cli.modeling.wrapper import POSITIONS, RecsysLM  # noqa: E402

__all__ = [
    "POSITIONS",
    "RecsysLM",
    "add_special_tokens",
    "attach_lora",
    "build_attention_mask",
    "extend_attention_mask",
    "load_base_for_inference",
    "load_checkpoint",
    "prepare_base",
    "read_checkpoint_config",
    "resize_for_tokens",
    "save_checkpoint",
]
