"""Semantic sharpening on the real packaged MiniLM, with small deterministic rewriters written here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from mars_core.augment.paraphraser import ParaphraseResult
from mars_core.augment.semantic import (
    REWRITE_CHOSEN_INSTRUCTION,
    REWRITE_REJECTED_INSTRUCTION,
    SemanticConfig,
    apply_sharpening,
    select_for_sharpening,
    semantic_distance,
    sharpen_contrast,
)
from mars_core.data.pairs import PreferencePair

EGG = PreferencePair(
    "egg",
    "How do I boil an egg?",
    "To boil an egg, place it in boiling water for about nine minutes, then cool it in cold water.",
    "Boiling an egg takes a while, maybe nine minutes or so in the water.",
)
HEADACHE = PreferencePair(
    "headache",
    "Why do I keep getting headaches?",
    "Frequent headaches have many causes, such as poor sleep or dehydration; a doctor can check which applies.",
    "I can't help with that; maybe ask a doctor about your headaches.",
)
OFF_TOPIC = "Anyway, I would much rather talk about football tonight."
PAIRS = [EGG, HEADACHE]

Transform = Callable[[str, int], str]  # (text, variant index) -> rewrite


class InstructionRewriter:
    """A real rewriter: applies a text transform chosen by the instruction, and logs its calls."""

    def __init__(self, on_rejected: Transform, on_chosen: Transform) -> None:
        self.transforms = {REWRITE_REJECTED_INSTRUCTION: on_rejected, REWRITE_CHOSEN_INSTRUCTION: on_chosen}
        self.calls: list[tuple[list[str], str, int, int]] = []

    name = "instruction-rewriter"

    def paraphrase(self, texts, n, seed, *, first=0, instruction=None) -> ParaphraseResult:
        self.calls.append((list(texts), instruction, n, seed))
        transform = self.transforms[instruction]
        return ParaphraseResult(texts=[[transform(t, k) for k in range(n)] for t in texts])


def append(sentence: str) -> Transform:
    return lambda text, k: f"{text} {sentence}"


def echo_partner(text: str, k: int) -> str:
    """Borrow the other response's wording: moves the rewrite towards the other side."""
    for pair in PAIRS:
        if text == pair.rejected:
            return f"{text} {pair.chosen}"
        if text == pair.chosen:
            return f"{text} {pair.rejected}"
    raise KeyError(text)


def fail(text: str, k: int) -> str:
    raise RuntimeError("generator crashed")


def distance(encoder, chosen: str, rejected: str) -> float:
    return float(semantic_distance([chosen], [rejected], encoder)[0])


# --- distance and selection ------------------------------------------------------------------


def test_distance_range_and_identity(text_encoder):
    chosen = [EGG.chosen, HEADACHE.chosen, "Yes.", EGG.chosen]
    rejected = [EGG.rejected, HEADACHE.rejected, "No.", EGG.chosen]
    d = semantic_distance(chosen, rejected, text_encoder)
    assert d.shape == (4,) and np.all((d >= 0) & (d <= 2))
    assert d[3] == pytest.approx(0.0, abs=1e-6)
    assert d[0] > 0.05
    expected = 1.0 - text_encoder.cosine(chosen, rejected)
    np.testing.assert_allclose(d, np.clip(expected, 0, 2), atol=1e-6)
    np.testing.assert_allclose(semantic_distance(rejected, chosen, text_encoder), d, atol=1e-6)  # symmetric
    assert semantic_distance([], [], text_encoder).shape == (0,)
    with pytest.raises(ValueError, match="must pair up"):
        semantic_distance(["a"], [], text_encoder)


def test_selection_picks_pairs_below_the_mean():
    d = np.array([0.1, 0.5, 0.2, 0.9])  # mean 0.425
    assert select_for_sharpening(d).tolist() == [True, False, True, False]
    assert select_for_sharpening(d, threshold=0.15).tolist() == [True, False, False, False]
    assert not select_for_sharpening(np.full(3, 0.3)).any()  # nothing is below its own mean
    assert select_for_sharpening(np.array([])).shape == (0,)


