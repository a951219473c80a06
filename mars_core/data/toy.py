"""The 2-D feature toy: pairs of explicit vectors φ ∈ R^d with a linear gold reward r*(φ) = w*ᵀφ, for teaching.

Vectors are written into the pair texts as ``"φ=[0.1234, -0.5678]"``; ``ToyParaphraser`` adds small Gaussian
noise. Labels follow ``suites.bradley_terry_labels``.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence

import numpy as np

from mars_core.data.pairs import PreferencePair
from mars_core.data.suites import (
    SuiteDraw,
    SuiteSettings,
    bradley_terry_labels,
    label_streams,
    real_number,
    whole_number,
)

TOY_PROMPT = "toy"  # prefix: pair i has the prompt "toy i" (each pair is its own context; see toy_suite_with_info)
TOY_DECIMALS = 4
_TOY_RE = re.compile(r"^\s*(?:φ|phi)\s*=\s*\[(.*)\]\s*$", re.DOTALL)


def toy_gold_weights(dim: int = 2) -> np.ndarray:
    """w*_k = 2·(−1/2)^k: [2, −1] in two dimensions, a decaying tail beyond."""
    dim = whole_number(dim, "dim", 1)
    return 2.0 * (-0.5) ** np.arange(dim)


def _format_cells(values: Sequence[float]) -> str:
    cells = (f"{x:.{TOY_DECIMALS}f}" for x in values)
    return "φ=[" + ", ".join(c[1:] if c[0] == "-" and not c.strip("-0.") else c for c in cells) + "]"  # no -0.0000


def format_toy_vector(v: Sequence[float] | np.ndarray) -> str:
    """'φ=[0.1234, -0.5678]' with TOY_DECIMALS decimals; parse_toy_vector inverts it at that precision."""
    arr = np.asarray(v, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"a toy vector must be a non-empty 1-D sequence of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"a toy vector must be finite, got {arr.tolist()}")
    return _format_cells(arr.tolist())


def parse_toy_vector(text: str) -> np.ndarray:
    """The float vector in a 'φ=[...]' text; ValueError with the offending text otherwise."""
    match = _TOY_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"not a toy vector (expected 'φ=[x1, x2, ...]'): {str(text)[:80]!r}")
    try:
        values = [float(cell) for cell in match.group(1).split(",")]
    except ValueError:
        raise ValueError(f"toy vector has a cell that is not a number: {text[:80]!r}") from None
    if not all(map(math.isfinite, values)):
        raise ValueError(f"toy vector must be finite: {text[:80]!r}")
    return np.array(values, dtype=float)


def toy_features(texts: Sequence[str], dim: int | None = None) -> np.ndarray:
    """Stack toy texts into an (N, d) array; all must share one dimension (``dim`` if given)."""
    vectors = [parse_toy_vector(t) for t in texts]
    dims = {v.size for v in vectors} | ({dim} if dim is not None else set())
    if len(dims) > 1:
        raise ValueError(f"toy vectors have different dimensions {sorted(dims)}")
    if not vectors:
        return np.zeros((0, dim or 0))
    return np.stack(vectors)


def toy_gold_reward(texts: Sequence[str]) -> np.ndarray:
    """r*(φ) = w*ᵀφ for each toy text."""
    features = toy_features(texts)
    return features @ toy_gold_weights(features.shape[1]) if len(features) else np.zeros(0)


def toy_suite_with_info(
    n_pairs: int = 200,
    dim: int = 2,
    noise: float = 0.0,
    seed: int = 0,
    temperature: float = 1.0,
    spread: float = 0.5,
) -> SuiteDraw:
    """Toy pairs with φa, φb ~ N(0, spread²·I) and labels from BT on w*ᵀ(φa − φb), then flips.

    spread = 0.5 gives gold margins with std ≈ 1.6 in two dimensions: a mix of easy and near-boundary pairs.
    Margins are computed from the printed (rounded) vectors, so they agree exactly with the texts.
    Each pair gets its own prompt ("toy 0", "toy 1", ...): the toy has no shared context, and a splitter that
    keeps a prompt's pairs together (no prompt on both sides of a split) must be able to hold pairs out.
    """
    s = SuiteSettings(n_pairs=n_pairs, noise=noise, seed=seed, temperature=temperature)
    dim = whole_number(dim, "dim", 1)
    if not (real_number(spread) and math.isfinite(spread) and spread > 0):
        raise ValueError(f"spread is the std of the feature vectors and must be > 0, got {spread!r}")
    rng_draw, rng_bt, rng_flip = label_streams(s.seed)
    raw = rng_draw.normal(0.0, spread, size=(2, s.n_pairs, dim))
    texts_a = [_format_cells(v) for v in raw[0].tolist()]
    texts_b = [_format_cells(v) for v in raw[1].tolist()]
    w = toy_gold_weights(dim)
    gold_ab = (toy_features(texts_a) - toy_features(texts_b)) @ w
    a_chosen, flipped, bt_disagrees = bradley_terry_labels(gold_ab, s.temperature, s.noise, rng_bt, rng_flip)
    pairs = [
        PreferencePair(
            id=f"toy:{i}",
            prompt=f"{TOY_PROMPT} {i}",
            chosen=texts_a[i] if a_chosen[i] else texts_b[i],
            rejected=texts_b[i] if a_chosen[i] else texts_a[i],
            source="demo-toy",
            gold_margin=float(gold_ab[i] if a_chosen[i] else -gold_ab[i]),
        )
        for i in range(s.n_pairs)
    ]
    return SuiteDraw(pairs=pairs, flipped=flipped, bt_disagrees=bt_disagrees, families=("toy",) * s.n_pairs)


def toy_suite(
    n_pairs: int = 200,
    dim: int = 2,
    noise: float = 0.0,
    seed: int = 0,
    temperature: float = 1.0,
    spread: float = 0.5,
) -> list[PreferencePair]:
    """Feature-vector pairs for teaching: the gold reward is linear, w* = toy_gold_weights(dim)."""
    return toy_suite_with_info(n_pairs, dim, noise, seed, temperature, spread).pairs


class ToyParaphraser:
    """Paraphrases a toy text by adding Gaussian noise of std ``sigma`` to its vector.

    Why it is label-preserving: perturbing both sides of a pair moves its gold margin by
    N(0, 2σ²‖w*‖²); with the defaults (σ = 0.05, spread = 0.5, d = 2) that std is ≈ 0.16 against
    typical |g| ≈ 1.3, so only pairs already within ~0.3 of the boundary can change sign, which is the same
    risk a real paraphraser runs on near-ties. ``keep_gold=True`` projects the noise orthogonal to w*, so the
    gold reward is unchanged (up to rounding) and the paraphrase varies only what the gold ignores; in one
    dimension nothing is left to vary and no paraphrases are returned.
    Each text's paraphrases depend only on (text, seed, settings), not on its position in the batch, so
    they can be cached by (name, text, seed).
    """

    def __init__(self, sigma: float = 0.05, keep_gold: bool = False) -> None:
        if not (real_number(sigma) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma is the std of the perturbation and must be > 0, got {sigma!r}")
        self.sigma = float(sigma)
        self.keep_gold = bool(keep_gold)
        self.name = f"toy-gaussian(sigma={self.sigma:g},keep_gold={self.keep_gold})"

    def paraphrase(self, texts: list[str], n: int, seed: int) -> list[list[str]]:
        """For each text, up to n distinct perturbed texts (never the input itself)."""
        n = whole_number(n, "n", 0)
        seed = whole_number(seed, "seed", 0)
        return [self._one(text, n, seed) for text in texts]

    def _one(self, text: str, n: int, seed: int) -> list[str]:
        phi = parse_toy_vector(text)
        rng = np.random.default_rng([seed, zlib.crc32(text.encode("utf-8"))])
        noise = rng.normal(0.0, self.sigma, size=(n, phi.size))
        if self.keep_gold:
            w = toy_gold_weights(phi.size)
            noise -= np.outer(noise @ w, w) / (w @ w)
        original = _format_cells(phi.tolist())
        out: list[str] = []
        for row in (phi + noise).tolist():  # finite: phi was parsed as finite, the noise is Gaussian
            candidate = _format_cells(row)
            if candidate != original and candidate not in out:
                out.append(candidate)
        return out
