"""Paraphrase filters on the real packaged MiniLM: every reason fires on a hand-written case."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mars_core.augment.filters import (
    REASONS,
    Candidate,
    FilterConfig,
    ParaphraseRequest,
    candidates_frame,
    filter_candidates,
    pass_rates_by_length,
    polarity_flipped,
    refusal_polarity,
)

EGG = "To boil an egg, place it in boiling water for about nine minutes, then cool it in cold water."
EGG_REJECTED = "I don't know much about cooking, maybe ask someone else."
GOOD_1 = "Put the egg in boiling water for roughly nine minutes and afterwards chill it in cold water."
GOOD_2 = "Cook the egg in simmering water for nine minutes, then move it into an ice bath."

LOCK_REFUSAL = "I'm sorry, but I can't help you pick a lock that isn't yours."
LOCK_COMPLIANCE = "Sure, insert a tension wrench into the bottom of the keyhole and rake the pins upward."


def egg_request() -> ParaphraseRequest:
    return ParaphraseRequest("egg", "chosen", EGG, EGG_REJECTED, "How do I boil an egg?")


def judge(encoder, outputs: list[str], config: FilterConfig | None = None, request=None) -> list[Candidate]:
    return filter_candidates([request or egg_request()], [outputs], encoder, config or FilterConfig())


class CountingEncoder:
    """The real encoder, counting how often it is called (to check batching)."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0

    def encode(self, texts):
        self.calls += 1
        return self.inner.encode(texts)


# --- each reason on its own case -------------------------------------------------------------


def test_good_paraphrases_pass(text_encoder):
    cands = judge(text_encoder, [GOOD_1, GOOD_2])
    assert [c.reasons for c in cands] == [[], []]
    assert all(c.kept for c in cands)
    for c in cands:
        assert 0.75 <= c.similarity <= 0.985
        assert c.other_similarity < c.similarity
        assert c.polarity_source == c.polarity_candidate


def test_exact_copy_up_to_case_and_whitespace(text_encoder):
    (cand,) = judge(text_encoder, ["  " + EGG.upper().replace(" ", "   ") + "\n"])
    assert "exact_copy" in cand.reasons
    assert "too_similar" not in cand.reasons  # a copy is its own category, not also a near copy


def test_near_copy_is_too_similar(text_encoder):
    near = EGG.replace("place it", "put it")
    (cand,) = judge(text_encoder, [near])
    assert cand.reasons == ["too_similar"]
    assert cand.similarity > 0.985
    (relaxed,) = judge(text_encoder, [near], FilterConfig(max_similarity=0.999))
    assert relaxed.kept


def test_unrelated_text_is_too_dissimilar(text_encoder):
    (cand,) = judge(text_encoder, ["The stock market closed higher on Tuesday after strong earnings news."])
    assert "too_dissimilar" in cand.reasons
    assert cand.similarity < 0.3


def test_too_short_and_too_long(text_encoder):
    short, long_ = judge(
        text_encoder, ["Boil the egg nine minutes, then cool it.", f"{GOOD_1} {GOOD_2} {GOOD_1}"]
    )
    assert short.reasons == ["length_ratio"] and short.length_ratio < 0.5
    assert long_.reasons == ["length_ratio"] and long_.length_ratio > 2.0
    chars = FilterConfig(length_unit="chars", min_length_ratio=0.3)
    short_chars, _ = judge(text_encoder, ["Boil the egg nine minutes, then cool it.", GOOD_1], chars)
    assert short_chars.length_ratio == pytest.approx(
        len("Boil the egg nine minutes, then cool it.") / len(EGG)
    )
    assert short_chars.kept


def test_near_duplicate_candidates_of_the_same_source(text_encoder):
    twin = GOOD_1.replace("roughly", "about")
    cands = judge(text_encoder, [GOOD_1, twin, GOOD_1, GOOD_2])
    assert [c.reasons for c in cands] == [[], ["near_duplicate"], ["near_duplicate"], []]
    # the same text for another source is not a duplicate: dedupe is per request
    other = ParaphraseRequest("egg2", "chosen", EGG, EGG_REJECTED)
    two = filter_candidates([egg_request(), other], [[GOOD_1], [GOOD_1]], text_encoder, FilterConfig())
    assert all(c.kept for c in two)