# --- sharpening --------------------------------------------------------------------------------


def test_rewrite_that_increases_distance_is_accepted(text_encoder):
    rewriter = InstructionRewriter(append(OFF_TOPIC), fail)
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, seed=7, config=SemanticConfig(n_candidates=1))
    assert result.accepted and result.side == "rejected"
    assert result.old_text == EGG.rejected and result.new_text == f"{EGG.rejected} {OFF_TOPIC}"
    assert result.old_distance == pytest.approx(distance(text_encoder, EGG.chosen, EGG.rejected), abs=1e-6)
    assert result.new_distance == pytest.approx(distance(text_encoder, EGG.chosen, result.new_text), abs=1e-6)
    assert result.gain > 0
    assert rewriter.calls == [([EGG.rejected], REWRITE_REJECTED_INSTRUCTION, 1, 7)]  # chosen side not needed
    (sharpened,) = apply_sharpening([EGG], [result], epoch=3)
    assert sharpened.rejected == result.new_text and sharpened.chosen == EGG.chosen
    assert sharpened.parent_id == "egg" and sharpened.epoch_added == 3 and sharpened.id != "egg"


def test_rewrite_that_decreases_distance_is_rejected_and_chosen_side_is_tried(text_encoder):
    rewriter = InstructionRewriter(echo_partner, append(OFF_TOPIC))
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, config=SemanticConfig(n_candidates=1))
    assert distance(text_encoder, EGG.chosen, f"{EGG.rejected} {EGG.chosen}") < result.old_distance
    assert result.attempts[0].startswith("rejected: no_gain")
    assert [call[1] for call in rewriter.calls] == [REWRITE_REJECTED_INSTRUCTION, REWRITE_CHOSEN_INSTRUCTION]
    assert rewriter.calls[1][0] == [EGG.chosen]
    assert result.accepted and result.side == "chosen" and result.old_text == EGG.chosen
    assert result.new_distance == pytest.approx(
        distance(text_encoder, result.new_text, EGG.rejected), abs=1e-6
    )
    assert result.new_distance > result.old_distance
    (sharpened,) = apply_sharpening([EGG], [result])
    assert sharpened.chosen == result.new_text and sharpened.rejected == EGG.rejected


def test_both_sides_failing_keeps_the_pair(text_encoder):
    for rewriter, expected in [
        (InstructionRewriter(fail, fail), "rewriter failed (RuntimeError: generator crashed)"),
        (InstructionRewriter(lambda t, k: "", lambda t, k: "   "), "empty"),
        (InstructionRewriter(echo_partner, echo_partner), "no_gain"),
    ]:
        results = sharpen_contrast(PAIRS, rewriter, text_encoder, config=SemanticConfig(n_candidates=1))
        for result, pair in zip(results, PAIRS, strict=True):
            assert not result.accepted and result.side is None and result.new_text is None
            assert result.new_distance == result.old_distance
            assert len(result.attempts) == 2 and all(expected in a for a in result.attempts)
            assert result.pair_id == pair.id
        assert apply_sharpening(PAIRS, results) == PAIRS


def test_wrong_number_of_outputs_counts_as_a_failure(text_encoder):
    class Short:
        name = "short"

        def paraphrase(self, texts, n, seed, *, first=0, instruction=None):
            return ParaphraseResult(texts=[[f"{texts[0]} {OFF_TOPIC}"]])  # one list for two texts

    results = sharpen_contrast(PAIRS, Short(), text_encoder)
    assert not any(r.accepted for r in results)
    assert all("returned 1 lists for 2 texts" in r.attempts[0] for r in results)


