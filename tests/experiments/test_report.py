"""The experiment figure shows the metric on its whole scale, so small gaps look small."""

from __future__ import annotations

from selfconfig.experiments import report


def _rows(values: dict[str, list[float]], fractions=(0.1, 0.25)):
    return [{"strategy": s, "fraction": f, "fold": "0", "split": "test", "metric": "mean_dice", "value": v}
            for s, per_fraction in values.items() for f, v in zip(fractions, per_fraction)]


def test_figure_y_axis_spans_zero_to_one(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(report, "atomic_savefig", lambda fig, path, **kw: saved.update(ylim=fig.axes[0].get_ylim()))
    df = report.results_frame(_rows({"Scratch": [0.61, 0.62], "SurrogateFlip": [0.63, 0.64]}))
    report.plot_figure(df, tmp_path / "f.png", "D", "mean_dice", ["Scratch", "SurrogateFlip"], [0.1, 0.25], "3d", "quick")
    low, high = saved["ylim"]
    assert low <= 0.0 and high >= 1.0  # not zoomed to 0.61-0.64
    # negative kappa stays visible; an all-NaN metric still plots
    df = report.results_frame(_rows({"Scratch": [-0.2, float("nan")]}))
    report.plot_figure(df, tmp_path / "g.png", "D", "kappa", ["Scratch"], [0.1, 0.25], "3d", "quick")
    assert saved["ylim"][0] < -0.2
