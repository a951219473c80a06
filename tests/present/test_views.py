"""views.py: the tables the pages show, built from a real toy run (milliseconds per step)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from mars_core.analysis.curvature import sigmoid_prime
from mars_core.augment.allocation import AllocationConfig
from mars_core.data.toy import toy_features
from mars_core.present import views
from mars_core.run.config import DataConfig, RefineConfig, RunConfig, with_overrides
from mars_core.run.refine import RefinementRun
from mars_core.store.sqlite import Store

FIXTURES = Path("tests/fixtures/data")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A MARS toy run with two refinement epochs (cross-fitted allocation margins)."""
    store = Store(tmp_path_factory.mktemp("views") / "toy.db")
    config = with_overrides(
        RunConfig(data=DataConfig(source="demo:toy", n_pairs=120),
                  refine=RefineConfig(epochs=3, budget_per_epoch=30, cross_fit_folds=3)),
        allocation={"strategy": "mars", "tau": 2.0},
    )
    run = RefinementRun.create(store, config)
    run.step()
    run.step()
    return store, run.run_id, config


def test_epoch_frame_flattens_metrics_allocation_and_spectrum(toy_run):
    store, run_id, _ = toy_run
    table = store.epoch_table(run_id)
    frame = views.epoch_frame(table)
    assert frame["epoch"].tolist() == [0, 1, 2]
    assert frame["paraphrases_allocated"].tolist() == [0, 30, 30]
    assert frame.loc[1, "alloc_strategy"] == "mars"
    assert frame["trace"].tolist() == pytest.approx([t["curvature"]["trace"] for t in table])
    assert frame["top_eigenvalue"].tolist() == pytest.approx([t["curvature"]["top_k"][0] for t in table])
    assert frame["test_accuracy"].between(0, 1).all()
    assert np.isnan(frame.loc[0, "picked_curvature"]) and np.isfinite(frame.loc[1, "picked_curvature"])


@settings(max_examples=60, deadline=None)
@given(hs.lists(hs.lists(hs.floats(-50, 50), min_size=1, max_size=30), min_size=1, max_size=4),
       hs.integers(1, 60))
def test_shared_bins_cover_every_sample_with_zero_on_an_edge(samples, n_bins):
    edges = views.shared_bins([np.array(s) for s in samples], n_bins)
    values = np.concatenate([np.array(s) for s in samples])
    assert np.all(np.diff(edges) > 0)
    assert edges[0] <= values.min() and edges[-1] >= values.max()
    for s in samples:  # np.histogram drops nothing that lies within the edges
        assert np.histogram(s, edges)[0].sum() == len(s)
    if values.min() < 0 < values.max():
        assert np.min(np.abs(edges)) < 1e-9 * max(1.0, np.abs(edges).max())


def test_margins_by_epoch_and_hardest_pairs(toy_run):
    store, run_id, _ = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    by_epoch = views.margins_by_epoch(frame, "test")
    assert list(by_epoch) == [0, 1, 2]
    assert all(len(v) == len(store.get_pairs(run_id, split="test")) for v in by_epoch.values())
    pairs = store.get_pairs(run_id, split="train", synthetic=False)
    hard = views.hardest_pairs(frame, pairs, 2, "train", n=10)
    train2 = frame[(frame["epoch"] == 2) & (frame["split"] == "train")]
    assert len(hard) == 10
    assert np.all(np.diff(hard["margin"].abs()) >= 0)
    assert hard["margin"].abs().iloc[0] == pytest.approx(train2["abs_margin"].min())
    by_id = {p.id: p for p in pairs}
    assert all(by_id[r.pair_id].chosen == r.chosen for r in hard.itertuples())
    wrong = views.hardest_pairs(frame, pairs, 2, "train", n=500, misranked_only=True)
    assert len(wrong) == int((train2["margin"] < 0).sum())
    assert (wrong["margin"] < 0).all() and wrong["misranked"].all()


def test_allocation_frame_is_the_stored_allocation_sorted(toy_run):
    store, run_id, config = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    table = views.allocation_frame(frame, 1)
    assert table["rank"].tolist() == list(range(1, len(table) + 1))
    assert np.all(np.diff(table["q"]) <= 0)
    assert table["count"].sum() == config.refine.budget_per_epoch
    assert table["q"].sum() == pytest.approx(1.0)