def test_duplicate_of_a_dropped_candidate_is_not_a_duplicate(text_encoder):
    unrelated = "The stock market closed higher on Tuesday after strong earnings news."
    first, second = judge(text_encoder, [unrelated, unrelated])
    assert "too_dissimilar" in first.reasons
    assert first.reasons == second.reasons  # no "near_duplicate": only kept candidates are references


def test_chosen_paraphrase_closer_to_the_rejected_response_is_a_side_flip(text_encoder):
    drifted = "I'm not much of a cook, so maybe ask someone else about eggs."
    lenient = FilterConfig(min_similarity=0.3)
    (cand,) = judge(text_encoder, [drifted], lenient)
    assert cand.other_similarity >= cand.similarity
    assert cand.reasons == ["side_flip"]
    (unchecked,) = judge(text_encoder, [drifted], FilterConfig(min_similarity=0.3, side_consistency=False))
    assert unchecked.kept


def test_side_check_needs_the_other_response(text_encoder):
    request = ParaphraseRequest("egg", "chosen", EGG, "", "")
    (cand,) = judge(text_encoder, [GOOD_1], request=request)
    assert math.isnan(cand.other_similarity) and cand.kept


def test_refusal_turned_into_compliance_is_a_polarity_flip(text_encoder):
    # The trial's case: cosine alone would keep it at a lenient threshold.
    request = ParaphraseRequest("trial", "chosen", "I can't help with that.", "", "")
    lenient = FilterConfig(min_similarity=0.5)
    flip, same = judge(
        text_encoder, ["I can help you with that.", "I cannot help you with that."], lenient, request
    )
    assert flip.reasons == ["polarity_flip"]
    assert (flip.polarity_source, flip.polarity_candidate) == ("refusal", "compliance")
    assert same.kept and same.polarity_candidate == "refusal"
    (unchecked,) = judge(
        text_encoder,
        ["I can help you with that."],
        FilterConfig(min_similarity=0.5, polarity_check=False),
        request,
    )
    assert unchecked.kept


def test_rejected_side_compliance_turned_into_refusal(text_encoder):
    request = ParaphraseRequest("lock", "rejected", LOCK_COMPLIANCE, LOCK_REFUSAL, "How do I pick a lock?")
    good, flipped = judge(
        text_encoder,
        [
            "Of course: slide a tension wrench into the lower part of the keyhole, then rake the pins upward.",
            "I'm sorry, but I won't explain how to use a tension wrench to rake the pins of a keyhole.",
        ],
        FilterConfig(min_similarity=0.5),
        request,
    )
    assert good.kept
    assert "polarity_flip" in flipped.reasons


def test_several_reasons_at_once(text_encoder):
    rambling = " ".join(["The stock market closed higher on Tuesday after strong earnings news."] * 4)
    cands = judge(text_encoder, [rambling, "", "   "])
    assert {"too_dissimilar", "length_ratio"} <= set(cands[0].reasons)
    assert cands[1].reasons == cands[2].reasons == ["empty"]
    # a compliance (rejected) response turned into a refusal: off-topic, nearer the chosen side, flipped
    request = ParaphraseRequest("lock", "rejected", LOCK_COMPLIANCE, LOCK_REFUSAL)
    (flip,) = judge(text_encoder, ["I'm sorry, but I cannot help with that."], request=request)
    assert flip.reasons == ["too_dissimilar", "side_flip", "polarity_flip"]
    assert all(r in REASONS for c in [*cands, flip] for r in c.reasons)


