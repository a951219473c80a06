"""The paraphraser protocol's pieces that need no model: config checks, row keys, the plain adapter, the sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mars_core.augment.lm_paraphraser import LMParaphraser, lm_name, sample_tokens
from mars_core.augment.openai_paraphraser import openai_name
from mars_core.augment.paraphraser import (
    DEFAULT_TEMPLATE,
    ParaphraseConfig,
    Paraphraser,
    PlainParaphraser,
    openai_target,
    row_key,
)
from mars_core.data.toy import ToyParaphraser
from mars_core.model.encoders import ModelNotFoundError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_new_tokens_factor": 0}, "max_new_tokens_factor"),
        ({"min_new_tokens": 0}, "min_new_tokens"),
        ({"min_new_tokens": 64, "max_new_tokens": 32}, "max_new_tokens"),
        ({"seconds_per_token": 0}, "seconds_per_token"),
        ({"num_threads": 0}, "num_threads"),
        ({"model": " "}, "model"),
        ({"model": "openai:127.0.0.1:8000"}, "openai:BASE_URL#MODEL"),
        ({"model": "openai:http://127.0.0.1:8000/v1#"}, "openai:BASE_URL#MODEL"),
        ({"candidates_per_unit": 0}, "candidates_per_unit"),
        ({"candidates_per_unit": 4, "generations_per_unit": 3}, "generations_per_unit"),
        ({"concurrency": 0}, "concurrency"),
        ({"instruction": ""}, "instruction"),
        ({"prompt_template": (("user", "Rewrite this."),)}, "{text}"),
        ({"prompt_template": (("tool", "{text}"),)}, "roles"),
        ({"prompt_template": (("user", "{text} {source}"),)}, "{instruction}"),
        ({"prompt_template": (("user", "{text}"), ("assistant", "Sure."))}, "end with a user"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        ParaphraseConfig(**kwargs)


def test_default_template_is_few_shot_and_renders() -> None:
    roles = [role for role, _ in DEFAULT_TEMPLATE]
    assert roles[0] == "system" and roles[-1] == "user" and roles.count("assistant") >= 2
    rendered = [content.format(instruction="Paraphrase.", text="X {y}") for _, content in DEFAULT_TEMPLATE]
    assert rendered[-1].endswith("X {y}")


def test_new_token_budget_scales_with_the_source_and_is_clamped() -> None:
    cfg = ParaphraseConfig(max_new_tokens_factor=2.0, min_new_tokens=10, max_new_tokens=100)
    assert (cfg.new_token_budget(1), cfg.new_token_budget(20), cfg.new_token_budget(500)) == (10, 40, 100)


def test_names_change_with_outputs_settings_but_not_with_selection_knobs() -> None:
    base = ParaphraseConfig()
    assert lm_name(base) == lm_name(ParaphraseConfig(candidates_per_unit=1, generations_per_unit=9, batch_size=3))
    assert lm_name(base) != lm_name(ParaphraseConfig(temperature=0.5))
    remote = ParaphraseConfig(model="openai:http://127.0.0.1:9/v1/#tiny")
    assert openai_target(remote.model) == ("http://127.0.0.1:9/v1", "tiny")
    assert openai_name(remote).startswith("openai:http://127.0.0.1:9/v1#tiny|")


def test_row_key_names_exactly_the_row() -> None:
    key = row_key("lm:x", "Paraphrase.", 0, "Hello there.", 2)
    assert key == row_key("lm:x", "Paraphrase.", 0, "Hello there.", 2)
    others = {row_key("lm:y", "Paraphrase.", 0, "Hello there.", 2), row_key("lm:x", "Rewrite.", 0, "Hello there.", 2),
              row_key("lm:x", "Paraphrase.", 1, "Hello there.", 2), row_key("lm:x", "Paraphrase.", 0, "Hello.", 2),
              row_key("lm:x", "Paraphrase.", 0, "Hello there.", 3)}
    assert key not in others and len(others) == 5


def test_plain_adapter_serves_row_k_whichever_call_asks() -> None:
    para = PlainParaphraser(ToyParaphraser(sigma=0.05))
    assert isinstance(para, Paraphraser)
    texts = ["φ=[0.1000, 0.2000]", "φ=[-0.3000, 0.4000]"]
    whole = para.paraphrase(texts, 4, seed=3)
    assert whole.generations == 8 and not whole.failures
    later = para.paraphrase(texts[::-1], [2, 1], seed=3, first=[2, 3])
    assert later.texts == [whole.texts[1][2:4], whole.texts[0][3:4]]


class _Broken(ToyParaphraser):
    def paraphrase(self, texts, n, seed):
        if len(texts) > 1:
            raise RuntimeError("server went away")
        return super().paraphrase(texts, n, seed)


def test_plain_adapter_turns_a_raising_call_into_failures_of_its_rows() -> None:
    got = PlainParaphraser(_Broken()).paraphrase(["φ=[0.1000, 0.2000]", "φ=[0.3000, 0.2000]"], [2, 2], seed=0)
    assert got.texts == [["", ""], ["", ""]]
    assert len(got.failures) == 4 and "server went away" in got.failures[0][1] and got.generations == 0


def test_sampler_draws_only_inside_the_nucleus_from_each_rows_own_stream() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05] + [1e-9] * 20)
    logits = probs.log().repeat(3000, 1)
    gens = [torch.Generator().manual_seed(i) for i in range(3000)]
    picked = sample_tokens(logits, gens, temperature=1.0, top_p=0.8, top_k=8)
    assert set(picked.tolist()) == {0, 1}
    assert abs((picked == 0).float().mean().item() - 0.5 / 0.8) < 0.03  # renormalised inside the nucleus
    again = sample_tokens(logits[:5], [torch.Generator().manual_seed(i) for i in range(5)], 1.0, 0.8, 8)
    assert again.tolist() == picked[:5].tolist()  # a row's draw depends on its own seed only
    assert sample_tokens(logits[:4], gens[:4], temperature=0.0, top_p=0.8, top_k=8).tolist() == [0] * 4


def test_nonexistent_model_path_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        LMParaphraser(ParaphraseConfig(model=str(tmp_path / "no-such-model.gguf")))


def test_directory_without_a_model_raises_an_error_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty-model-dir"
    empty.mkdir()
    with pytest.raises((ModelNotFoundError, ValueError), match="empty-model-dir"):
        LMParaphraser(ParaphraseConfig(model=str(empty)))
