"""The model side shared by `pretrain` and `infer`:

    registry.py     where base models come from (--model), fingerprints
    wrapper.py      RecsysLM: base LM (+ LoRA) + the intra-position table (imports torch)
    mask.py         the float 4D GLM attention mask
    lora.py         LoRA targets, modules trained in full, the peft model
    checkpoint.py   saving and loading checkpoints (C/)

Import the submodules directly; this package imports nothing heavy, so `recsys --help`
and `recsys build-entities` (which needs only the registry) never load torch.
"""