def test_one_encode_call_and_one_candidate_per_output(text_encoder):
    counting = CountingEncoder(text_encoder)
    requests = [egg_request(), ParaphraseRequest("lock", "chosen", LOCK_REFUSAL, LOCK_COMPLIANCE)]
    outputs = [
        [GOOD_1, GOOD_2, ""],
        ["I'm sorry, but I won't help you open a lock that belongs to someone else."],
    ]
    cands = filter_candidates(requests, outputs, counting, FilterConfig())
    assert counting.calls == 1
    assert [(c.pair_id, c.candidate_index) for c in cands] == [
        ("egg", 0),
        ("egg", 1),
        ("egg", 2),
        ("lock", 0),
    ]
    assert filter_candidates([], [], counting, FilterConfig()) == []


def test_similarities_match_the_encoder(text_encoder):
    (cand,) = judge(text_encoder, [GOOD_2])
    assert cand.similarity == pytest.approx(float(text_encoder.cosine([GOOD_2], [EGG])[0]), abs=1e-5)
    assert cand.other_similarity == pytest.approx(
        float(text_encoder.cosine([GOOD_2], [EGG_REJECTED])[0]), abs=1e-5
    )


def test_mismatched_inputs_and_bad_side_are_errors(text_encoder):
    with pytest.raises(ValueError, match="must match one to one"):
        filter_candidates([egg_request()], [[GOOD_1], [GOOD_2]], text_encoder, FilterConfig())
    with pytest.raises(ValueError, match="side must be"):
        ParaphraseRequest("x", "preferred", "a", "b")


def test_to_dict_and_frame(text_encoder):
    cands = judge(text_encoder, [GOOD_1, EGG])
    row = cands[1].to_dict()
    assert row["kept"] is False and row["reasons"] == ["exact_copy"] and row["source_text"] == EGG
    frame = candidates_frame(cands)
    assert len(frame) == 2 and frame["kept"].tolist() == [True, False]


# --- pass rates by source length ---------------------------------------------------------------


def test_pass_rate_table_counts_add_up(text_encoder):
    short = ParaphraseRequest("s", "chosen", "Yes, boil it for nine minutes.", "No idea, sorry.")
    requests = [egg_request(), short]
    outputs = [
        [GOOD_1, GOOD_2, EGG, "", "Boil the egg."],
        ["Boil it for nine minutes, yes.", "Yes, boil it for nine minutes.", "The stock market rose today."],
    ]
    cands = filter_candidates(requests, outputs, text_encoder, FilterConfig())
    table = pass_rates_by_length(cands)
    assert table["bucket"].tolist() == ["0-9", "10-24", "25-49", "50-99", "100+"]
    assert table["n_candidates"].sum() == len(cands)
    assert table["n_kept"].sum() == sum(c.kept for c in cands)
    for reason in REASONS:
        assert table[reason].sum() == sum(reason in c.reasons for c in cands)
    by = table.set_index("bucket")
    assert by.loc["0-9", "n_candidates"] == 3 and by.loc["10-24", "n_candidates"] == 5  # 6 and 19 words
    assert by.loc["10-24", "pass_rate"] == pytest.approx(by.loc["10-24", "n_kept"] / 5)
    assert np.isnan(by.loc["100+", "pass_rate"]) and by.loc["100+", "n_candidates"] == 0


def test_pass_rate_table_custom_edges_and_errors(text_encoder):
    cands = judge(text_encoder, [GOOD_1])
    table = pass_rates_by_length(cands, edges=(0, 20, math.inf))
    assert table["bucket"].tolist() == ["0-19", "20+"]
    assert table["n_candidates"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="strictly increasing"):
        pass_rates_by_length(cands, edges=(0, 10, 5))
    with pytest.raises(ValueError, match="outside the edges"):
        pass_rates_by_length(cands, edges=(0, 5))


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_similarity": 0.9, "max_similarity": 0.8}, "must be below max_similarity"),
        ({"max_similarity": 1.5}, r"must lie in \[-1, 1\]"),
        ({"dedupe_threshold": float("nan")}, "dedupe_threshold"),
        ({"min_length_ratio": 2.0, "max_length_ratio": 1.0}, "must be below max_length_ratio"),
        ({"min_length_ratio": -0.1}, "non-negative"),
        ({"max_length_ratio": math.inf}, "finite"),
        ({"length_unit": "tokens"}, "'words' or 'chars'"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        FilterConfig(**changes)


def test_every_config_field_has_help():
    helps = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(FilterConfig)}
    assert set(helps) == {
        "min_similarity",
        "max_similarity",
        "min_length_ratio",
        "max_length_ratio",
        "length_unit",
        "dedupe_threshold",
        "side_consistency",
        "polarity_check",
    }
    assert all(len(text) > 20 for text in helps.values())


