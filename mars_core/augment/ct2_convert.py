"""Convert a local causal LM (a GGUF file such as the packaged SmolLM2, or a transformers folder) to CTranslate2.

    python -m mars_core.augment.ct2_convert [--model packaged:smollm2] [--quantization int8]

Done once: ``make setup`` runs it, and the CTranslate2 paraphraser runs it on first use when the
cache is missing. The converted model lives in a cache folder inside the virtualenv
(``<venv>/mars-cache/ct2/``, or ``$MARS_CT2_CACHE``; derived_models.py): it is derived data, rebuilt by
the same code, never committed. Its name carries a digest of the source file (path, size, mtime), the
quantisation and the CTranslate2 version, so a changed model or engine converts anew.

Why via transformers: CTranslate2 cannot read GGUF. A GGUF model's dequantised float32 copy
(derived_models.py, made first if missing) is what CTranslate2's ``TransformersConverter`` quantises
(int8 by default). The tokenizer and the end-of-sequence ids are written beside the converted model,
so loading it needs no GGUF parsing either.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from mars_core.augment.derived_models import build_once, cached_dir, ensure_plain
from mars_core.model.encoders import ModelNotFoundError, resolve_model

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "float16", "bfloat16", "int8_float16")
META = "mars_ct2.json"


class ConversionError(ValueError):
    """CTranslate2 cannot convert this model; the message says so and names the fallback."""


def source_of(spec: str) -> Path:
    """The local file or folder of a model spec; hub ids are not converted (nothing is downloaded)."""
    resolved = resolve_model(spec)
    if not isinstance(resolved, Path):
        raise ConversionError(f"paraphraser {spec!r} is a hub id, not a local model: the ct2 engine converts only "
                              "local models; use --paraphrase-engine transformers")
    return resolved


def converted_dir(spec: str, quantization: str = "int8") -> Path:
    """The cache folder of (model, quantisation, CTranslate2 version); cheap, no model is read."""
    import ctranslate2

    return cached_dir("ct2", source_of(spec), quantization, ctranslate2.__version__)


def is_converted(path: Path) -> bool:
    return (path / "model.bin").exists() and (path / META).exists()


def ensure_converted(spec: str, quantization: str = "int8", progress=print) -> Path:  # noqa: ANN001
    """The converted model's folder, converting first if the cache lacks it (one process at a time)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    target = converted_dir(spec, quantization)

    def build(staged: Path) -> None:
        progress(f"converting {spec} to CTranslate2 ({quantization}) into {target}: once, about half a minute")
        started = time.perf_counter()
        _convert(spec, staged, quantization, progress)
        progress(f"converted in {time.perf_counter() - started:.0f} s")

    return build_once(target, is_converted, build)


def _convert(spec: str, staged: Path, quantization: str, progress) -> None:  # noqa: ANN001
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = source_of(spec)
    if source.suffix == ".gguf":  # CTranslate2 reads ordinary checkpoints: the dequantised copy (derived_models.py)
        source = ensure_plain(spec, progress)
    progress(f"  loading {source} with transformers")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    except OSError as err:
        raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {source}: {err}") from err
    eos = {tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)}
    progress(f"  quantising to {quantization} with CTranslate2")
    try:
        _converter(str(source), model, tokenizer).convert(str(staged), quantization=quantization)
    except (ValueError, NotImplementedError, KeyError) as err:
        raise ConversionError(f"CTranslate2 cannot convert paraphrase model {spec!r}: {err}; "
                              "use --paraphrase-engine transformers") from err
    del model
    tokenizer.save_pretrained(staged)
    meta = {"model": spec, "quantization": quantization, "eos_ids": sorted(i for i in eos if i is not None),
            "chat_template": tokenizer.chat_template is not None}
    (staged / META).write_text(json.dumps(meta, indent=2))


def _converter(path: str, model, tokenizer):  # noqa: ANN001, ANN202 - defined here: ctranslate2 is imported lazily
    from ctranslate2.converters import TransformersConverter

    class LoadedConverter(TransformersConverter):
        """TransformersConverter over a model and tokenizer already in memory."""

        def __init__(self, path: str, model, tokenizer) -> None:  # noqa: ANN001
            super().__init__(path)
            self._loaded = (model, tokenizer)

        def load_model(self, model_class, model_name_or_path, **kwargs):  # noqa: ANN001, ANN201, ARG002
            return self._loaded[0]

        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):  # noqa: ANN001, ANN201, ARG002
            return self._loaded[1]

    return LoadedConverter(path, model, tokenizer)


def _as_list(value) -> list:  # noqa: ANN001
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="packaged:smollm2", help="packaged alias or local path (folder or .gguf)")
    parser.add_argument("--quantization", default="int8", choices=QUANTIZATIONS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = ensure_converted(args.model, args.quantization)
    print(path)


if __name__ == "__main__":
    main()
