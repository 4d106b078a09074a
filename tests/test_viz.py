"""mae_nb.viz: the loss-curve plots draw what they are given, labelled."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from mae_nb import viz  # noqa: E402
from mae_nb.train import History  # noqa: E402


def _lines(fig):
    ax = fig.axes[0]
    return {
        line.get_label(): (list(line.get_ydata()), line.get_linestyle(), line.get_color())
        for line in ax.lines
    }


def test_loss_curve_of_one_history_draws_train_solid_and_validation_dashed():
    h = History(
        train={"loss": [3.0, 2.0, 1.0], "acc": [0.1, 0.5, 0.7]}, val={"loss": [3.5, 2.5, 2.0]}
    )
    lines = _lines(viz.plot_loss_curve(h, title="t"))
    assert set(lines) == {"train loss", "held out loss"}
    assert lines["train loss"][:2] == ([3.0, 2.0, 1.0], "-")
    assert lines["held out loss"][:2] == ([3.5, 2.5, 2.0], "--")
    lines = _lines(viz.plot_loss_curve(h, keys=("loss", "acc"), val=False))
    assert set(lines) == {"train loss", "train acc"}


def test_histories_share_one_plot_one_colour_per_model():
    a = History(train={"loss": [2.0, 1.0]}, val={"loss": [2.2, 1.5]})
    b = History(train={"loss": [4.0, 3.0]}, val={"loss": [4.4, 3.5]})
    fig = viz.plot_histories({"MLP AE": a, "conv AE": b})
    lines = _lines(fig)
    assert set(lines) == {"MLP AE train", "MLP AE held out", "conv AE train", "conv AE held out"}
    assert lines["MLP AE train"][2] == lines["MLP AE held out"][2] != lines["conv AE train"][2]
    assert fig.axes[0].get_yscale() == "log"
    assert set(_lines(viz.plot_histories({"a": a, "b": b}, val=False))) == {"a train", "b train"}


def test_crops_are_outlined_and_numbered():
    import numpy as np

    fig = viz.plot_crops(np.zeros((100, 120, 3)), [(0, 0), (40, 60)], 32)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and [t.get_text() for t in ax.texts] == ["0", "1"]
    assert ax.patches[1].get_xy() == (59.5, 39.5) and ax.patches[1].get_width() == 32
    assert "2 disjoint crops of 32 x 32 px" in ax.get_title()


def test_training_pull_plot_shows_model_and_blur_per_scenario():
    import numpy as np

    from mae_nb.studies.scenarios import STUDY_SCENARIOS, ScenarioComparison

    rows = [
        dict(scenario=s, crop=c, seed=0, pull_num=0.5 + 0.1 * c, blur_pull_num=0.1, pull_den=1.0)
        for s in STUDY_SCENARIOS
        for c in range(3)
    ]
    cmp = ScenarioComparison(rows, STUDY_SCENARIOS)
    fig = viz.plot_training_pull(cmp)
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == 8
    np.testing.assert_allclose(heights[:4], [0.6] * 4)  # the model, pooled: (1.8 / 3)
    np.testing.assert_allclose(heights[4:], [0.1] * 4)  # the blur
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "the model",
        "blur of the visible pixels",
    }
