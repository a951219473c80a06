"""Derived copies of a local paraphrase model, made once and kept in a cache folder in the virtualenv.

Two kinds, each under ``<venv>/mars-cache/<kind>/`` (or the folder its environment variable names):
  * ``hf``: a GGUF model (such as the packaged SmolLM2) dequantised once into an ordinary float32
    safetensors checkpoint with its tokenizer. Why: transformers parses and dequantises a GGUF file
    on every load, 16.6 s for the packaged model (4.2 s its tokenizer, 12.4 s its weights), against
    0.4 s for the very same tensors from safetensors. Every CLI Step, every comparison and every test
    session paid that. The weights are bitwise the ones a GGUF load gives, so rows keep their
    paraphraser name (tests/augment/test_derived_models.py compares every tensor).
  * ``ct2``: the CTranslate2 conversion (ct2_convert.py).

A folder's name carries a digest of the source file (path, size, mtime) and of the code versions that
shape its contents, so a changed model or library makes a new one. Folders are written under a lock
into a temporary folder and renamed into place, so readers see a whole copy or none. Derived data:
``make setup`` builds it, first use builds it when missing, and nothing of it is committed.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from pathlib import Path

from mars_core.model.encoders import ModelNotFoundError, resolve_model, split_gguf

logger = logging.getLogger(__name__)

CACHE_ENVS = {"hf": "MARS_HF_CACHE", "ct2": "MARS_CT2_CACHE"}
PLAIN_META = "mars_plain.json"
FLOAT32_PER_GGUF_BYTE = 8  # 4-bit weights become 32-bit: the most a GGUF file grows (an estimate, before loading)
DISK_RESERVE = 2**30  # left free after a copy


def cache_root(kind: str) -> Path:
    """Where copies of this kind live: its environment variable, else ``mars-cache/<kind>`` in the virtualenv."""
    env = os.environ.get(CACHE_ENVS[kind])
    return Path(env).expanduser() if env else Path(sys.prefix) / "mars-cache" / kind


def cached_dir(kind: str, source: Path, variant: str, *versions: str) -> Path:
    """The cache folder of (source file, variant, versions), named ``<source>-<variant>-<digest>``; cheap:
    the source is stat-ed, not read."""
    stat = source.stat()
    fingerprint = json.dumps([str(source.resolve()), stat.st_size, int(stat.st_mtime), variant, *versions])
    digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:12]
    stem = source.stem if source.is_file() else source.name
    return cache_root(kind) / f"{stem}-{variant}-{digest}"


def build_once(target: Path, is_built: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """``target`` after ``build(staging_folder)`` ran once (one process at a time), unless it is built already."""
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with locked(target.parent / f".{target.name}.lock"):
        if is_built(target):  # another process built it while we waited
            return target
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
        try:
            staged = work / "out"
            build(staged)
            if target.exists():  # a half-written folder from an interrupted run
                shutil.rmtree(target)
            staged.rename(target)  # atomic: readers see a whole copy or none
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the dequantised ("plain") checkpoint of a GGUF model ------------------------------------------------------------
def plain_dir(gguf: Path) -> Path:
    import transformers

    return cached_dir("hf", gguf, "float32", transformers.__version__)


def is_plain(path: Path) -> bool:
    return (path / "model.safetensors").exists() and (path / PLAIN_META).exists()


def ensure_plain(spec: str, progress: Callable[[str], None] = print) -> Path:
    """The folder of the float32 checkpoint of GGUF model ``spec``, dequantising it first when missing."""
    source = resolve_model(spec)
    if not (isinstance(source, Path) and source.suffix == ".gguf"):
        raise ValueError(f"{spec!r} is not a GGUF file: only GGUF models need a dequantised copy")
    target = plain_dir(source)
    if is_plain(target):
        return target

    def build(staged: Path) -> None:
        needed = FLOAT32_PER_GGUF_BYTE * source.stat().st_size
        free = shutil.disk_usage(staged.parent).free
        if free < needed + DISK_RESERVE:  # a large model's float32 copy must not fill the disk
            raise OSError(f"{free / 2**30:.1f} GiB free in {staged.parent}, a float32 copy of {source.name} "
                          f"needs about {needed / 2**30:.1f} GiB")
        progress(f"dequantising {spec} once into {target} (about 20 s; later loads take under a second)")
        started = time.perf_counter()
        tokenizer, model = load_gguf(spec, source)
        write_plain(tokenizer, model, staged, spec)
        progress(f"dequantised in {time.perf_counter() - started:.0f} s")

    return build_once(target, is_plain, build)


def load_gguf(spec: str, source: Path):  # noqa: ANN201 - (tokenizer, model); transformers is imported lazily
    """Tokenizer and float32 model straight from a GGUF file (what ``ensure_plain`` caches)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, gguf_file = split_gguf(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf_file, dtype=torch.float32)
    except OSError as err:
        raise ModelNotFoundError(f"could not load paraphrase model {spec!r} from {source}: {err}") from err
    return tokenizer, model


def write_plain(tokenizer, model, folder: Path, spec: str) -> None:  # noqa: ANN001
    """Config, tokenizer and weights of a GGUF-loaded model as an ordinary checkpoint.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the weights go through
    safetensors directly; a tied output head is left out (loading ties it again, as the config says)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    model.config.quantization_config = None
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    state = model.state_dict()
    tied = getattr(model.config, "tie_word_embeddings", False)
    weights = {k: v.contiguous() for k, v in state.items() if not (tied and k == "lm_head.weight")}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / PLAIN_META).write_text(json.dumps({"model": spec, "dtype": "float32"}, indent=2))


def loadable(spec: str, progress: Callable[[str], None] = logger.info) -> Path | str:
    """What transformers should load for ``spec``: the dequantised copy of a GGUF file (made now if missing),
    else the resolved model itself. A cache that cannot be written costs speed, not the load."""
    resolved = resolve_model(spec)
    if not (isinstance(resolved, Path) and resolved.suffix == ".gguf"):
        return resolved
    try:
        return ensure_plain(spec, progress)
    except ModelNotFoundError:
        raise
    except OSError as err:  # a read-only virtualenv, a full disk
        logger.warning("no dequantised copy of %s (%s): loading the GGUF file itself, ~20 s each time", spec, err)
        return resolved


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Dequantise a GGUF paraphrase model once into the cache.")
    parser.add_argument("--model", default="packaged:smollm2", help="packaged alias or a local .gguf file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(ensure_plain(args.model))


if __name__ == "__main__":
    main()
