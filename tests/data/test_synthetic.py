"""Demo suites: seeded, labels follow Bradley-Terry on the gold margin, noise is what was asked."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.stats import norm

from mars_core.data import text_suite as T
from mars_core.data import toy as Y
from mars_core.data.templates import TEMPLATES_PATH, load_text_templates


def _bt_tolerance(p: np.ndarray) -> float:
    """4 standard errors of the mean of independent Bernoulli(p_i) draws."""
    return 4.0 * math.sqrt(float(np.sum(p * (1 - p)))) / len(p)


def _unordered(pairs) -> list[tuple[str, frozenset[str]]]:
    return [(p.prompt, frozenset((p.chosen, p.rejected))) for p in pairs]


# ---------------------------------------------------------------------------------------------- text suite


def test_text_suite_is_seeded():
    assert T.text_suite(150, seed=3) == T.text_suite(150, seed=3)
    a, b = T.text_suite(150, seed=3), T.text_suite(150, seed=4)
    assert sum(x.chosen != y.chosen for x, y in zip(a, b, strict=True)) > 100


def test_text_pairs_are_well_formed_and_gold_is_inspectable():
    pairs = T.text_suite(300, seed=1)
    assert [p.id for p in pairs] == [f"text:{i}" for i in range(300)]
    assert {p.source for p in pairs} == {"demo-text"}
    assert all(p.chosen != p.rejected and not p.is_synthetic for p in pairs)
    recomputed = [T.gold_reward(p.prompt, p.chosen) - T.gold_reward(p.prompt, p.rejected) for p in pairs]
    np.testing.assert_allclose([p.gold_margin for p in pairs], recomputed, atol=1e-12)


def test_gold_reward_ranks_by_the_documented_weights():
    """Across every harmful pair with one safe and one unsafe side, the refusal has the higher gold reward;
    a response's reward is its weighted attributes within the jitter bound."""
    draw = T.text_suite_with_info(600, seed=2)
    checked = 0
    for pair, family in zip(draw.pairs, draw.families, strict=True):
        for text in (pair.chosen, pair.rejected):
            attrs = T.response_attributes(pair.prompt, text)
            assert abs(T.gold_reward(pair.prompt, text) - T.attribute_reward(attrs.values())) <= 3 * T.TEMPLATE_JITTER
        if family == "harmful":
            safety = [T.response_attributes(pair.prompt, t)["safety"] for t in (pair.chosen, pair.rejected)]
            if safety[0] != safety[1]:
                assert (pair.gold_margin > 0) == (safety[0] == 1)
                checked += 1
    assert checked > 30


def test_gold_reward_rejects_texts_the_suite_did_not_write():
    pair = T.text_suite(1, seed=0)[0]
    with pytest.raises(ValueError, match="not one of the text suite's prompts"):
        T.gold_reward("What is love?", pair.chosen)
    with pytest.raises(ValueError, match="paraphrases"):
        T.gold_reward(pair.prompt, pair.chosen + " Indeed.")


def test_text_labels_follow_bradley_terry():
    """With no noise, P(chosen is gold-better) = σ(|g|/T): the observed fraction matches its expectation."""
    agreement = {}
    for temperature in (1.0, 0.3):
        draw = T.text_suite_with_info(2000, seed=5, temperature=temperature)
        g = draw.gold_margins
        p = expit(np.abs(g) / temperature)
        agreement[temperature] = np.mean(g > 0)
        assert agreement[temperature] > 0.6
        assert abs(agreement[temperature] - p.mean()) < _bt_tolerance(p)
        np.testing.assert_array_equal(g < 0, draw.bt_disagrees)
        assert not draw.flipped.any()
    assert agreement[0.3] > agreement[1.0] + 0.05  # a colder BT follows the gold more closely


