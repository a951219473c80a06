"""The fine-tuned transformer reward model on CPU with the packaged MiniLM (real weights, tiny data, 64 tokens)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from mars_core.analysis.curvature import sigmoid_prime
from mars_core.data.pairs import PreferencePair
from mars_core.model.batching import PairTokenizer, joined_text
from mars_core.model.finetune import FinetuneRewardModel
from mars_core.model.finetune_curvature import score_layer
from mars_core.model.reward import cross_fitted_margins
from mars_core.model.reward_config import RewardModelConfig
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

pytestmark = pytest.mark.slow

CONFIG = RewardModelConfig(kind="finetune", max_length=64, batch_size=8, learning_rate=2e-4, head_init="fresh",
                          min_steps=6, max_passes=3, validation_fraction=0.0,  # 16 pairs: 2 steps a pass, 3 passes
                          min_validation_pairs=8)  # where a test sets a slice, a small one is meant
HELPFUL = "Boil salted water, add the pasta, stir, and cook it for about ten minutes until tender."
UNHELPFUL = "No idea. Figure it out yourself, I am not going to help you with that."


def tiny_pairs(n: int = 16) -> list[PreferencePair]:
    topics = ["pasta", "rice", "bread", "soup", "tea", "eggs", "beans", "salad"]
    return [
        PreferencePair(f"p{i}", f"How do I cook {topics[i % 8]}? (question {i})",
                       HELPFUL.replace("pasta", topics[i % 8]) + " Enjoy!" * (i % 3), UNHELPFUL + " Bye." * (i % 2))
        for i in range(n)
    ]


def bt_loss(model: FinetuneRewardModel, pairs: list[PreferencePair]) -> float:
    return float(np.mean(np.logaddexp(0.0, -model.margins(pairs))))


@pytest.fixture(scope="session")
def trained():
    """One fit on the tiny pairs; the parameters and loss before it, for the tests that ask what training did."""
    model = FinetuneRewardModel(CONFIG)
    pairs = tiny_pairs()
    before = {n: p.detach().clone() for n, p in model.model.named_parameters()}
    loss_before = bt_loss(model, pairs)
    events: list[tuple] = []
    report = model.fit(pairs, progress=lambda *args: events.append(args))
    return model, pairs, before, loss_before, report, events


def test_training_lowers_the_loss_and_changes_every_trainable_parameter(trained):
    model, pairs, before, loss_before, report, events = trained
    assert bt_loss(model, pairs) < loss_before - 0.1
    trainable = [n for n, p in model.model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(before) - 1  # all but the score bias, which cancels in every margin
    assert [n for n, p in model.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])] == []
    # progress: batches done / total with the running loss
    total = events[-1][2]
    assert events[-1][:2] == ("training", total) and total == 3 * 2  # 3 passes × 16 pairs / 8 per batch
    assert events[-1][3].startswith("loss ")
    assert report.iterations == total and report.n_pairs == len(pairs)


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_response_tail(trained):
    batcher = PairTokenizer(trained[0].tokenizer, max_length=32)
    tok = batcher.tokenizer
    long_prompt = "first words of a long prompt " + "filler " * 80 + "the final question?"
    response = "alpha beta gamma " * 3 + "the response ends with zebra"
    (cut_prompt,) = batcher.encode([long_prompt], [response])
    response_ids = tok(response, add_special_tokens=False)["input_ids"]
    assert len(cut_prompt.ids) == 32 and cut_prompt.truncated and not cut_prompt.response_cut
    assert list(cut_prompt.ids[-1 - len(response_ids):-1]) == response_ids  # whole response, then [SEP]
    assert "first" not in tok.decode(cut_prompt.ids)
    long_response = "start of the answer " + "detail " * 60 + "and the last words zebra"
    (cut_response,) = batcher.encode(["short prompt"], [long_response])
    assert cut_response.truncated and cut_response.response_cut and len(cut_response.ids) == 32
    assert tok.decode(cut_response.ids[-5:-1]).endswith("last words zebra")
    assert "start" not in tok.decode(cut_response.ids)


def test_fit_counts_truncated_pairs_and_never_drops_them():
    model = FinetuneRewardModel(dataclasses.replace(CONFIG, max_length=16, max_passes=1))
    pairs = tiny_pairs(8)
    report = model.fit(pairs)
    assert report.details["truncated_pairs"] == 8 and report.n_pairs == 8
    assert report.details["response_cut_pairs"] == 8  # the responses alone exceed 16 tokens
    assert np.isfinite(model.margins(pairs)).all()


def test_checkpoint_round_trips_and_loads_in_plain_transformers(trained, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, pairs = trained[0], trained[1]
    model.use_checkpoint_dir(tmp_path)
    state = model.state()
    assert all(v.dtype.kind in "UiO" and v.dtype.kind != "O" for v in state.values())  # strings and ints, no pickle
    folder = tmp_path / "epoch-0"
    assert (folder / "model.safetensors").exists() and str(np.asarray(state["checkpoint"])) == str(folder.resolve())
    prompts = [p.prompt for p in pairs] + ["What is tea?"]
    responses = [p.chosen for p in pairs] + ["A drink."]
    ours = model.rewards(prompts, responses)
    reloaded = FinetuneRewardModel(CONFIG)
    assert not np.allclose(reloaded.rewards(prompts, responses), ours)  # base weights differ ...
    reloaded.load_state(state)
    # the checkpoint restores the weights; only float32 rounding of a differently padded batch remains (~1e-8)
    np.testing.assert_allclose(reloaded.rewards(prompts, responses), ours, rtol=0, atol=1e-6)
    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = [float(plain(**tokenizer(joined_text(p, r), return_tensors="pt")).logits[0, 0])
                  for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(logits, ours, atol=1e-5)


def test_a_trl_style_checkpoint_loads_via_base(trained, tmp_path):
    """TRL's RewardTrainer saves a one-output sequence classifier with save_pretrained; --base PATH scores with it."""
    model = trained[0]
    folder = tmp_path / "trl-reward"
    model.model.hf.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("mars_pooling")  # TRL writes no pooling key: its head reads the model's own pooler
    (folder / "config.json").write_text(json.dumps(config))
    theirs = FinetuneRewardModel(dataclasses.replace(CONFIG, base=str(folder)))
    pairs = trained[1]
    np.testing.assert_allclose(theirs.margins(pairs), model.margins(pairs), atol=1e-5)


