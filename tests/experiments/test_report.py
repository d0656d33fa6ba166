"""The experiment figure shows the metric on its whole scale, so small gaps look small."""

from __future__ import annotations

import pytest

from selfconfig.experiments import figure, report


def _rows(values: dict[str, list[float]], fractions=(0.1, 0.25)):
    return [{"strategy": s, "fraction": f, "fold": "0", "split": "test", "metric": "mean_dice", "value": v}
            for s, per_fraction in values.items() for f, v in zip(fractions, per_fraction)]


def test_figure_y_axis_spans_zero_to_one(tmp_path, monkeypatch):
    saved = {}
    monkeypatch.setattr(figure, "atomic_savefig", lambda fig, path, **kw: saved.update(ylim=fig.axes[0].get_ylim()))
    df = report.results_frame(_rows({"Scratch": [0.61, 0.62], "SurrogateFlip": [0.63, 0.64]}))
    report.plot_figure(df, tmp_path / "f.png", "D", "mean_dice", ["Scratch", "SurrogateFlip"], [0.1, 0.25], "3d", "quick")
    low, high = saved["ylim"]
    assert low <= 0.0 and high >= 1.0  # not zoomed to 0.61-0.64
    # negative kappa stays visible; an all-NaN metric still plots
    df = report.results_frame(_rows({"Scratch": [-0.2, float("nan")]}))
    report.plot_figure(df, tmp_path / "g.png", "D", "kappa", ["Scratch"], [0.1, 0.25], "3d", "quick")
    assert saved["ylim"][0] < -0.2


def _fold_rows(per_strategy: dict[str, list[float]], fractions=(0.1, 0.25)):
    return [{"strategy": s, "fraction": f, "fold": str(k), "split": "test", "metric": "mean_dice", "value": v + f}
            for s, values in per_strategy.items() for f in fractions for k, v in enumerate(values)]


def _fold_points(ax, strategy: str):
    (points,) = [c for c in ax.collections if c.get_label() == f"_{strategy} folds"]
    return points.get_offsets()


def test_figure_dodges_arms_at_one_fraction_and_shows_every_fold():
    import matplotlib.pyplot as plt

    # the same values for both arms: undodged, one would hide the other entirely
    df = report.results_frame(_fold_rows({"Scratch": [0.5, 0.6, 0.7], "SurrogateFlip": [0.5, 0.6, 0.7]}))
    fig = figure.experiment_figure(df, "D", "mean_dice", ["Scratch", "SurrogateFlip"], [0.1, 0.25], "3d", "quick")
    ax = fig.axes[0]
    a, b = _fold_points(ax, "Scratch"), _fold_points(ax, "SurrogateFlip")
    assert len(a) == len(b) == 6  # 3 folds x 2 fractions, each a point
    assert sorted(a[:, 1]) == pytest.approx(sorted(df[df["strategy"] == "Scratch"]["value"]))
    assert (a[:, 0] < b[:, 0]).all()  # Scratch left of SurrogateFlip at every fraction
    assert (b[:, 0] / a[:, 0]).max() < 1.2  # but close to its fraction
    means = {c.get_label(): c.lines[0].get_ydata() for c in ax.containers}  # the error-bar lines
    assert means["Scratch"] == pytest.approx([0.7, 0.85])
    plt.close(fig)


def test_figure_with_one_fraction_draws_bars_with_the_folds_points():
    import matplotlib.pyplot as plt

    df = report.results_frame(_fold_rows({"Scratch": [0.5, 0.6, 0.7], "SurrogateFlip": [0.6, 0.8]}, (0.25,)))
    fig = figure.experiment_figure(df, "D", "mean_dice", ["Scratch", "SurrogateFlip"], [0.25], "3d", "quick")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert [round(p.get_height(), 6) for p in bars] == [0.85, 0.95]  # the means over folds
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Scratch", "SurrogateFlip"]
    a, b = _fold_points(ax, "Scratch"), _fold_points(ax, "SurrogateFlip")
    assert sorted(a[:, 1]) == pytest.approx([0.75, 0.85, 0.95]) and sorted(b[:, 1]) == pytest.approx([0.85, 1.05])
    assert (abs(a[:, 0] - 0) < 0.3).all() and (abs(b[:, 0] - 1) < 0.3).all()  # on their own bar
    plt.close(fig)