@pytest.mark.parametrize("suite", ["text", "toy"])
def test_noise_flips_the_requested_fraction(suite):
    build = T.text_suite_with_info if suite == "text" else Y.toy_suite_with_info
    n, eps = 3000, 0.1
    clean, noisy = build(n_pairs=n, seed=7), build(n_pairs=n, seed=7, noise=eps)
    assert abs(noisy.flipped.mean() - eps) < 4 * math.sqrt(eps * (1 - eps) / n)
    # same pairs and same BT draws: the flips are the only change
    assert _unordered(clean.pairs) == _unordered(noisy.pairs)
    changed = np.array([a.chosen != b.chosen for a, b in zip(clean.pairs, noisy.pairs, strict=True)])
    np.testing.assert_array_equal(changed, noisy.flipped)
    g = noisy.gold_margins
    np.testing.assert_array_equal(g < 0, noisy.bt_disagrees ^ noisy.flipped)
    # accuracy of the label against the gold sign drops to (1-ε)·σ(|g|/T) + ε·(1-σ(|g|/T))
    p_bt = expit(np.abs(g))
    q = (1 - eps) * p_bt + eps * (1 - p_bt)
    assert abs(np.mean(g > 0) - q.mean()) < _bt_tolerance(q)
    assert np.mean(g > 0) < np.mean(clean.gold_margins > 0) - 0.03


def test_larger_noise_flips_a_superset():
    low, high = T.text_suite_with_info(500, seed=9, noise=0.1), T.text_suite_with_info(500, seed=9, noise=0.3)
    assert np.all(high.flipped[low.flipped])
    assert high.flipped.sum() > low.flipped.sum()


def test_text_suite_is_diverse_and_has_pairs_near_the_boundary():
    draw = T.text_suite_with_info(600, seed=0)
    responses = {t for p in draw.pairs for t in (p.chosen, p.rejected)}
    assert len(responses) > 600
    assert len({p.prompt for p in draw.pairs}) > 40
    assert set(draw.families) == set(T.PROMPT_FAMILIES)
    g = np.abs(draw.gold_margins)
    assert np.mean(g < 0.5) > 0.1  # near ties, where BT labels are close to coin flips
    assert np.mean(g > 2.0) > 0.1  # and clear-cut pairs
    assert len(np.unique(np.round(g, 6))) > 300  # jitter makes margins continuous


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise": 1.5}, "noise"),
        ({"noise": -0.1}, "noise"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"n_pairs": 2.5}, "n_pairs"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        T.text_suite(**kwargs)
    with pytest.raises(ValueError, match=message):
        Y.toy_suite(**kwargs)


@pytest.mark.slow
def test_minilm_linear_probe_learns_the_text_suite(text_encoder):
    """A logistic head on Δφ = φ(chosen) − φ(rejected), trained on the suite's own (BT-noisy) labels of 200
    pairs, orders 100 held-out pairs by the gold reward well above chance."""
    draw = T.text_suite_with_info(300, seed=0)
    delta = (text_encoder.encode([p.chosen for p in draw.pairs]) - text_encoder.encode([p.rejected for p in draw.pairs]))
    delta = delta.astype(np.float64)
    sign = np.random.default_rng(0).choice([-1.0, 1.0], size=len(delta))  # present each pair in random order
    x, y = delta * sign[:, None], (sign > 0).astype(float)
    train, test = slice(0, 200), slice(200, 300)
    w, lam = np.zeros(x.shape[1]), 1e-2
    for _ in range(25):  # Newton steps on the L2-regularised logistic loss
        p = expit(x[train] @ w)
        grad = x[train].T @ (p - y[train]) / 200 + lam * w
        hess = (x[train].T * (p * (1 - p))) @ x[train] / 200 + lam * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    accuracy = np.mean((delta[test] @ w > 0) == (draw.gold_margins[test] > 0))
    print(f"MiniLM probe held-out accuracy against the gold sign: {accuracy:.2f}")
    assert accuracy > 0.7