# --- refusal polarity ----------------------------------------------------------------------------

POLARITY_CASES = [
    ("I can't help with that.", "refusal"),
    ("I can help you with that.", "compliance"),
    ("I cannot assist with that request.", "refusal"),
    ("I can not assist with that request.", "refusal"),
    ("I won't help you hurt someone.", "refusal"),
    ("I\u2019m sorry, but I can\u2019t provide that information.", "refusal"),
    ("I am not able to give medical advice.", "refusal"),
    ("I'm unable to do that for you.", "refusal"),
    ("I must decline to answer this.", "refusal"),
    ("I'll have to respectfully decline.", "refusal"),
    ("It would be illegal to access someone else's email.", "refusal"),
    ("That's dangerous, please don't do it.", "refusal"),
    ("I'm sorry, I can't do that.", "refusal"),
    ("As an AI, I cannot form opinions about people.", "refusal"),
    ("I don't think I should help with that.", "refusal"),
    ("That is not something I can help with.", "refusal"),
    ("I would advise against doing this.", "refusal"),
    ("I cannot in good conscience recommend that.", "refusal"),
    ("No, I won't do that.", "refusal"),
    ("I'm not comfortable sharing that.", "refusal"),
    ("I'd rather not say.", "refusal"),
    ("I can't help with that, but you can call a locksmith.", "refusal"),
    ("Sure! First, preheat the oven to 180C.", "compliance"),
    ("Certainly. Here is a short poem about the sea.", "compliance"),
    ("Here's how you can reset your router: unplug it for ten seconds.", "compliance"),
    ("You can use a hair dryer to loosen the sticker.", "compliance"),
    ("Step 1: open the settings menu.", "compliance"),
    ("Of course, I'd be happy to help.", "compliance"),
    ("Yes, you should apply the glue thinly.", "compliance"),
    ("I'll help you write the email.", "compliance"),
    ("1. Gather the ingredients. 2. Mix them.", "compliance"),
    ("Let me explain how tides work.", "compliance"),
    ("Absolutely, it is easy: just add salt.", "compliance"),
    ("Sure, but it would be illegal to sell it.", "compliance"),
    ("The capital of France is Paris.", "neutral"),
    ("I'm sorry to hear that you lost your job.", "neutral"),
    ("Hmm, I'm not sure what you mean.", "neutral"),
    ("You can't do that legally.", "neutral"),
    ("You cannot park there after six.", "neutral"),
    ("", "neutral"),
    ("   ", "neutral"),
]


@pytest.mark.parametrize(("text", "expected"), POLARITY_CASES)
def test_refusal_polarity(text, expected):
    assert refusal_polarity(text) == expected


def test_polarity_flip_is_only_refusal_against_compliance():
    assert polarity_flipped("refusal", "compliance") and polarity_flipped("compliance", "refusal")
    assert not polarity_flipped("refusal", "neutral")
    assert not polarity_flipped("neutral", "compliance")
    assert not polarity_flipped("refusal", "refusal")


def test_a_negated_opener_is_not_compliance():
    # found in review: "Absolutely not" read as a compliance opener, hiding a refusal flip
    assert refusal_polarity("Absolutely not, I will not help you make a weapon.") != "compliance"
    assert refusal_polarity("Sure, no problem. Here's how.") == "compliance"
