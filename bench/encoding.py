"""Encoding throughput of the text features (packaged MiniLM), and what the store's feature cache saves.

    .venv/bin/python bench/encoding.py [--pairs 2000] [--json bench/results/encoding.json]

Encodes the text demo's pairs as a run's epoch 0 does (prompt cut from the left + response, both sides),
with a fresh encoder on an empty store (texts/s), then again with another fresh encoder on the same store:
a second run on the same file reads every vector from the store's cache and encodes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mars_core.model.encoders import TextEncoder  # noqa: E402
from mars_core.model.features import TextFeaturizer, pair_features  # noqa: E402
from mars_core.run.config import DataConfig  # noqa: E402
from mars_core.run.sources import load_source  # noqa: E402
from mars_core.store.sqlite import Store  # noqa: E402


def timed_pass(store: Store, pairs) -> tuple[float, int]:
    encoder = TextEncoder().for_run((store.get_features, store.put_features))
    featurizer = TextFeaturizer(encoder)
    start = time.perf_counter()
    pair_features(featurizer, pairs)
    return time.perf_counter() - start, encoder.encoded_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--json", default="bench/results/encoding.json")
    args = parser.parse_args()
    data = load_source(DataConfig(source="demo:text", n_pairs=args.pairs))
    pairs = [*data.train, *data.test]
    store = Store(Path(tempfile.mkdtemp()) / "encoding.db")
    first_s, first_n = timed_pass(store, pairs)
    second_s, second_n = timed_pass(store, pairs)
    result = {"pairs": len(pairs), "texts_encoded": first_n, "encode_s": round(first_s, 2),
              "texts_per_s": round(first_n / first_s, 1), "second_run_s": round(second_s, 2),
              "second_run_texts_encoded": second_n}
    print("| pairs | texts encoded | seconds | texts/s | second run (cached): seconds, texts encoded |")
    print("|---|---|---|---|---|")
    print(f"| {len(pairs):,} | {first_n:,} | {first_s:.1f} | {first_n / first_s:.0f} | {second_s:.1f}, {second_n} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