# ---------------------------------------------------------------- paired differences and the paper's claims

BASE = [0.5, 0.6, 0.7]  # Scratch on folds 0, 1, 2
UP = [0.02, 0.03, 0.04]  # mean +0.03, sd 0.01: 95 % CI 0.03 ± t(0.975, 2) 0.01 / sqrt(3) = [+0.005, +0.055]
SPREAD = [-0.01, 0.01, 0.03]  # mean +0.01, sd 0.02: [-0.040, +0.060]


def _folds(arms: dict[str, dict[float, list[float]]], split: str = "test", metric: str = "kappa"):
    """Rows of a hand-made grid: arms[strategy][fraction] = the value on each fold."""
    return report.results_frame([
        {"dataset": "D", "strategy": s, "fraction": f, "fold": str(k), "split": split, "metric": metric, "value": v}
        for s, by_fraction in arms.items() for f, values in by_fraction.items() for k, v in enumerate(values)])


def _plus(a, b):
    return [x + y for x, y in zip(a, b)]


def test_paired_difference_has_the_t_interval_and_p_value():
    from selfconfig.experiments.statistics import paired_difference

    df = _folds({"Scratch": {0.1: BASE}, "SurrogateFlip": {0.1: _plus(BASE, UP)}})
    r = paired_difference(df, "test", 0.1, "SurrogateFlip", "Scratch")
    half = 4.302652729749462 * 0.01 / 3 ** 0.5  # t(0.975, 2 dof)
    assert r["n_folds"] == 3 and abs(r["mean_difference"] - 0.03) < 1e-12 and abs(r["sd_difference"] - 0.01) < 1e-12
    assert abs(r["ci_low"] - (0.03 - half)) < 1e-9 and abs(r["ci_high"] - (0.03 + half)) < 1e-9
    assert abs(r["p_value"] - 0.0350987) < 1e-6  # paired t-test, 2 dof
    assert r["p_wilcoxon"] != r["p_wilcoxon"]  # NaN: 3 folds cannot reach 0.05 (smallest p 0.25)
    assert abs(r["mean"] - 0.63) < 1e-12 and abs(r["baseline_mean"] - 0.6) < 1e-12 and abs(r["sd"] - 0.11) < 1e-12
    one = paired_difference(df[df["fold"] == "0"], "test", 0.1, "SurrogateFlip", "Scratch")
    assert one["n_folds"] == 1 and one["ci_low"] != one["ci_low"] and one["p_value"] != one["p_value"]
    # a fold with a NaN score is left out of the pairing, not carried into the mean
    nan = _folds({"Scratch": {0.1: BASE}, "SurrogateFlip": {0.1: [0.52, float("nan"), 0.74]}})
    r = paired_difference(nan, "test", 0.1, "SurrogateFlip", "Scratch")
    assert r["n_folds"] == 2 and abs(r["mean_difference"] - 0.03) < 1e-12


def test_summary_shows_intervals_and_says_why_there_is_no_wilcoxon():
    df = _folds({"Scratch": {0.1: BASE, 0.25: BASE}, "SurrogateFlip": {0.1: _plus(BASE, UP), 0.25: BASE}})
    text = report.summary_markdown(df, "D", "2d", "full", "kappa", ["Scratch", "SurrogateFlip"], [0.1, 0.25])
    assert "| test | 10 % | SurrogateFlip | +0.030 [+0.005, +0.055] | 3 | 0.0351 |" in text
    assert "| test | 25 % | SurrogateFlip | +0.000 [+0.000, +0.000] | 3 | n/a (no spread) |" in text
    assert "No Wilcoxon signed-rank test: with 3 folds" in text and "cannot go below 0.25" in text
    assert "The paper's claims" not in text  # no claims given: a user's dataset
    six = _folds({"Scratch": {0.1: BASE * 2}, "SurrogateFlip": {0.1: _plus(BASE * 2, UP * 2)}})
    text = report.summary_markdown(six, "D", "2d", "full", "kappa", ["Scratch", "SurrogateFlip"], [0.1])
    assert "p (Wilcoxon) |" in text and "| 6 | " in text and "No Wilcoxon" not in text


