"""Tables and the figure of an experiment, in the paper's style."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from selfconfig.utils import atomic_savefig, atomic_write_text

SPLIT_TITLES = {"test": "held-out test set", "val": "validation folds"}


def results_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    front = ["dataset", "configuration", "strategy", "fraction", "fold", "split", "metric", "value", "n_train", "n_cases"]
    cols = [c for c in front if c in df.columns] + sorted(c for c in df.columns if c not in front and c != "run_dir")
    return df[cols + (["run_dir"] if "run_dir" in df.columns else [])]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over folds per split x strategy x fraction."""
    g = df.groupby(["split", "strategy", "fraction"])["value"]
    return pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()


def paired_tests(df: pd.DataFrame, baseline: str = "Scratch") -> pd.DataFrame:
    """For each split and fraction: each strategy against the baseline, paired over folds
    (t-test on the per-fold differences; needs >= 2 folds)."""
    from scipy import stats

    rows = []
    for (split, frac), sub in df.groupby(["split", "fraction"]):
        base = sub[sub["strategy"] == baseline].set_index("fold")["value"]
        for strat in sorted(set(sub["strategy"]) - {baseline}):
            other = sub[sub["strategy"] == strat].set_index("fold")["value"]
            common = sorted(set(base.index) & set(other.index))
            diff = (other[common] - base[common]).to_numpy(dtype=float)
            p = float("nan")
            if len(common) >= 2 and np.nanstd(diff) > 0:
                p = float(stats.ttest_rel(other[common], base[common]).pvalue)
            rows.append({"split": split, "fraction": frac, "strategy": strat, "baseline": baseline,
                         "mean_difference": float(np.mean(diff)) if len(diff) else float("nan"),
                         "n_folds": len(common), "p_value": p})
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f} (n={n})" if n > 1 and not math.isnan(std) else f"{mean:.3f} (n={n})"


def summary_markdown(df: pd.DataFrame, dataset: str, configuration: str, budget: str, metric: str,
                     strategies: list[str], fractions: list[float]) -> str:
    agg = aggregate(df)
    lines = [f"# Experiment: {dataset}", "",
             f"Configuration `{configuration}`, budget `{budget}`, metric `{metric}` "
             f"(mean ± std over folds).", ""]
    for split in ("test", "val"):
        sub = agg[agg["split"] == split]
        if sub.empty:
            continue
        lines += [f"## {metric} on the {SPLIT_TITLES[split]}", "",
                  "| strategy | " + " | ".join(f"{f * 100:g} % labels" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for s in strategies:
            cells = []
            for f in fractions:
                r = sub[(sub["strategy"] == s) & (np.isclose(sub["fraction"], f))]
                cells.append(_fmt(float(r["mean"].iloc[0]), float(r["std"].iloc[0]), int(r["n"].iloc[0]))
                             if len(r) else "-")
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        lines.append("")
    tests = paired_tests(df)
    if not tests.empty:
        lines += ["## Paired comparison with Scratch (per fraction, across folds)", "",
                  "| split | labels | strategy | mean difference | folds | p (paired t-test) |", "|---|---|---|---|---|---|"]
        for _, r in tests.sort_values(["split", "fraction", "strategy"]).iterrows():
            p = "n/a (needs 2 folds)" if math.isnan(r["p_value"]) else f"{r['p_value']:.3g}"
            lines.append(f"| {r['split']} | {r['fraction'] * 100:g} % | {r['strategy']} | "
                         f"{r['mean_difference']:+.3f} | {r['n_folds']} | {p} |")
        lines.append("")
    return "\n".join(lines)


def plot_figure(df: pd.DataFrame, path: Path, dataset: str, metric: str, strategies: list[str],
                fractions: list[float], configuration: str, budget: str) -> None:
    """Metric against labeled fraction, one line per strategy, error bars over folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(df)
    splits = [s for s in ("test", "val") if (agg["split"] == s).any()]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 4.2), squeeze=False)
    xs = [f * 100 for f in sorted(fractions)]
    markers = "osD^v<>"
    for ax, split in zip(axes[0], splits):
        sub = agg[agg["split"] == split]
        for i, s in enumerate(strategies):
            r = sub[sub["strategy"] == s].sort_values("fraction")
            if r.empty:
                continue
            ax.errorbar(r["fraction"] * 100, r["mean"], yerr=r["std"].fillna(0), marker=markers[i % len(markers)],
                        capsize=3, label=s, linewidth=1.6)
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}%" for x in xs])
        ax.minorticks_off()
        ax.set_xlabel("labeled training data")
        ax.set_ylabel(metric)
        # the whole scale from 0 (and to 1: every metric here is at most 1), so that a gap of a few
        # hundredths looks like one and not like the whole figure
        low = (sub["mean"] - sub["std"].fillna(0)).min()
        high = (sub["mean"] + sub["std"].fillna(0)).max()
        low, high = (0.0 if pd.isna(low) else float(low)), (1.0 if pd.isna(high) else float(high))
        ax.set_ylim(min(0.0, low - 0.02), max(1.0, high + 0.02))
        ax.set_title(SPLIT_TITLES[split])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{dataset} ({configuration}, {budget} budget)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def write_reports(res, dataset: str, configuration: str, budget: str, metric: str, strategies: list[str],
                  fractions: list[float], pretraining: dict[str, dict] | None = None) -> None:
    folder = Path(res.folder)
    folder.mkdir(parents=True, exist_ok=True)
    df = results_frame(res.rows)
    res.results_csv = folder / "results.csv"
    atomic_write_text(res.results_csv, df.to_csv(index=False))
    res.summary_text = summary_markdown(df, dataset, configuration, budget, metric, strategies, fractions)
    if pretraining:
        res.summary_text += "\n" + pretraining_markdown(pretraining)
    res.summary_md = folder / "summary.md"
    atomic_write_text(res.summary_md, res.summary_text + "\n")
    res.figure = folder / "figure.png"
    plot_figure(df, res.figure, dataset, metric, strategies, fractions, configuration, budget)


def pretraining_markdown(summaries: dict[str, dict]) -> str:
    """The pre-trainings behind the surrogate arms: held-out pretext accuracy against chance, with a
    warning a reader cannot miss when one ended near chance."""
    lines = ["## Pre-training (held-out pretext accuracy on unlabeled cases kept out of pre-training)", "",
             "| strategy | pretext task | held-out accuracy | per part | chance | iterations | minutes |",
             "|---|---|---|---|---|---|---|"]
    warnings = []
    for strategy, s in summaries.items():
        acc = s.get("held_out_accuracy")
        parts = ", ".join(f"{k} {v:.3f}" for k, v in (s.get("per_part") or {}).items() if v is not None) or "-"
        chance = s.get("chance")
        lines.append(f"| {strategy} | {s.get('pretext_task', '-')} | {'-' if acc is None else f'{acc:.3f}'} | {parts} | "
                     f"{'-' if chance is None else f'{chance:.3f}'} | {s.get('iterations', '-')} | {s.get('minutes', '-')} |")
        if s.get("near_chance"):
            warnings.append(f"> **WARNING: the {strategy} pre-training ended near chance** (held-out accuracy "
                            f"{acc:.3f}, chance {chance:.3f}, needs at least {s.get('near_chance_below', float('nan')):.3f} "
                            f"on every part): its weights learned little of the pretext task, so the {strategy} "
                            f"rows above do not test surrogate supervision. Pre-train longer (--pretrain-epochs / "
                            f"--pretrain-max-minutes) before reading them.")
    return "\n".join(lines + [""] + ([w + "\n" for w in warnings] if warnings else []))
