"""Convert a local causal LM (a GGUF file such as the packaged SmolLM2, or a transformers folder) to CTranslate2.

    python -m mars_core.augment.ct2_convert [--model packaged:smollm2] [--quantization int8]

Done once: ``make setup`` runs it, and the CTranslate2 paraphraser runs it on first use when the
cache is missing. The converted model lives in a cache folder inside the virtualenv
(``<venv>/mars-cache/ct2/``, or ``$MARS_CT2_CACHE``): it is derived data, rebuilt by the same
code, never committed. Its name carries a digest of the source file (path, size, mtime), the
quantisation and the CTranslate2 version, so a changed model or engine converts anew.

Why via transformers: CTranslate2 cannot read GGUF. transformers dequantises the GGUF weights to
float32 (``gguf_file=``), we save that as an ordinary checkpoint in a temporary folder, and
CTranslate2's ``TransformersConverter`` quantises it (int8 by default). The tokenizer and the
end-of-sequence ids are written beside the converted model, so loading it needs no GGUF parsing.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mars_core.model.encoders import ModelNotFoundError, resolve_model, split_gguf

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "float16", "bfloat16", "int8_float16")
META = "mars_ct2.json"


class ConversionError(ValueError):
    """CTranslate2 cannot convert this model; the message says so and names the fallback."""


def cache_root() -> Path:
    """Where converted models live: $MARS_CT2_CACHE, else ``mars-cache/ct2`` inside the running virtualenv."""
    env = os.environ.get("MARS_CT2_CACHE")
    return Path(env).expanduser() if env else Path(sys.prefix) / "mars-cache" / "ct2"


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

    source = source_of(spec)
    stat = source.stat()
    fingerprint = json.dumps([str(source.resolve()), stat.st_size, int(stat.st_mtime), quantization,
                              ctranslate2.__version__])
    digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]
    stem = source.stem if source.is_file() else source.name
    return cache_root() / f"{stem}-{quantization}-{digest}"


def is_converted(path: Path) -> bool:
    return (path / "model.bin").exists() and (path / META).exists()


def ensure_converted(spec: str, quantization: str = "int8", progress=print) -> Path:  # noqa: ANN001
    """The converted model's folder, converting first if the cache lacks it (one process at a time)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    target = converted_dir(spec, quantization)
    if is_converted(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f".{target.name}.lock"):
        if is_converted(target):  # another process converted it while we waited
            return target
        progress(f"converting {spec} to CTranslate2 ({quantization}) into {target}: once, about half a minute")
        started = time.perf_counter()
        _convert(spec, target, quantization, progress)
        progress(f"converted in {time.perf_counter() - started:.0f} s")
    return target


@contextlib.contextmanager
def _locked(path: Path):  # noqa: ANN202
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(spec: str, target: Path, quantization: str, progress) -> None:  # noqa: ANN001
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, gguf_file = split_gguf(source_of(spec))
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        progress("  loading with transformers" + (" (dequantising the GGUF weights)" if gguf_file else ""))
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
        except OSError as err:
            raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {directory}: {err}") from err
        eos = {tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)}
        # transformers will not save a GGUF-loaded model, so the converter gets the loaded model itself;
        # it reads only the config (written here, without the GGUF quantisation note) from disk.
        plain = work / "hf"
        model.config.quantization_config = None
        model.config.save_pretrained(plain)
        tokenizer.save_pretrained(plain)
        progress(f"  quantising to {quantization} with CTranslate2")
        staged = work / "ct2"
        try:
            _converter(str(plain), model, tokenizer).convert(str(staged), quantization=quantization)
        except (ValueError, NotImplementedError, KeyError) as err:
            raise ConversionError(f"CTranslate2 cannot convert paraphrase model {spec!r}: {err}; "
                                  "use --paraphrase-engine transformers") from err
        del model
        tokenizer.save_pretrained(staged)
        meta = {"model": spec, "quantization": quantization, "eos_ids": sorted(i for i in eos if i is not None),
                "chat_template": tokenizer.chat_template is not None}
        (staged / META).write_text(json.dumps(meta, indent=2))
        if target.exists():  # a half-written folder from an interrupted run
            shutil.rmtree(target)
        staged.rename(target)  # atomic: readers see a whole model or none
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