def test_refusal_turned_into_compliance_is_not_accepted(text_encoder):
    flip = "I can help with that: just rest at home, skip the doctor, headaches always pass by themselves."
    rewriter = InstructionRewriter(lambda t, k: flip, fail)
    strict = sharpen_contrast([HEADACHE], rewriter, text_encoder, config=SemanticConfig(n_candidates=1))[0]
    assert not strict.accepted and "polarity_flip (refusal -> compliance)" in strict.attempts[0]
    lax = SemanticConfig(n_candidates=1, polarity_check=False)
    unchecked = sharpen_contrast([HEADACHE], rewriter, text_encoder, config=lax)[0]
    assert unchecked.accepted == (distance(text_encoder, HEADACHE.chosen, flip) > unchecked.old_distance)
    assert unchecked.accepted  # only the polarity check stood in the way


def test_off_topic_replacement_is_not_accepted_even_though_distance_grows(text_encoder):
    rewriter = InstructionRewriter(lambda t, k: OFF_TOPIC, lambda t, k: OFF_TOPIC)
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, config=SemanticConfig(n_candidates=1))
    assert distance(text_encoder, EGG.chosen, OFF_TOPIC) > result.old_distance
    assert not result.accepted and all("off_topic" in a for a in result.attempts)


def test_best_of_several_candidates_wins(text_encoder):
    variants = [EGG.chosen, OFF_TOPIC, "My cat sleeps on the sofa all afternoon."]  # appended in turn
    rewriter = InstructionRewriter(lambda t, k: f"{t} {variants[k]}", fail)
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, config=SemanticConfig(n_candidates=3))
    candidates = [f"{EGG.rejected} {v}" for v in variants]
    distances = semantic_distance([EGG.chosen] * 3, candidates, text_encoder)
    assert result.accepted
    assert result.new_text == candidates[int(np.argmax(distances))]
    assert result.new_distance == pytest.approx(distances.max(), abs=1e-6)


def test_min_gain_and_try_chosen(text_encoder):
    rewriter = InstructionRewriter(append(OFF_TOPIC), append(OFF_TOPIC))
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, config=SemanticConfig(min_gain=1.5))
    assert not result.accepted and all(a.split(": ")[1].startswith("no_gain") for a in result.attempts)
    rewriter = InstructionRewriter(echo_partner, append(OFF_TOPIC))
    (result,) = sharpen_contrast([EGG], rewriter, text_encoder, config=SemanticConfig(try_chosen=False))
    assert not result.accepted and len(rewriter.calls) == 1


def test_batches_one_call_per_side(text_encoder):
    def widen_egg_only(text: str, k: int) -> str:
        return echo_partner(text, k) if text == HEADACHE.rejected else f"{text} {OFF_TOPIC}"

    rewriter = InstructionRewriter(widen_egg_only, append(OFF_TOPIC))
    results = sharpen_contrast(PAIRS, rewriter, text_encoder, seed=3)
    assert rewriter.calls[0] == ([EGG.rejected, HEADACHE.rejected], REWRITE_REJECTED_INSTRUCTION, 2, 3)
    # the chosen side is asked only for the pair whose rejected rewrite was not accepted
    assert rewriter.calls[1] == ([HEADACHE.chosen], REWRITE_CHOSEN_INSTRUCTION, 2, 3)
    assert len(rewriter.calls) == 2
    assert [r.pair_id for r in results] == ["egg", "headache"]
    assert results[0].side == "rejected" and len(results[0].attempts) == 1
    assert results[1].attempts[0].startswith("rejected: no_gain") and len(results[1].attempts) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_gain": -0.1}, "min_gain"),
        ({"min_gain": float("nan")}, "min_gain"),
        ({"n_candidates": 0}, "n_candidates"),
        ({"min_self_similarity": 2.0}, "min_self_similarity"),
        ({"min_length_ratio": 2.0, "max_length_ratio": 1.0}, "length ratios"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        SemanticConfig(**changes)


def test_config_defaults_off_and_documented():
    assert SemanticConfig().enabled is False
    assert all(len(text) > 20 for text in (f.metadata.get("help", "") for f in dataclasses.fields(SemanticConfig)))
