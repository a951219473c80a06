"""LP-FT and training length: the probe is the linear model's fit, checkpoints stay readable, early stopping
keeps the best weights; the length plan and the by-prompt split as pure functions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from mars_core.data.loading import load_pairs
from mars_core.data.pairs import PreferencePair
from mars_core.model import precision
from mars_core.model.encoders import PROMPT_TOKENS, TextEncoder, cut_left, joined_text
from mars_core.model.features import TextFeaturizer
from mars_core.model.finetune import FinetuneRewardModel
from mars_core.model.fit_plan import (
    MIN_VALIDATION_PAIRS,
    EarlyStopping,
    plan_passes,
    scaled_bt_loss,
    split_by_prompt,
)
from mars_core.model.pooled_head import pooled_logits
from mars_core.model.reward import LinearRewardModel
from mars_core.model.reward_config import RewardModelConfig
from mars_core.model.train import TrainConfig
from tests.model.test_finetune import CONFIG as FINETUNE_CONFIG
from tests.model.test_finetune import bt_loss, tiny_pairs

EXCERPT = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "hh_harmless_long_excerpt.jsonl.gz"

LPFT = RewardModelConfig(kind="finetune", max_length=64, batch_size=8, min_steps=4, max_passes=2,
                         validation_fraction=0.0, min_validation_pairs=MIN_VALIDATION_PAIRS)


def test_plan_passes_reaches_min_steps_within_the_cap():
    assert plan_passes(19, 96, 4) == 4  # 300 pairs in 16s: capped
    assert plan_passes(30, 96, 8) == 4  # ceil(96 / 30)
    assert plan_passes(1250, 96, 4) == 1  # 20,000 pairs: one pass is plenty
    assert plan_passes(0, 96, 4) == 1


def test_split_by_prompt_holds_out_whole_prompts_the_same_ones_in_every_fit():
    pairs = [PreferencePair(f"p{i}", f"prompt {i // 3}", f"good {i}", f"bad {i}") for i in range(600)]
    train, held = split_by_prompt(pairs, 0.2, seed=1)
    assert len(train) + len(held) == 600 and 80 <= len(held) <= 160  # 200 prompts, each held with p = 0.2
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert split_by_prompt(pairs, 0.2, seed=1) == (train, held)  # seeded
    assert split_by_prompt(pairs, 0.2, seed=2) != (train, held)
    # paraphrases (same prompts) added and the order changed: every prompt stays on its side
    grown = [PreferencePair(f"s{i}", p.prompt, p.chosen + " again", p.rejected) for i, p in enumerate(pairs)]
    train2, held2 = split_by_prompt(grown[::-1] + pairs, 0.2, seed=1)
    assert {p.prompt for p in held2} == {p.prompt for p in held} and len(held2) == 2 * len(held)
    assert {p.prompt for p in split_by_prompt(pairs[:90], 0.2, seed=1)[1]} <= {p.prompt for p in held}
    assert split_by_prompt(pairs[:2 * MIN_VALIDATION_PAIRS - 1], 0.4, seed=1)[1] == []
    assert split_by_prompt(pairs, 0.0, seed=1) == (pairs, [])
    # a slice under min_pairs is no slice: the fit trains on every pair, without early stopping
    assert split_by_prompt(pairs, 0.2, seed=1, min_pairs=len(held)) == (train, held)
    assert split_by_prompt(pairs, 0.2, seed=1, min_pairs=len(held) + 1) == (pairs, [])
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


@pytest.fixture(scope="module")
def hh_excerpt() -> list[PreferencePair]:
    """48 real HH harmless pairs: 10 with a text over 256 tokens after the prompt's cut, 10 prompts over 120."""
    pairs, _ = load_pairs(EXCERPT)
    return pairs


@pytest.fixture(scope="module")
def linear_on_excerpt(hh_excerpt) -> LinearRewardModel:
    linear = LinearRewardModel(TextFeaturizer(TextEncoder()), TrainConfig())
    linear.fit(hh_excerpt[:40])
    return linear


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_before_any_encoder_step_the_finetuned_model_is_the_linear_model(hh_excerpt, linear_on_excerpt, fraction):
    """Default length (256) and the packaged MiniLM: the fine-tuned model reads the linear model's features, token
    for token, and when the encoder does not move (lr 1e-12) its margins are the linear head's on every pair,
    trained on or not. With a validation slice the probe fits the other pairs, step 0 is the best check, and the
    head is refitted on all 40: the linear model's fit again."""
    train = hh_excerpt[:40]
    model = FinetuneRewardModel(RewardModelConfig(kind="finetune", learning_rate=1e-12, min_steps=1, max_passes=1,
                                                  validation_fraction=fraction,
                                                  min_validation_pairs=MIN_VALIDATION_PAIRS))
    encoded = model.batcher.encode([p.prompt for p in hh_excerpt], [p.rejected for p in hh_excerpt])
    assert model.config.max_length == 256 and sum(e.response_cut for e in encoded) >= 3
    assert sum(e.truncated and not e.response_cut for e in encoded) >= 5  # prompts cut to their last 96 pieces
    details = model.fit(train).details
    np.testing.assert_allclose(model.head_deltas(hh_excerpt)[1], linear_on_excerpt.delta_features(hh_excerpt),
                               atol=1e-5)
    ours, linear = model.margins(hh_excerpt), linear_on_excerpt.margins(hh_excerpt)
    np.testing.assert_allclose(ours, linear, rtol=1e-3, atol=1e-3)
    assert np.array_equal(ours > 0, linear > 0)
    if fraction:
        assert details["validation_pairs"] >= MIN_VALIDATION_PAIRS and details["best_step"] == 0
        assert details["probe_pairs"] == 40 - details["validation_pairs"] and details["refit_pairs"] == 40
    else:
        assert details["probe_pairs"] == 40 and "refit_pairs" not in details


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
    as_base = FinetuneRewardModel(dataclasses.replace(LPFT, base=str(folder)))  # a trained head: kept as it is
    assert as_base.model.pooling == "mean"
    np.testing.assert_allclose(as_base.rewards(prompts, responses), ours, atol=1e-5)
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert plain.config.mars_pooling == "mean"
    with torch.no_grad():
        texts = [joined_text(cut_left(tokenizer, p, PROMPT_TOKENS), r) for p, r in zip(prompts, responses)]
        batches = [tokenizer(t, truncation=True, max_length=LPFT.max_length, return_tensors="pt") for t in texts]
        recipe = [float(pooled_logits(plain, "mean", b["input_ids"], b["attention_mask"])[0, 0]) for b in batches]
        own_forward = [float(plain(**b).logits[0, 0]) for b in batches]
    np.testing.assert_allclose(recipe, ours, atol=1e-5)  # the documented recipe reproduces our rewards
    assert not np.allclose(own_forward, ours, atol=1e-3)  # plain forward pools [CLS]: documented, not equal