def test_what_if_at_the_configured_tau_reproduces_the_stored_allocation(toy_run):
    """The Budget page's live recomputation must agree with what the step actually did."""
    store, run_id, config = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    for epoch in (1, 2):
        rows = frame[(frame["epoch"] == epoch) & (frame["split"] == "train")]
        what_if, summary = views.what_if_allocations(
            rows["alloc_margin"].to_numpy(), config.refine.budget_per_epoch, config.allocation,
            seed=config.refine.seed * 1000 + epoch, pair_ids=rows["pair_id"].tolist())
        mars = what_if[what_if["strategy"] == "mars"]
        assert mars["count"].tolist() == rows["count"].astype(int).tolist()
        assert mars["q"].to_numpy() == pytest.approx(rows["q"].to_numpy())
        stored = store.get_epoch(run_id, epoch).allocation
        got = summary.set_index("strategy").loc["mars"]
        assert got["effective_n"] == pytest.approx(stored["effective_n"])
        assert got["tau_in_force"] == pytest.approx(stored["tau_in_force"])


def test_what_if_compares_strategies_at_the_same_budget():
    margins = np.linspace(-2, 3, 50)
    what_if, summary = views.what_if_allocations(margins, 40, AllocationConfig(tau=3.0))
    totals = what_if.groupby("strategy")["count"].sum()
    assert set(totals) == {40}
    by = summary.set_index("strategy")
    assert by.loc["uniform", "effective_n"] == pytest.approx(50)
    assert by.loc["mars", "mean_abs_margin_picked"] < by.loc["uniform", "mean_abs_margin_picked"] < \
        by.loc["won", "mean_abs_margin_picked"]
    flat, _ = views.what_if_allocations(margins, 40, dataclasses.replace(AllocationConfig(), tau=0.0), strategies=("mars",))
    assert flat["q"].to_numpy() == pytest.approx(np.full(50, 1 / 50))
    with pytest.raises(ValueError, match="pair ids"):
        views.what_if_allocations(margins, 40, AllocationConfig(), pair_ids=["a"])


def test_spectrum_and_trend_frames(toy_run):
    store, run_id, _ = toy_run
    table = store.epoch_table(run_id)
    spectrum = views.spectrum_frame(table, "run A")
    assert set(spectrum["epoch"]) == {0, 1, 2}
    assert (spectrum.groupby("epoch")["index"].max() == 2).all()  # the toy's Hessian is 2×2
    assert (spectrum["abs_eigenvalue"] == spectrum["eigenvalue"].abs()).all()
    assert set(spectrum["sign"]) <= {"positive", "negative", "zero"}
    trend = views.curvature_trend_frame({"A": views.epoch_frame(table), "B": views.epoch_frame(table[:2])})
    assert trend.groupby("run").size().to_dict() == {"A": 3, "B": 2}
    assert "picked_curvature" in trend and "mean_curvature" in trend


def test_curvature_scatter_recovers_the_true_delta_phi_norm(toy_run):
    store, run_id, _ = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    points = views.curvature_scatter_frame(frame, 1)
    pairs = {p.id: p for p in store.get_pairs(run_id, split="train", synthetic=False)}
    ordered = [pairs[i] for i in points["pair_id"]]
    dphi = toy_features([p.chosen for p in ordered]) - toy_features([p.rejected for p in ordered])
    assert points["dphi_norm"].to_numpy() == pytest.approx(np.linalg.norm(dphi, axis=1), rel=1e-6)
    assert points["curvature"].to_numpy() == pytest.approx(
        sigmoid_prime(points["margin"].to_numpy()) * np.linalg.norm(dphi, axis=1) ** 2, rel=1e-6)
    assert points["count"].sum() == 30


def test_curvature_concentration_reads_the_theorem_honestly():
    margins = np.linspace(0, 4, 200)
    same_norm = pd.DataFrame({"abs_margin": margins, "dphi_norm": 1.0, "curvature": sigmoid_prime(margins)})
    facts = views.curvature_concentration(same_norm)
    assert facts["top_share_small_margin"] == 1.0 and facts["rank_correlation"] < -0.99
    # when ‖Δφ‖ grows with |Δ| (as trained margins do: Δ = wᵀΔφ), the largest contributions move away from 0
    norms = 0.2 + 2 * margins
    growing = pd.DataFrame({"abs_margin": margins, "dphi_norm": norms, "curvature": sigmoid_prime(margins) * norms**2})
    facts = views.curvature_concentration(growing)
    assert facts["top_share_small_margin"] < 0.5 and facts["rank_correlation"] > 0


