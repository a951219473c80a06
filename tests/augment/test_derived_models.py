"""The dequantised copy of a GGUF paraphrase model (derived_models.py), on the real packaged SmolLM2.

What these prove: the copy holds exactly the tensors and the tokenizer a GGUF load gives (so rows keep
their paraphraser name); it is made once and reused; a changed source gets a new folder; a half-written
folder is rebuilt; a cache that cannot be written, or a disk without room for the copy, falls back to the
GGUF file; a broken GGUF fails with its name and leaves no folder behind; and the transformers engine
loads the copy.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from mars_core.augment import derived_models
from mars_core.augment.derived_models import (
    build_once,
    ensure_plain,
    is_plain,
    load_gguf,
    loadable,
    plain_dir,
)
from mars_core.augment.lm_paraphraser import LMParaphraser
from mars_core.augment.paraphraser import ParaphraseConfig
from mars_core.model.encoders import resolve_model

PACKAGED = "packaged:smollm2"


@pytest.mark.slow
def test_the_copy_holds_the_gguf_tensors_and_tokenizer_and_is_made_once(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("MARS_HF_CACHE", str(tmp_path / "cache"))
    folder = ensure_plain(PACKAGED, progress=lambda _: None)
    assert folder.parent == tmp_path / "cache" and is_plain(folder)
    tokenizer, model = load_gguf(PACKAGED, resolve_model(PACKAGED))
    copy_tokenizer = AutoTokenizer.from_pretrained(folder)
    copy = AutoModelForCausalLM.from_pretrained(folder)
    expected, got = model.state_dict(), copy.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    assert copy.lm_head.weight.data_ptr() == copy.model.embed_tokens.weight.data_ptr()  # tied again, as in the GGUF
    chat = [{"role": "system", "content": "You paraphrase text."}, {"role": "user", "content": "Ça va? 13,000 miles!"}]
    assert (copy_tokenizer.apply_chat_template(chat, add_generation_prompt=True)
            == tokenizer.apply_chat_template(chat, add_generation_prompt=True))
    assert (copy_tokenizer.eos_token_id, copy.generation_config.eos_token_id) == (
        tokenizer.eos_token_id, model.generation_config.eos_token_id)

    def must_not_load(*_):  # noqa: ANN202
        raise AssertionError("the copy exists: nothing should be dequantised again")

    monkeypatch.setattr(derived_models, "load_gguf", must_not_load)
    assert ensure_plain(PACKAGED) == folder and loadable(PACKAGED) == folder


def test_a_changed_source_gets_another_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_HF_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    shutil.copyfile(resolve_model(PACKAGED), gguf)
    first = plain_dir(gguf)
    os.utime(gguf, (1_000_000_000, 1_000_000_000))
    assert plain_dir(gguf) != first and plain_dir(gguf).parent == tmp_path / "cache"


def test_a_half_written_folder_is_rebuilt_and_a_failed_build_leaves_nothing(tmp_path):
    target = tmp_path / "cache" / "model-float32-abc"
    target.mkdir(parents=True)
    (target / "junk").write_text("an interrupted build")
    built = build_once(target, lambda p: (p / "done").exists(), lambda staged: (staged.mkdir(), (staged / "done").touch()))
    assert built == target and sorted(p.name for p in target.iterdir()) == ["done"]

    def broken(staged: Path) -> None:
        staged.mkdir()
        (staged / "half").touch()
        raise ValueError("the build failed")

    other = tmp_path / "cache" / "other-float32-def"
    with pytest.raises(ValueError, match="the build failed"):
        build_once(other, lambda p: (p / "done").exists(), broken)
    assert not other.exists() and not [p for p in other.parent.iterdir() if p.name.startswith(".build-")]


def test_a_cache_that_cannot_be_written_falls_back_to_the_gguf_file(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MARS_HF_CACHE", str(blocker / "cache"))
    with caplog.at_level(logging.WARNING, logger="mars_core.augment.derived_models"):
        assert loadable(PACKAGED) == resolve_model(PACKAGED)
    assert "loading the GGUF file itself" in caplog.text


def test_a_broken_gguf_fails_with_its_name_and_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MARS_HF_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken-model.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(256))
    with pytest.raises((OSError, ValueError), match="broken-model"):
        LMParaphraser(ParaphraseConfig(model=str(broken)))
    assert not [p for p in (tmp_path / "cache").glob("*") if not p.name.startswith(".")]


@pytest.mark.slow
def test_the_transformers_engine_loads_the_copy():
    paraphraser = LMParaphraser(ParaphraseConfig(dtype="float32", max_new_tokens=24))
    assert Path(paraphraser.model.config._name_or_path) == plain_dir(resolve_model(PACKAGED))
    assert paraphraser.paraphrase(["Paris is the capital of France."], 1, seed=0).texts[0][0]


def test_a_copy_that_would_fill_the_disk_is_not_made(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MARS_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(derived_models.shutil, "disk_usage", lambda _: SimpleNamespace(total=10, used=5, free=5))

    def must_not_load(*_):  # noqa: ANN202
        raise AssertionError("nothing should be dequantised without room for the copy")

    monkeypatch.setattr(derived_models, "load_gguf", must_not_load)
    with caplog.at_level(logging.WARNING, logger="mars_core.augment.derived_models"):
        assert loadable(PACKAGED) == resolve_model(PACKAGED)
    assert "GiB free" in caplog.text and not [p for p in (tmp_path / "cache").glob("*") if not p.name.startswith(".")]