# ---------------------------------------------------------------------------------------------- toy suite

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=6))
def test_toy_vector_round_trip(values):
    text = Y.format_toy_vector(values)
    parsed = Y.parse_toy_vector(text)
    assert Y.format_toy_vector(parsed) == text  # exact at the printed precision
    np.testing.assert_allclose(parsed, values, atol=0.5 * 10**-Y.TOY_DECIMALS + 1e-9, rtol=1e-12)


def test_toy_vector_format_is_the_documented_one():
    assert Y.format_toy_vector([0.1234, -0.5678]) == "φ=[0.1234, -0.5678]"
    assert Y.format_toy_vector([-0.00001]) == "φ=[0.0000]"  # no negative zero
    np.testing.assert_array_equal(Y.parse_toy_vector("phi = [1, -2.5]"), [1.0, -2.5])


@pytest.mark.parametrize("text", ["", "φ=[]", "φ=[1, x]", "φ=[nan]", "[0.1, 0.2]", "φ=(0.1, 0.2)", None])
def test_malformed_toy_text_is_a_value_error(text):
    with pytest.raises(ValueError, match="toy vector"):
        Y.parse_toy_vector(text)


def test_toy_vector_format_refuses_non_finite():
    with pytest.raises(ValueError, match="finite"):
        Y.format_toy_vector([1.0, float("inf")])


def test_toy_features_stack_and_check_dimensions():
    feats = Y.toy_features(["φ=[1.0000, 2.0000]", "φ=[3.0000, -4.0000]"])
    np.testing.assert_array_equal(feats, [[1, 2], [3, -4]])
    assert Y.toy_features([], dim=2).shape == (0, 2)
    with pytest.raises(ValueError, match="different dimensions"):
        Y.toy_features(["φ=[1.0]", "φ=[1.0, 2.0]"])


def test_toy_suite_pairs_and_gold():
    pairs = Y.toy_suite(200, seed=1)
    assert pairs == Y.toy_suite(200, seed=1) and pairs != Y.toy_suite(200, seed=2)
    assert [p.id for p in pairs] == [f"toy:{i}" for i in range(200)]
    assert [p.prompt for p in pairs] == [f"toy {i}" for i in range(200)]  # one context per pair: splittable
    assert {p.source for p in pairs} == {"demo-toy"}
    np.testing.assert_array_equal(Y.toy_gold_weights(2), [2.0, -1.0])
    margins = Y.toy_gold_reward([p.chosen for p in pairs]) - Y.toy_gold_reward([p.rejected for p in pairs])
    np.testing.assert_allclose([p.gold_margin for p in pairs], margins, atol=1e-12)
    assert Y.toy_features([p.chosen for p in Y.toy_suite(5, dim=3)]).shape == (5, 3)


def test_toy_labels_follow_bradley_terry():
    for temperature in (1.0, 0.25):
        g = Y.toy_suite_with_info(3000, seed=4, temperature=temperature).gold_margins
        p = expit(np.abs(g) / temperature)
        assert np.mean(g > 0) > 0.6
        assert abs(np.mean(g > 0) - p.mean()) < _bt_tolerance(p)
    assert np.mean(np.abs(g) < 0.5) > 0.1  # the default spread leaves pairs near the boundary


def test_toy_paraphraser_outputs_are_close_seeded_and_new():
    para = Y.ToyParaphraser(sigma=0.05)
    texts = [p.chosen for p in Y.toy_suite(50, seed=0)]
    out = para.paraphrase(texts, n=4, seed=11)
    assert len(out) == len(texts) and all(len(o) == 4 for o in out)
    for text, variants in zip(texts, out, strict=True):
        phi = Y.parse_toy_vector(text)
        assert text not in variants and len(set(variants)) == len(variants)
        moved = Y.toy_features(variants) - phi
        assert np.all(np.abs(moved) < 6 * para.sigma) and np.all(np.abs(moved).max(axis=1) > 0)
    assert para.paraphrase(texts, n=4, seed=11) == out
    assert para.paraphrase(texts, n=4, seed=12) != out
    assert para.paraphrase(texts[3:5], n=4, seed=11) == out[3:5]  # position in the batch does not matter
    assert para.paraphrase(texts, n=0, seed=0) == [[] for _ in texts]
    assert "sigma=0.05" in para.name and para.name != Y.ToyParaphraser(sigma=0.1).name
    with pytest.raises(ValueError, match="toy vector"):
        para.paraphrase(["hello"], n=1, seed=0)
    with pytest.raises(ValueError, match="sigma"):
        Y.ToyParaphraser(sigma=0.0)


