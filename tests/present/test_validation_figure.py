"""The early-stopping figure reads the stored fit_details of each epoch."""

from mars_core.present.figures import validation_curve_figure


def test_validation_curve_shows_each_fit_and_marks_the_kept_step():
    table = [
        {"epoch": 0, "metrics": {"fit_details": {"passes": 1.5, "best_step": 8, "validation": [
            {"step": 0, "loss": 0.66, "accuracy": 0.6}, {"step": 8, "loss": 0.61, "accuracy": 0.65},
            {"step": 16, "loss": 0.63, "accuracy": 0.64}]}}},
        {"epoch": 1, "metrics": {"fit_details": {"truncated_pairs": 0}}},  # a fit without a validation slice
    ]
    fig = validation_curve_figure(table)
    line, star = fig.data
    assert list(line.x) == [0, 8, 16] and list(line.y) == [0.66, 0.61, 0.63]
    assert line.name == "epoch 0: 1.5 passes, kept step 8"
    assert list(star.x) == [8] and list(star.y) == [0.61]
    assert validation_curve_figure([{"epoch": 0, "metrics": {}}]) is None  # the linear model: no figure
