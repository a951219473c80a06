"""The sentence encoder: cutting long prompts on purpose, without transformers' length warning."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_WARNING_KEY = "sequence-length-is-longer-than-the-specified-maximum"


@pytest.mark.slow
def test_truncating_a_long_prompt_keeps_its_end_and_the_log_clean(text_encoder, transformers_warnings):
    words = " ".join(f"word{i}" for i in range(400))  # well over MiniLM's 256 word pieces
    text_encoder.tokenizer.deprecation_warnings.pop(_WARNING_KEY, None)  # it warns once per tokenizer
    cut = text_encoder.truncate_left(words, 96)
    text_encoder.encode([words])
    assert not [m for m in transformers_warnings if "sequence length" in m], "no 'indexing errors' warning"
    text_encoder.tokenizer(words, add_special_tokens=False)  # control: the same text untruncated warns
    assert [m for m in transformers_warnings if "sequence length" in m]
    assert cut.endswith("word399") and "word0 " not in cut
    assert len(text_encoder.tokenizer(cut, add_special_tokens=False)["input_ids"]) <= 96
    assert text_encoder.truncate_left("short text", 96) == "short text"


@pytest.mark.slow
def test_encoding_reports_progress_and_a_second_encoder_on_the_same_store_encodes_nothing(tmp_path):
    """Creating a run on a big file shows encoding progress; the store's feature cache (keyed by the text)
    means a second run on the same file, even after a restart (a fresh encoder), runs no text through the net."""
    from mars_core.model import encoders
    from mars_core.model.encoders import TextEncoder
    from mars_core.store.sqlite import Store

    store = Store(tmp_path / "features.db")
    texts = [f"response number {i} about topic {i % 7}" for i in range(2 * encoders.ENCODE_CHUNK + 10)]
    first = TextEncoder().for_run((store.get_features, store.put_features))  # shares nothing with text_encoder
    reports: list[tuple[str, int, int, str]] = []
    with first.reporting(lambda *r: reports.append(r)):
        vectors = first.encode(texts)
    chunk = encoders.ENCODE_CHUNK
    assert [r[1] for r in reports] == [chunk, 2 * chunk, len(texts)] and all(r[2] == len(texts) for r in reports)
    assert all(r[0] == "encoding" and r[3].endswith("texts/s") for r in reports)
    assert first.encoded_count == len(texts) and first.listener is None

    again = TextEncoder().for_run((store.get_features, store.put_features))  # a new process: the same store
    assert (again.encode(texts) == vectors).all() and again.encoded_count == 0
    assert not again.loaded, "every text was cached: the network never loaded (a page visit does not wait for it)"
    assert again.dim == first.dim == vectors.shape[1] and not again.loaded  # read from the folder's config
    again.encode(["a text nobody encoded yet"])
    assert again.loaded and again.encoded_count == 1


def test_the_folder_config_gives_the_networks_own_size(text_encoder):
    from mars_core.model.encoders import folder_dim

    text_encoder.encode(["load the network"])
    assert folder_dim(text_encoder._path) == text_encoder._model.get_embedding_dimension()
    assert folder_dim(text_encoder._path.parent) is None  # not a sentence-transformers folder: ask the network


def test_the_standalone_tokenizer_cuts_prompts_as_the_networks_own_tokenizer_does(text_encoder):
    """Cache keys hold the cut prompt: the tokenizer loaded alone must cut exactly as the network's would."""
    from mars_core.data.loading import load_pairs
    from mars_core.data.text_suite import text_suite

    text_encoder.encode(["load the network"])
    prompts = [p.prompt for p in text_suite(n_pairs=60, seed=3)]
    hh = ROOT.parent / "shared" / "data" / "hh_harmless_dev.jsonl"
    if hh.exists():  # real multi-turn transcripts (CI has them beside the clone)
        prompts += [p.prompt for p in load_pairs(hh)[0][:80]]
    prompts.append(" ".join(f"Ünïcode-{i} naïve café" for i in range(150)))
    theirs = text_encoder._model.tokenizer
    for budget in (16, 96):
        for prompt in prompts:
            ids = theirs(prompt, add_special_tokens=False)["input_ids"]
            assert text_encoder.tokenizer(prompt, add_special_tokens=False)["input_ids"] == ids
        assert len({text_encoder.truncate_left(p, budget) for p in prompts}) > 1