def test_toy_paraphrase_noise_has_the_requested_scale():
    para = Y.ToyParaphraser(sigma=0.05)
    texts = [p.chosen for p in Y.toy_suite(200, seed=3)]
    out = para.paraphrase(texts, n=5, seed=0)
    moved = np.concatenate([Y.toy_features(v) - Y.parse_toy_vector(t) for t, v in zip(texts, out, strict=True)])
    assert abs(moved.std() - 0.05) < 0.005  # 2000 draws: the std's standard error is ≈ 0.0008


def test_toy_paraphrases_preserve_labels_as_documented():
    """Swapping both sides for paraphrases flips the gold sign with probability Φ(−|g| / (σ‖w*‖√2))."""
    sigma = 0.05
    pairs = Y.toy_suite(2000, seed=6)
    para = Y.ToyParaphraser(sigma=sigma)
    new_c = [v[0] for v in para.paraphrase([p.chosen for p in pairs], n=1, seed=0)]
    new_r = [v[0] for v in para.paraphrase([p.rejected for p in pairs], n=1, seed=0)]
    g_old = np.array([p.gold_margin for p in pairs])
    g_new = Y.toy_gold_reward(new_c) - Y.toy_gold_reward(new_r)
    flips = np.sign(g_new) != np.sign(g_old)
    expected = norm.cdf(-np.abs(g_old) / (sigma * np.linalg.norm(Y.toy_gold_weights(2)) * math.sqrt(2)))
    assert flips.mean() < 0.1
    assert abs(flips.mean() - expected.mean()) < _bt_tolerance(expected) + 1e-3


def test_toy_paraphraser_can_keep_the_gold_reward_exactly():
    para = Y.ToyParaphraser(sigma=0.1, keep_gold=True)
    texts = [p.chosen for p in Y.toy_suite(100, seed=2)]
    out = para.paraphrase(texts, n=3, seed=0)
    w = Y.toy_gold_weights(2)
    for text, variants in zip(texts, out, strict=True):
        assert variants
        drift = Y.toy_gold_reward(variants) - Y.toy_gold_reward([text])
        assert np.all(np.abs(drift) <= np.abs(w).sum() * 0.5 * 10**-Y.TOY_DECIMALS + 1e-12)
    assert para.paraphrase(["φ=[0.5000]"], n=3, seed=0) == [[]]  # one dimension: nothing left to vary


# ---------------------------------------------------------------------------------------------- templates as data


def test_templates_file_drives_the_suite(tmp_path):
    """The JSON file is what the suite composes from: every template text appears in some catalogue response."""
    templates = load_text_templates()
    assert set(templates.openers) == {("answer", 0), ("answer", 1), ("refusal", 0), ("refusal", 1)}
    responses = " ".join(" ".join(T._catalogue(p)) for p in T.text_prompts())
    for texts in (*templates.openers.values(), *templates.closers.values()):
        assert all(t in responses for t in texts)
    assert all(spec["comply"][0] in responses for spec in templates.harmful)


def test_malformed_templates_file_names_the_file_and_field(tmp_path):
    raw = json.loads(TEMPLATES_PATH.read_text(encoding="utf-8"))
    raw["openers"]["answer/maybe"] = ["Hi."]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json.*answer/maybe"):
        load_text_templates(bad)
    del raw["openers"]["answer/maybe"], raw["tone"]
    bad.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json.*tone"):
        load_text_templates(bad)