def test_claims_hold_fail_or_cannot_be_decided_from_the_interval():
    from selfconfig.experiments.claims import claims_for

    claims = claims_for("FUNDUS_DR", "SurrogateRotation")
    rot = {0.1: _plus(BASE, UP), 0.25: _plus(BASE, SPREAD)}
    df = _folds({"Scratch": {0.1: BASE, 0.25: BASE}, "SurrogateRotation": rot,
                 "ImageNet": {f: _plus(v, UP) for f, v in rot.items()}})  # ImageNet above rotation: fails
    text = report.summary_markdown(df, "FUNDUS_DR", "2d_imagenet", "full", "quadratic_weighted_kappa",
                                   ["Scratch", "SurrogateRotation", "ImageNet"], [0.1, 0.25], claims)
    section = text[text.index("## The paper's claims"):]
    assert ("- **holds**: SurrogateRotation > Scratch at 10 % of the labels (paper: +0.24 kappa at 10 % of the "
            "labels). SurrogateRotation − Scratch = +0.030 [+0.005, +0.055]: the 95 % interval over 3 folds lies "
            "above 0.") in section
    assert ("- **cannot be decided**: SurrogateRotation > Scratch at 25 % of the labels (paper: +0.09 kappa at 25 % "
            "of the labels). SurrogateRotation − Scratch = +0.010 [-0.040, +0.060]: the 95 % interval over 3 folds "
            "contains 0.") in section
    # a claim between two non-Scratch arms is paired the same way, at every fraction the grid ran
    for f in (10, 25):
        assert (f"- **fails**: SurrogateRotation > ImageNet at {f} % of the labels (paper: ImageNet below rotation on "
                f"retinopathy). SurrogateRotation − ImageNet = -0.030 [-0.055, -0.005]: the 95 % interval over 3 "
                f"folds lies below 0 (ImageNet is better here).") in section

    # one fold: no interval, so nothing can be decided
    text = report.summary_markdown(df[df["fold"] == "0"], "FUNDUS_DR", "2d_imagenet", "full", "kappa",
                                   ["Scratch", "SurrogateRotation", "ImageNet"], [0.1, 0.25], claims)
    assert ("- **cannot be decided**: SurrogateRotation > Scratch at 10 % of the labels (paper: +0.24 kappa at 10 % "
            "of the labels). SurrogateRotation − Scratch = +0.020 (no interval: 1 fold): with 1 fold there is no "
            "interval (needs at least 2 folds, e.g. -f 0 1 2 3 4).") in text
    assert "**holds**" not in text and "**fails**" not in text

    # an arm the grid did not run: said, not guessed
    no_imagenet = df[df["strategy"] != "ImageNet"]
    text = report.summary_markdown(no_imagenet, "FUNDUS_DR", "2d", "full", "kappa", ["Scratch", "SurrogateRotation"],
                                   [0.1, 0.25], claims)
    assert "- **not run**: SurrogateRotation > ImageNet at 10 % of the labels" in text
    assert "The grid has no ImageNet arm (add -tr ImageNet)." in text


def test_about_equal_claim_uses_a_stated_margin_and_near_chance_pretraining_is_named():
    from selfconfig.experiments.claims import claims_for

    claims = claims_for("NODULE_FPR", "SurrogateWGAN")
    df = _folds({"Scratch": {0.1: BASE, 0.25: BASE},
                 "SurrogateWGAN": {0.1: _plus(BASE, [0.005, -0.005, 0.0]), 0.25: _plus(BASE, [0.10, 0.11, 0.12])}})
    pre = {"SurrogateWGAN": {"held_out_accuracy": 0.51, "chance": 0.5, "near_chance": True, "near_chance_below": 0.6}}
    text = report.summary_markdown(df, "NODULE_FPR", "3d", "full", "froc_auc_3fp", ["Scratch", "SurrogateWGAN"],
                                   [0.1, 0.25], claims, pre)
    assert "*SurrogateWGAN ≈ Scratch* is read as: the difference lies within ±0.02" in text
    assert text.count("is read as") == 1
    assert "- **holds**: SurrogateWGAN ≈ Scratch at 10 % of the labels" in text and "[-0.012, +0.012]" in text
    assert "- **fails**: SurrogateWGAN ≈ Scratch at 25 % of the labels" in text and "[+0.085, +0.135]" in text
    assert "The SurrogateWGAN pre-training ended near chance (see above)" in text
    assert text.index("## Pre-training") < text.index("## The paper's claims")