def test_head_curvature_is_the_gauss_newton_term_and_the_spectrum_trace_is_its_mean(trained):
    model, pairs = trained[0], trained[1][:6]
    contributions = model.pair_curvature(pairs)
    head = score_layer(model.model)
    for i, pair in enumerate(pairs[:3]):  # σ'(Δ)·‖∂Δ/∂w‖² by autograd on the real network
        enc = model.batcher.encode([pair.prompt] * 2, [pair.chosen, pair.rejected])
        ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(e.ids) for e in enc], batch_first=True)
        mask = (torch.arange(ids.shape[1])[None] < torch.tensor([[len(e.ids)] for e in enc])).long()
        r = model.model(input_ids=ids, attention_mask=mask).logits[:, 0]
        grads = torch.autograd.grad(r[0] - r[1], [head.weight])
        expected = sigmoid_prime(float((r[0] - r[1]).detach())) * sum(float((g.double() ** 2).sum()) for g in grads)
        assert contributions[i] == pytest.approx(expected, rel=1e-4)
    spectrum = model.spectrum(pairs, k=3)
    assert spectrum.trace == pytest.approx(contributions.mean(), rel=1e-3)  # trace(G) = mean contribution
    assert spectrum.top_k[0] <= spectrum.trace * (1 + 1e-6) and "head" in spectrum.method and "6/6 pairs" in spectrum.method


