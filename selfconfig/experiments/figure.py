"""The experiment's figure: the metric against the labelled fraction, one panel per split.

Several fractions: one line per strategy through the means over folds, error bars of one
standard deviation, each fold's value as a small point; strategies at the same fraction are
dodged sideways so that none hides another. One fraction: a bar per strategy (the mean) with its
error bar and the folds' points on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfconfig.utils import atomic_savefig

SPLIT_TITLES = {"test": "held-out test set", "val": "validation folds"}
MARKERS = "osD^v<>"
#: sideways offset between neighbouring strategies, in decades of the log-scaled fraction axis
DODGE_DECADES = 0.05
#: the folds' points sit this far right of their strategy's mean (decades), beside its error bar
POINTS_DECADES = 0.015


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over folds per split x strategy x fraction."""
    g = df.groupby(["split", "strategy", "fraction"])["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def figure_title(dataset: str, configuration: str, budget: str, cell_iterations: str = "") -> str:
    return f"{dataset} ({configuration}, {budget} budget" + (f", {cell_iterations})" if cell_iterations else ")")


def dodge(x: np.ndarray, i: int, n: int) -> np.ndarray:
    """``x`` (fractions, log axis) moved sideways for the ``i``-th of ``n`` strategies."""
    return np.asarray(x, dtype=float) * 10 ** ((i - (n - 1) / 2) * DODGE_DECADES)


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _lines(ax, df: pd.DataFrame, agg: pd.DataFrame, strategies: list[str], fractions: list[float]) -> None:
    """One dodged line per strategy with error bars and the folds' points."""
    for i, s in enumerate(strategies):
        r = agg[agg["strategy"] == s].sort_values("fraction")
        if r.empty:
            continue
        ax.errorbar(dodge(r["fraction"] * 100, i, len(strategies)), r["mean"], yerr=r["std"].fillna(0),
                    marker=MARKERS[i % len(MARKERS)], color=_colour(i), capsize=3, label=s, linewidth=1.6)
        folds = df[df["strategy"] == s]
        ax.scatter(dodge(folds["fraction"] * 100, i, len(strategies)) * 10 ** POINTS_DECADES, folds["value"], s=14,
                   facecolors="none", edgecolors=_colour(i), linewidths=0.9, label=f"_{s} folds", zorder=3)
    xs = [f * 100 for f in sorted(fractions)]
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{x:g}%" for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("labeled training data")


def _bars(ax, df: pd.DataFrame, agg: pd.DataFrame, strategies: list[str], fraction: float) -> None:
    """One bar per strategy at the only fraction, with its error bar and the folds' points."""
    for i, s in enumerate(strategies):
        r = agg[agg["strategy"] == s]
        if r.empty:
            continue
        sd = r["std"].iloc[0]  # NaN with one fold: no error bar, the fold's point alone
        ax.bar(i, r["mean"].iloc[0], yerr=None if pd.isna(sd) else sd, color=_colour(i), alpha=0.75, capsize=4,
               width=0.6, label=s)
        folds = df[df["strategy"] == s]["value"].to_numpy()
        spread = np.linspace(-0.12, 0.12, len(folds)) if len(folds) > 1 else np.zeros(len(folds))
        ax.scatter(i + spread, folds, s=16, color="k", alpha=0.7, linewidths=0, label=f"_{s} folds", zorder=3)
    ax.set_xticks(range(len(strategies)))
    ax.set_xticklabels(strategies)
    ax.set_xlabel(f"{fraction * 100:g}% labeled training data (points: folds)")


def _y_scale(ax, df: pd.DataFrame, agg: pd.DataFrame) -> None:
    """The whole scale from 0 (and to 1: every metric here is at most 1), so that a gap of a few
    hundredths looks like one and not like the whole figure."""
    spread = agg["std"].fillna(0)
    low = min((agg["mean"] - spread).min(), df["value"].min())
    high = max((agg["mean"] + spread).max(), df["value"].max())
    low, high = (0.0 if pd.isna(low) else float(low)), (1.0 if pd.isna(high) else float(high))
    ax.set_ylim(min(0.0, low - 0.02), max(1.0, high + 0.02))


def experiment_figure(df: pd.DataFrame, dataset: str, metric: str, strategies: list[str], fractions: list[float],
                      configuration: str, budget: str, cell_iterations: str = ""):
    """The figure as a matplotlib figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("test", "val") if (df["split"] == s).any()]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 4.2), squeeze=False)
    for ax, split in zip(axes[0], splits):
        sub = df[df["split"] == split]
        agg = aggregate(sub)
        if len(fractions) == 1:
            _bars(ax, sub, agg, strategies, fractions[0])
        else:
            _lines(ax, sub, agg, strategies, fractions)
        ax.set_ylabel(metric)
        _y_scale(ax, sub, agg)
        ax.set_title(SPLIT_TITLES[split])
        ax.grid(alpha=0.3, axis="y" if len(fractions) == 1 else "both")
        if len(fractions) > 1 and ax.get_legend_handles_labels()[0]:  # bars are named on the axis
            ax.legend(fontsize=8)
    fig.suptitle(figure_title(dataset, configuration, budget, cell_iterations), fontsize=10)
    fig.tight_layout()
    return fig


def plot_figure(df: pd.DataFrame, path: Path, dataset: str, metric: str, strategies: list[str],
                fractions: list[float], configuration: str, budget: str, cell_iterations: str = "") -> None:
    """Write :func:`experiment_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = experiment_figure(df, dataset, metric, strategies, fractions, configuration, budget, cell_iterations)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
