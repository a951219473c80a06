"""A stored run whose texts try to become markup (script tags, markdown, LaTeX), for the escaping tests.

Built directly through the Store (no model): epoch 0 and epoch 1 with one synthetic pair whose
paraphrases carry the hostile text, so the Data, Margins and Pairs pages all have something to show.
"""

from __future__ import annotations

from mars_core.analysis.margins import MarginMetrics
from mars_core.data.pairs import PreferencePair
from mars_core.run.config import RunConfig
from mars_core.run.epoch_metrics import AugmentationMetrics, EpochMetrics
from mars_core.store.sqlite import EpochRecord, MarginRow, ParaphraseRecord, Store

SCRIPT = "<script>alert(1)</script>"
HOSTILE = f"{SCRIPT} **bold** $x$ :red[red] [link](javascript:alert(2)) <img src=x onerror=alert(3)>"


def _metrics(epoch: int, snr: float, kept: int = 0) -> dict:
    """An epoch's metrics as the Step writes them (the typed record), with made-up values."""
    side = MarginMetrics(n=1, accuracy=1.0, snr=snr, mean=0.5, std=0.5 / snr, gold_accuracy=float("nan"), ece=0.1)
    augmentation = AugmentationMetrics(paraphrases_requested=kept, paraphrases_generated=kept, paraphrases_kept=kept,
                                       pairs_added=kept)
    return EpochMetrics(epoch=epoch, test=side, train=side, pairs_trained=2 + kept, fit_loss=0.5, fit_iterations=3,
                        augmentation=augmentation).to_dict()


def create_hostile_run(store: Store) -> int:
    train = [
        PreferencePair(id="h1", prompt=f"Prompt {HOSTILE}", chosen=f"Good answer {HOSTILE}", rejected="Bad answer."),
        PreferencePair(id="h2", prompt="Plain prompt", chosen="Fine.", rejected=f"Worse {HOSTILE}"),
    ]
    test = [PreferencePair(id="h3", prompt="Held out", chosen=f"Yes {HOSTILE}", rejected="No.")]
    run_id = store.create_run(f"hostile {SCRIPT}", RunConfig().to_dict(), "hostile fixture", train, test)
    curvature = {"eigenvalues": [0.2, 0.05], "top_k": [0.2], "trace": 0.25, "min_eigenvalue": 0.05,
                 "condition_number": 4.0, "n_hvp": 0, "method": "exact"}
    store.commit_epoch(run_id, EpochRecord(
        epoch=0, metrics=_metrics(0, snr=1.0), curvature=curvature,
        margins=[MarginRow("h1", "train", 0.3, curvature=0.1), MarginRow("h2", "train", -0.2, curvature=0.1),
                 MarginRow("h3", "test", 0.5)],
    ))
    para_chosen = f"A good answer {HOSTILE} indeed"
    paraphrases = [ParaphraseRecord(id="e1:h1:c0", pair_id="h1", side="chosen", epoch=1, source_text=train[0].chosen,
                                    text=para_chosen, model="fixture", similarity=0.93)]
    child = train[0].with_changes(id="h1~e1~c0", chosen=para_chosen, source="synthetic", parent_id="h1",
                                  epoch_added=1, chosen_paraphrase_id="e1:h1:c0")
    store.commit_epoch(run_id, EpochRecord(
        epoch=1, metrics=_metrics(1, snr=1.2, kept=1), curvature=curvature,
        allocation={"strategy": "mars", "tau": 1.0, "tau_in_force": 1.0, "margin_mode": "abs", "tau_scale": "raw",
                    "margin_source": "in-sample", "budget": 1, "total": 1, "effective_n": 1.9, "pairs_picked": 1},
        margins=[MarginRow("h1", "train", 0.4, 0.3, 0.6, 1, 0.1), MarginRow("h2", "train", -0.1, -0.2, 0.4, 0, 0.1),
                 MarginRow("h1~e1~c0", "synthetic", 0.35), MarginRow("h3", "test", 0.6)],
        new_pairs=[child], new_paraphrases=paraphrases,
    ))
    return run_id
