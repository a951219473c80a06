"""LP-FT and training length: the probe is the linear model's fit, checkpoints stay readable, early stopping
keeps the best weights; the length plan and the by-prompt split as pure functions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mars_core.data.pairs import PreferencePair
from mars_core.model.batching import joined_text
from mars_core.model.encoders import TextEncoder
from mars_core.model.features import TextFeaturizer
from mars_core.model.finetune import FinetuneRewardModel
from mars_core.model.fit_plan import MIN_VALIDATION_PAIRS, plan_passes, split_by_prompt
from mars_core.model.pooled_head import pooled_logits
from mars_core.model.reward import LinearRewardModel
from mars_core.model.reward_config import RewardModelConfig
from mars_core.model.train import TrainConfig
from tests.model.test_finetune import tiny_pairs

LPFT = RewardModelConfig(kind="finetune", max_length=64, batch_size=8, min_steps=4, max_passes=2,
                         validation_fraction=0.0)


def test_plan_passes_reaches_min_steps_within_the_cap():
    assert plan_passes(19, 96, 4) == 4  # 300 pairs in 16s: capped
    assert plan_passes(30, 96, 8) == 4  # ceil(96 / 30)
    assert plan_passes(1250, 96, 4) == 1  # 20,000 pairs: one pass is plenty
    assert plan_passes(0, 96, 4) == 1


def test_split_by_prompt_holds_out_whole_prompts_and_only_when_there_are_enough():
    pairs = [PreferencePair(f"p{i}", f"prompt {i // 3}", f"good {i}", f"bad {i}") for i in range(60)]
    train, held = split_by_prompt(pairs, 0.2, seed=1)
    assert len(train) + len(held) == 60 and 12 <= len(held) <= 14
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert split_by_prompt(pairs, 0.2, seed=1) == (train, held)  # seeded
    assert split_by_prompt(pairs[:2 * MIN_VALIDATION_PAIRS - 1], 0.4, seed=1)[1] == []
    assert split_by_prompt(pairs, 0.0, seed=1) == (pairs, [])
    one_prompt = [dataclasses.replace(p, prompt="same") for p in pairs]
    assert split_by_prompt(one_prompt, 0.2, seed=1) == (one_prompt, [])


def test_a_run_stored_with_passes_per_step_still_opens_and_bad_settings_are_named():
    from mars_core.run.config import RunConfig

    stored = RunConfig().to_dict()
    stored["reward"]["epochs_per_step"] = 2  # the setting min_steps / max_passes replaced
    assert RunConfig.from_dict(stored).reward.max_passes == RewardModelConfig().max_passes
    with pytest.raises(ValueError, match="head_init must be one of linear_probe, fresh"):
        RewardModelConfig(kind="finetune", head_init="random")
    with pytest.raises(ValueError, match="validation_fraction"):
        RewardModelConfig(kind="finetune", validation_fraction=0.6)


@pytest.mark.slow
def test_the_probe_is_the_linear_models_fit_on_the_same_features():
    """Short texts: the fine-tuned model's mean-pooled features ARE the linear model's MiniLM features, and with
    a negligible learning rate after the probe its margins are the linear head's (epoch 0 starts there)."""
    pairs = tiny_pairs(24)
    model = FinetuneRewardModel(dataclasses.replace(LPFT, learning_rate=1e-12, min_steps=1, max_passes=1))
    report = model.fit(pairs)
    linear = LinearRewardModel(TextFeaturizer(TextEncoder()), TrainConfig())
    np.testing.assert_allclose(model.head_deltas(pairs)[1], linear.delta_features(pairs), atol=2e-5)
    linear.fit(pairs)
    np.testing.assert_allclose(model.margins(pairs), linear.margins(pairs), rtol=1e-3, atol=1e-3)
    assert report.details["pooling"] == "mean" and report.details["probe_iterations"] > 0


@pytest.fixture(scope="module")
def lpft_model():
    model = FinetuneRewardModel(dataclasses.replace(LPFT, learning_rate=1e-4))
    pairs = tiny_pairs(16)
    model.fit(pairs)
    return model, pairs


@pytest.mark.slow
def test_a_mean_pooled_checkpoint_reloads_and_loads_in_plain_transformers(lpft_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, pairs = lpft_model
    model.use_checkpoint_dir(tmp_path)
    state = model.state()
    folder = tmp_path / "epoch-0"
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    ours = model.rewards(prompts, responses)
    reloaded = FinetuneRewardModel(LPFT)
    reloaded.load_state(state)
    np.testing.assert_allclose(reloaded.rewards(prompts, responses), ours, atol=1e-5)
    as_base = FinetuneRewardModel(dataclasses.replace(LPFT, base=str(folder)))  # a trained head: kept, no probe
    assert not as_base.needs_probe and as_base.model.pooling == "mean"
    np.testing.assert_allclose(as_base.rewards(prompts, responses), ours, atol=1e-5)
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert plain.config.mars_pooling == "mean"
    with torch.no_grad():
        batches = [tokenizer(joined_text(p, r), return_tensors="pt") for p, r in zip(prompts, responses)]
        recipe = [float(pooled_logits(plain, "mean", b["input_ids"], b["attention_mask"])[0, 0]) for b in batches]
        own_forward = [float(plain(**b).logits[0, 0]) for b in batches]
    np.testing.assert_allclose(recipe, ours, atol=1e-5)  # the documented recipe reproduces our rewards
    assert not np.allclose(own_forward, ours, atol=1e-3)  # plain forward pools [CLS]: documented, not equal


@pytest.mark.slow
def test_early_stopping_restores_the_weights_of_the_best_validation_check():
    pairs = tiny_pairs(40)
    cfg = dataclasses.replace(LPFT, learning_rate=3e-3, validation_fraction=0.3, min_steps=12, max_passes=4,
                              eval_every=1, patience=2)  # a learning rate that wrecks the probe's head
    model = FinetuneRewardModel(cfg)
    report = model.fit(pairs)
    curve = report.details["validation"]
    assert curve[0]["step"] == 0 and report.details["validation_pairs"] >= MIN_VALIDATION_PAIRS
    best = min(curve, key=lambda c: c["loss"])
    assert report.details["best_step"] == best["step"]
    _, held = split_by_prompt(pairs, cfg.validation_fraction, cfg.seed * 1000 + 1)
    restored = float(np.mean(np.logaddexp(0.0, -model.margins(held))))
    assert restored == pytest.approx(best["loss"], abs=1e-5)
    if report.details["stopped_early"]:
        assert report.details["optimizer_steps"] < report.details["planned_steps"]
        assert len(curve) - 1 - curve.index(best) >= cfg.patience
