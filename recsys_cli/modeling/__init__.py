"""The model side shared by `pretrain` and `infer`: RecsysLM (base LM + LoRA + intra-position
table), the float 4D GLM attention mask, and checkpoint save/load.

Heavy: importing this package imports torch. Command modules import it inside functions.
"""

from recsys_cli.modeling.checkpoint import (
    add_special_tokens,
    attach_lora,
    load_base_for_inference,
    load_checkpoint,
    prepare_base,
    read_checkpoint_config,
    resize_for_tokens,
    save_checkpoint,
)
from recsys_cli.modeling.mask import build_attention_mask, extend_attention_mask
from recsys_cli.modeling.wrapper import POSITIONS, RecsysLM

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