def test_claims_apply_only_to_the_bundled_examples():
    from selfconfig.examples import EXAMPLES
    from selfconfig.experiments.claims import CLAIMS, claims_for

    assert set(CLAIMS) == set(EXAMPLES)
    for name, claims in CLAIMS.items():
        assert claims_for(name, EXAMPLES[name].strategy) == claims
        assert any(EXAMPLES[name].strategy in (c.first, c.second) for c in claims)
        assert claims_for(name, None) == ()  # a user's dataset under an example's name: no surrogate_task
    assert claims_for("MY_DATA", "SurrogateFlip") == ()
    assert claims_for("LUNG_LOBES", "SurrogateRotation") == ()


def test_write_reports_writes_paired_csv(tmp_path, monkeypatch):
    import pandas as pd

    from selfconfig.experiments.grid import ExperimentResult

    monkeypatch.setattr(report, "plot_figure", lambda *a, **k: None)
    df = _folds({"Scratch": {0.1: BASE}, "SurrogateFlip": {0.1: _plus(BASE, UP)}})
    res = ExperimentResult(tmp_path / "experiment", df.to_dict("records"))
    report.write_reports(res, "D", "2d", "full", "kappa", ["Scratch", "SurrogateFlip"], [0.1])
    paired = pd.read_csv(res.paired_csv)
    assert list(paired["strategy"]) == ["SurrogateFlip"] and paired["n_folds"].tolist() == [3]
    assert abs(paired["ci_low"][0] - 0.00516) < 1e-4 and abs(paired["ci_high"][0] - 0.05484) < 1e-4
    assert abs(paired["baseline_mean"][0] - 0.6) < 1e-9 and abs(paired["baseline_sd"][0] - 0.1) < 1e-9
    assert "+0.030 [+0.005, +0.055]" in res.summary_md.read_text()


def test_summary_and_figure_say_what_each_cell_trained(tmp_path):
    """A grid run with --epochs (the longer run of the protocol) must not read as the budget's
    own iterations: summary.md and the figure's title give the iterations per cell and what was set."""
    assert report.describe_cell_iterations({"Scratch": 300, "SurrogateFlip": 300}) == "300 iterations per cell"
    text = report.describe_cell_iterations({"Scratch": 1200, "SurrogateFlip": 1200},
                                           {"epochs": 48, "max_minutes": 12.0}, 12.0)
    assert text == "1200 iterations per cell, at most 12 min each; --epochs 48, --max-minutes 12 given"
    # a schedule fitted to the minutes (a pure wall-clock budget) may stop before epochs x iterations
    assert report.describe_cell_iterations({"Scratch": 5000}, {"max_minutes": 10.0}, 10.0, fitted=True) == (
        "up to 5000 iterations per cell, the schedule fitted to 10 min each; --max-minutes 10 given")
    assert report.describe_cell_iterations({"Scratch": 250, "SurrogateColor": 200}) == (
        "iterations per cell: Scratch 250, SurrogateColor 200")
    assert report.describe_cell_iterations({"Scratch": 4800}, None, 40.0, until_converged=True) == (
        "until converged, up to 4800 iterations per cell, at most 40 min each")
    df = _folds({"Scratch": {0.1: BASE}, "SurrogateFlip": {0.1: _plus(BASE, UP)}})
    summary = report.summary_markdown(df, "D", "3d", "quick", "mean_dice", ["Scratch", "SurrogateFlip"], [0.1],
                                      cell_iterations=text)
    assert summary.splitlines()[2].startswith(f"Configuration `3d`, budget `quick` ({text}), metric `mean_dice`")
    assert figure.figure_title("D", "3d", "quick", text) == f"D (3d, quick budget, {text})"
    assert figure.figure_title("D", "3d", "quick") == "D (3d, quick budget)"
    report.plot_figure(df, tmp_path / "f.png", "D", "mean_dice", ["Scratch", "SurrogateFlip"], [0.1], "3d", "quick",
                       text)
    assert (tmp_path / "f.png").stat().st_size > 0