def test_synthetic_pairs_frame_links_children_to_parents(toy_run):
    store, run_id, _ = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    pairs = store.get_pairs(run_id)
    table = views.synthetic_pairs_frame(pairs, store.get_paraphrases(run_id), frame)
    synthetic = [p for p in pairs if p.is_synthetic]
    assert len(table) == len(synthetic) > 0
    by_id = {p.id: p for p in pairs}
    for row in table.itertuples():
        parent = by_id[row.parent_id]
        assert row.parent_chosen == parent.chosen and row.parent_rejected == parent.rejected
        assert row.chosen_paraphrased == (row.chosen != parent.chosen)
        assert row.rejected_paraphrased == (row.rejected != parent.rejected)
        assert row.chosen_paraphrased or row.rejected_paraphrased
        assert np.isfinite(row.margin) and np.isfinite(row.parent_margin)
    margin_rows = {r["pair_id"]: r["margin"] for r in store.margin_rows(run_id, 1, "synthetic")}
    first = table[table["epoch_added"] == 1].iloc[0]
    assert first["margin"] == pytest.approx(margin_rows[first["pair_id"]])


def test_pairs_table_joins_the_margins_of_the_rows_it_shows(toy_run):
    store, run_id, _ = toy_run
    pairs = store.get_pairs(run_id, split="test")
    page = store.get_pairs(run_id, split="test", offset=3, limit=5)
    assert [p.id for p in page] == [p.id for p in pairs[3:8]]
    assert store.count_pairs(run_id, split="test") == len(pairs)
    table = views.pairs_table(page, store.pair_margins(run_id, 2, [p.id for p in page]))
    expected = {r["pair_id"]: r["margin"] for r in store.margin_rows(run_id, 2, "test")}
    assert table["margin"].tolist() == pytest.approx([expected[p.id] for p in page])
    assert table["gold_margin"].notna().all()


def test_toy_frame_and_hessian_match_the_stored_epoch(toy_run):
    store, run_id, config = toy_run
    frame = views.margins_frame(store.margin_rows(run_id))
    train = store.get_pairs(run_id, split="train")
    points0 = views.toy_frame(train, frame, 0)
    assert not points0["synthetic"].any() and points0["count"].sum() == 0
    points1 = views.toy_frame(train, frame, 1)
    assert points1["synthetic"].any() and points1["count"].sum() == 30
    assert not (points1["epoch_added"] > 1).any()
    weights = store.get_epoch(run_id, 0, with_model=True).model_state["weights"]
    hessian = views.toy_hessian(points0, weights, config.train.l2)
    assert np.trace(hessian) == pytest.approx(store.get_epoch(run_id, 0).curvature["trace"], rel=1e-5)
    originals = points0[~points0["synthetic"]]
    xy = originals[["dphi_x", "dphi_y"]].to_numpy()
    assert xy @ weights == pytest.approx(originals["margin"].to_numpy(), abs=1e-5)


def test_peek_columns_reads_headers_of_real_files(tmp_path):
    assert views.peek_columns(f"{FIXTURES}/generic.jsonl") == ["prompt", "chosen", "rejected"]
    assert views.peek_columns(f"{FIXTURES}/generic_renamed.csv") == ["question", "good_answer", "bad_answer", "annotator"]
    pd.DataFrame({"a": [1], "b": [2]}).to_parquet(tmp_path / "t.parquet")
    assert views.peek_columns(tmp_path / "t.parquet") == ["a", "b"]
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    assert views.peek_columns(tmp_path / "broken.jsonl") == []
    assert views.peek_columns(tmp_path / "missing.csv") == []


def test_peek_columns_reads_compressed_uploads(tmp_path):
    """The uploader accepts .gz, .bz2 and .zst: the column mapping must see their columns too."""
    import bz2
    import gzip

    import pyarrow as pa

    body = (FIXTURES / "generic_renamed.csv").read_bytes()
    rows = "".join(json.dumps(r) + "\n" for r in ({"question": "q"}, {"question": "q", "good": "a", "bad": "b"}))
    (tmp_path / "renamed.csv.gz").write_bytes(gzip.compress(body))
    (tmp_path / "rows.jsonl.bz2").write_bytes(bz2.compress(rows.encode()))
    with pa.output_stream(str(tmp_path / "rows.jsonl.zst"), compression="zstd") as out:
        out.write(rows.encode())
    assert (tmp_path / "rows.jsonl.zst").read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # a real zstd frame
    assert views.peek_columns(tmp_path / "renamed.csv.gz") == ["question", "good_answer", "bad_answer", "annotator"]
    assert views.peek_columns(tmp_path / "rows.jsonl.bz2") == ["question", "good", "bad"]
    assert views.peek_columns(tmp_path / "rows.jsonl.zst") == ["question", "good", "bad"]
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    assert views.peek_columns(tmp_path / "broken.jsonl.gz") == []


def test_run_label_names_strategy_and_tau():
    assert views.run_label(3, "demo", {"allocation": {"strategy": "mars", "tau": 2.0}}) == "#3 demo · mars τ=2"
    assert views.run_label(4, "base", {"allocation": {"strategy": "uniform", "tau": 2.0}}) == "#4 base · uniform"
