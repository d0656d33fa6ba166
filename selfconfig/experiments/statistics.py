"""Paired statistics over folds: one arm against another at one split and label fraction.

Every fold trains both arms on the same cases, so the arms are compared fold by fold: the
per-fold difference, its mean, a 95 % confidence interval from the t distribution with n-1
degrees of freedom, and the paired t-test. On the held-out test set every fold is scored on the
same test cases, so the interval covers the variation between training folds (cases and seeds),
not the sampling of test cases.

A Wilcoxon signed-rank p value is given only from :data:`WILCOXON_MIN_FOLDS` folds on: with n
folds its exact two-sided p value cannot go below ``2 / 2**n`` (0.25 with 3 folds, 0.0625 with
5), so below 6 folds it could never reach 0.05 whatever the data.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: the fewest folds at which the exact two-sided Wilcoxon signed-rank p can fall below 0.05
WILCOXON_MIN_FOLDS = 6
CONFIDENCE = 0.95


def wilcoxon_smallest_p(n: int) -> float:
    """The smallest exact two-sided p value a Wilcoxon signed-rank test on ``n`` pairs can give."""
    return min(1.0, 2.0 / 2 ** n) if n >= 1 else 1.0


def fold_values(df: pd.DataFrame, split: str, fraction: float, strategy: str) -> pd.Series:
    """One arm's finite values by fold at ``split`` and ``fraction`` (a fold scored twice keeps its last row)."""
    sub = df[(df["split"] == split) & np.isclose(df["fraction"].astype(float), float(fraction))
             & (df["strategy"] == strategy)]
    values = pd.to_numeric(sub.set_index(sub["fold"].astype(str))["value"], errors="coerce")
    values = values[~values.index.duplicated(keep="last")]
    return values[np.isfinite(values.to_numpy(dtype=float))]


def paired_difference(df: pd.DataFrame, split: str, fraction: float, strategy: str, baseline: str) -> dict:
    """``strategy`` minus ``baseline`` over the folds where both have a finite value.

    ``ci_low`` / ``ci_high`` and ``p_value`` (paired t-test) are NaN with fewer than 2 folds;
    ``p_value`` is also NaN when every fold has the same difference (no spread: the t statistic is
    undefined; the interval is then that one value). ``p_wilcoxon`` is NaN below
    :data:`WILCOXON_MIN_FOLDS` folds."""
    from scipy import stats

    a, b = fold_values(df, split, fraction, strategy), fold_values(df, split, fraction, baseline)
    common = sorted(set(a.index) & set(b.index))
    x, y = a[common].to_numpy(dtype=float), b[common].to_numpy(dtype=float)
    diff = x - y
    n = len(common)
    nan = float("nan")
    row = {"split": split, "fraction": float(fraction), "strategy": strategy, "baseline": baseline, "n_folds": n,
           "mean": float(x.mean()) if n else nan, "sd": float(x.std(ddof=1)) if n > 1 else nan,
           "baseline_mean": float(y.mean()) if n else nan, "baseline_sd": float(y.std(ddof=1)) if n > 1 else nan,
           "mean_difference": float(diff.mean()) if n else nan,
           "sd_difference": float(diff.std(ddof=1)) if n > 1 else nan,
           "ci_low": nan, "ci_high": nan, "p_value": nan, "p_wilcoxon": nan}
    if n >= 2:
        half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * row["sd_difference"] / math.sqrt(n)
        row["ci_low"], row["ci_high"] = row["mean_difference"] - half, row["mean_difference"] + half
        if row["sd_difference"] > 0:
            row["p_value"] = float(stats.ttest_rel(x, y).pvalue)
    if n >= WILCOXON_MIN_FOLDS and np.any(diff != 0):
        try:
            row["p_wilcoxon"] = float(stats.wilcoxon(x, y).pvalue)
        except ValueError:
            pass
    return row


def fmt_interval(row: dict) -> str:
    """``+0.031 [+0.012, +0.050]``, or the difference alone where no interval exists."""
    d = row["mean_difference"]
    if isinstance(d, float) and math.isnan(d):
        return "n/a"
    if math.isnan(row["ci_low"]):
        return f"{d:+.3f} (no interval: {row['n_folds']} fold)"
    return f"{d:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