def test_last_block_curvature_contains_the_head_part(trained):
    model, pairs = trained[0], trained[1][:3]
    deep = FinetuneRewardModel(dataclasses.replace(CONFIG, curvature_params="last_block"))
    deep.load_state(model.state())
    head_part = model.pair_curvature(pairs)
    deep_part = deep.pair_curvature(pairs)
    assert np.all(deep_part > head_part)  # more parameters, a longer gradient
    spectrum = deep.spectrum(pairs, k=2)
    assert spectrum.trace == pytest.approx(deep_part.mean(), rel=0.05)  # Hutch++ on a PSD operator
    assert "last block" in spectrum.method


def test_fresh_starts_from_the_base_checkpoint_and_cross_fits(trained):
    model, pairs = trained[0], trained[1][:8]
    base = FinetuneRewardModel(CONFIG)
    np.testing.assert_allclose(model.fresh().margins(pairs), base.margins(pairs), atol=1e-6)
    held_out = cross_fitted_margins(model, pairs, [], folds=2, seed=0)
    assert held_out.shape == (8,) and np.isfinite(held_out).all()
    assert not np.allclose(held_out, model.margins(pairs))


def finetune_run_config(tmp_path) -> RunConfig:
    config = RunConfig(
        data=DataConfig(source="demo:text", n_pairs=40, seed=0),
        refine=RefineConfig(epochs=3, budget_per_epoch=0, cross_fit_folds=0, curvature_k=3),
        # the default start (linear probe, mean pooling) with a validation slice big enough to stop early
        reward=dataclasses.replace(CONFIG, head_init="linear_probe", max_passes=1, validation_fraction=0.3),
    )
    return with_overrides(config, allocation={"strategy": "none"})


def test_a_step_runs_and_a_killed_step_resumes_from_the_last_whole_epoch(tmp_path):
    store = Store(tmp_path / "runs.db")
    run = RefinementRun.create(store, finetune_run_config(tmp_path))
    events: list[tuple] = []
    outcome = run.step(progress=lambda *args: events.append(args))
    assert outcome.epoch == 1 and store.epochs(run.run_id) == [0, 1]
    assert any(e[0] == "training" and len(e) == 4 and e[3].startswith("loss") for e in events)
    details = outcome.metrics["fit_details"]
    trained = store.training_pairs(run.run_id, "auto")
    cut = [run.runtime.model.batcher.encode([p.prompt], [side])[0].truncated
           for p in trained for side in (p.chosen, p.rejected)]
    cut_all = sum(a or b for a, b in zip(cut[::2], cut[1::2]))  # over every pair; the fit trains on all but validation
    assert cut_all - details["validation_pairs"] <= details["truncated_pairs"] <= cut_all
    assert details["pooling"] == "mean" and details["validation_pairs"] >= 8
    assert details["validation"][0]["step"] == 0 and details["passes"] <= 1
    assert details["probe_pairs"] == details["train_pairs"]  # every fit starts with a probe on its training part
    assert "probe_loss" in store.get_epoch(run.run_id, 0).metrics["fit_details"]
    stored = store.get_epoch(run.run_id, 1, with_model=True)
    assert "gauss-newton on head" in stored.curvature["method"]
    checkpoint = str(np.asarray(stored.model_state["checkpoint"]))
    assert checkpoint.endswith("epoch-1") and str(tmp_path / "runs-runs") in checkpoint
    test_pairs = store.get_pairs(run.run_id, split="test")
    after_epoch1 = run.runtime.model.margins(test_pairs)

    class Killed(Exception):
        pass

    def kill_mid_training(stage, done, total, detail=""):
        if stage == "training" and done == 2:
            raise Killed  # weights in memory have moved; nothing of epoch 2 is committed

    with pytest.raises(Killed):
        run.step(progress=kill_mid_training)
    assert store.epochs(run.run_id) == [0, 1]
    assert not np.allclose(run.runtime.model.margins(test_pairs), after_epoch1)
    resumed = RefinementRun.open(store, run.run_id)
    assert resumed.epoch == 1
    np.testing.assert_allclose(resumed.runtime.model.margins(test_pairs), after_epoch1, rtol=0, atol=1e-6)
    resumed.step()
    state2 = store.get_epoch(run.run_id, 2, with_model=True).model_state
    assert str(np.asarray(state2["checkpoint"])).endswith("epoch-2")