@pytest.mark.slow
def test_early_stopping_restores_the_weights_of_the_best_validation_check():
    pairs = tiny_pairs(40)
    # a fresh head (no probe, so no refit at step 0) and a learning rate high enough to overshoot
    cfg = dataclasses.replace(LPFT, head_init="fresh", learning_rate=3e-3, validation_fraction=0.3, min_steps=12,
                              max_passes=4, eval_every=1, patience=2)
    model = FinetuneRewardModel(cfg)
    report = model.fit(pairs)
    curve = report.details["validation"]
    assert curve[0]["step"] == 0 and report.details["validation_pairs"] >= MIN_VALIDATION_PAIRS
    best = min(curve, key=lambda c: c["loss"])
    assert report.details["best_step"] == best["step"]
    _, held = split_by_prompt(pairs, cfg.validation_fraction, cfg.seed)
    restored = float(np.mean(np.logaddexp(0.0, -model.margins(held))))
    assert restored == pytest.approx(best["loss"], abs=1e-5)
    if report.details["stopped_early"]:
        assert report.details["optimizer_steps"] < report.details["planned_steps"]
        assert len(curve) - 1 - curve.index(best) >= cfg.patience


@pytest.mark.slow
def test_cpu_bf16_runs_the_training_steps_in_bfloat16_and_scores_in_float32(monkeypatch):
    """On a CPU with native bfloat16 (AMX / AVX512-BF16) the training steps' matmuls are bfloat16 and the model
    still learns; every score (so margins, validation checks, the probe's features) is float32. Off, or on a
    CPU without it, everything is float32."""
    if not precision.cpu_has_native_bf16():
        pytest.skip("this CPU has no native bfloat16 (AMX or AVX512-BF16): the setting is ignored here")
    cfg = dataclasses.replace(FINETUNE_CONFIG, cpu_bf16=True)
    model = FinetuneRewardModel(cfg)
    pairs = tiny_pairs(16)
    layer = next(m for m in model.model.modules() if isinstance(m, torch.nn.Linear))
    seen: list[tuple[bool, torch.dtype]] = []
    hook = layer.register_forward_hook(lambda _m, _a, out: seen.append((torch.is_grad_enabled(), out.dtype)))
    try:
        before = bt_loss(model, pairs)
        report = model.fit(pairs)
        after = bt_loss(model, pairs)
    finally:
        hook.remove()
    assert report.details["train_dtype"] == "bfloat16"
    assert {dtype for grad, dtype in seen if grad} == {torch.bfloat16}  # the training steps
    assert {dtype for grad, dtype in seen if not grad} == {torch.float32}  # scoring, before and after
    assert after < before - 0.1
    assert all(p.dtype == torch.float32 for p in model.model.parameters())  # the weights stay float32
    assert FinetuneRewardModel(dataclasses.replace(cfg, cpu_bf16=False)).train_dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert FinetuneRewardModel(cfg).train_dtype == torch.float32


def test_scaled_loss_is_the_best_temperature_loss_and_early_stopping_can_watch_it():
    """Fine-tuning after a probe grows the margins: the plain held-out loss can rise while the ranking improves.
    scaled_loss is the BT loss at the best single temperature, so only the ranking counts."""
    margins = np.random.default_rng(0).normal(0.2, 1.0, 200)
    grid = min(np.mean(np.logaddexp(0.0, -s * margins)) for s in np.linspace(0.0, 5.0, 5001))
    assert scaled_bt_loss(margins) == pytest.approx(grid, abs=1e-6)
    assert scaled_bt_loss(7.0 * margins) == pytest.approx(scaled_bt_loss(margins), abs=1e-9)
    assert scaled_bt_loss(-np.abs(margins)) == pytest.approx(np.log(2.0))  # all wrong: s = 0 (chance) is best
    tuned = 10.0 * (margins + 0.3)  # ranks more pairs right, far too confident
    assert np.mean(tuned > 0) > np.mean(margins > 0)
    assert np.mean(np.logaddexp(0.0, -tuned)) > np.mean(np.logaddexp(0.0, -margins))
    best = {}
    for metric in ("loss", "scaled_loss"):
        stopper, layer = EarlyStopping(patience=2, metric=metric), torch.nn.Linear(1, 1)
        stopper.record(0, margins, layer)
        stopper.record(8, tuned, layer)
        best[metric] = stopper.best_step
        assert {"loss", "scaled_loss", "accuracy"} <= set(stopper.curve[-1])
    assert best == {"loss": 0, "scaled_loss": 8}
    with pytest.raises(ValueError, match="validation_metric"):
        RewardModelConfig(kind="finetune", validation_metric="accuracy")
