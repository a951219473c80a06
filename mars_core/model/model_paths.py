"""Checks of a model named by a flag (--base, --paraphraser, --encoder), before anything is loaded or stored.

A loader's own error for a bad folder is often about something else (an empty folder makes transformers ask
for sentencepiece or tiktoken); these checks name what is missing in the folder, or say why the name is not a
model at all, in the words of the flag the user typed.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from mars_core.model.encoders import ModelNotFoundError, resolve_model

KINDS = ("classifier", "causal", "encoder")
OPENAI_PREFIX = "openai:"  # handled by the OpenAI-compatible paraphraser; its own check is openai_target
CONFIG_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer_config.json")


def missing_in_folder(folder: Path) -> list[str]:
    """What a save_pretrained folder lacks: a config, weights, a tokenizer (empty when it looks complete)."""
    names = {p.name for p in folder.iterdir()}
    missing = []
    if not names & set(CONFIG_FILES):
        missing.append("config.json")
    if not names & set(WEIGHT_FILES) and not any(n.endswith((".safetensors", ".gguf")) for n in names):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not names & set(TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, or vocab.txt / vocab.json / tokenizer.model)")
    return missing


def check_model(spec: str, flag: str, kind: str) -> None:
    """ValueError naming ``flag`` unless ``spec`` is a packaged alias, a complete local model or a usable hub id."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    text = spec.strip()
    if kind == "causal" and text.startswith(OPENAI_PREFIX):
        return
    if text.startswith("packaged:"):
        try:
            resolved = resolve_model(text)
        except ModelNotFoundError as exc:
            raise ValueError(f"{flag} {spec}: {exc}") from None
        if not isinstance(resolved, Path):
            raise ValueError(f"{flag} {spec}: no packaged model of that name (packaged:minilm is the reward model "
                             "and encoder, packaged:smollm2 the paraphraser)")
        return
    path = Path(os.path.expanduser(text))
    if path.exists():
        _check_local(path, spec, flag, kind)
        return
    if ":" in text:
        scheme = text.split(":", 1)[0]
        hint = " or openai:BASE_URL#MODEL" if kind == "causal" else ""
        raise ValueError(f"{flag} {spec}: unknown kind of model {scheme + ':'!r}; use packaged:..., a local "
                         f"folder, a hub id (org/name){hint}")
    try:
        resolve_model(text)
    except ModelNotFoundError as exc:
        raise ValueError(f"{flag}: {exc}") from None
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False") and not _in_hub_cache(text):
        raise ValueError(f"{flag} {spec}: no such local folder, and as a hub id it is not in the local Hugging Face "
                         "cache while hub access is off (HF_HUB_OFFLINE=1); give a local folder instead")


def _check_local(path: Path, spec: str, flag: str, kind: str) -> None:
    if path.is_file():
        if path.suffix == ".gguf" and kind == "causal":
            return
        raise ValueError(f"{flag} {spec} is a file; give the model's folder (config.json, weights, tokenizer)"
                         + (" or a .gguf file" if kind == "causal" else ""))
    if not any(path.iterdir()):
        raise ValueError(f"{flag} {spec} is an empty folder: a model folder holds config.json, weights "
                         "(model.safetensors) and a tokenizer, as save_pretrained writes them")
    if kind == "causal" and any(p.suffix == ".gguf" for p in path.iterdir()):
        return
    missing = missing_in_folder(path)
    if missing:
        raise ValueError(f"{flag} {spec}: the folder lacks {', '.join(missing)} (a model folder is what "
                         "save_pretrained writes, e.g. a TRL RewardTrainer output)")


def _in_hub_cache(repo_id: str) -> bool:
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False
