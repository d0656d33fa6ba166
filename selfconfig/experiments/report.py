"""Tables and the figure of an experiment, in the paper's style."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from selfconfig.experiments.figure import SPLIT_TITLES, aggregate, plot_figure
from selfconfig.experiments.statistics import WILCOXON_MIN_FOLDS, fmt_interval, paired_difference, wilcoxon_smallest_p
from selfconfig.utils import atomic_savefig, atomic_write_text, read_json



def results_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    front = ["dataset", "configuration", "strategy", "fraction", "fold", "split", "metric", "value", "n_train", "n_cases"]
    cols = [c for c in front if c in df.columns] + sorted(c for c in df.columns if c not in front and c != "run_dir")
    return df[cols + (["run_dir"] if "run_dir" in df.columns else [])]


def paired_tests(df: pd.DataFrame, baseline: str = "Scratch") -> pd.DataFrame:
    """For each split and fraction: each strategy against the baseline, paired over folds: mean
    difference, its 95 % interval and the paired t-test (needs >= 2 folds), a Wilcoxon p from 6
    folds on (:func:`selfconfig.experiments.statistics.paired_difference`)."""
    if df.empty or baseline not in set(df["strategy"]):
        return pd.DataFrame()
    rows = []
    for (split, frac), sub in df.groupby(["split", "fraction"]):
        for strat in sorted(set(sub["strategy"]) - {baseline}):
            rows.append(paired_difference(df, split, frac, strat, baseline))
    return pd.DataFrame(rows)


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f} (n={n})" if n > 1 and not math.isnan(std) else f"{mean:.3f} (n={n})"


def summary_markdown(df: pd.DataFrame, dataset: str, configuration: str, budget: str, metric: str,
                     strategies: list[str], fractions: list[float], claims: tuple = (),
                     pretraining: dict[str, dict] | None = None, tests: pd.DataFrame | None = None,
                     cell_iterations: str = "") -> str:
    """summary.md; ``pretraining``: the surrogate arms' pre-training summaries; ``claims``: the
    paper's claims that apply to this dataset (:func:`selfconfig.experiments.claims.claims_for`),
    judged in the last section; ``tests``: :func:`paired_tests` of ``df`` when the caller has it;
    ``cell_iterations``: what each cell trained (:func:`describe_cell_iterations`)."""
    agg = aggregate(df)
    lines = [f"# Experiment: {dataset}", "",
             f"Configuration `{configuration}`, budget `{budget}`"
             + (f" ({cell_iterations})" if cell_iterations else "") + f", metric `{metric}` (mean ± std over folds).",
             ""]
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
    tests = paired_tests(df) if tests is None else tests
    if not tests.empty:
        lines += paired_markdown(tests)
    if pretraining:
        lines += [pretraining_markdown(pretraining)]
    if claims:
        from selfconfig.experiments.claims import claims_markdown

        from selfconfig.pretext.base import pretraining_warning

        problems = {s: pretraining_warning(p) for s, p in (pretraining or {}).items()}
        lines += [claims_markdown(df, claims, fractions, metric, {s: p[0] for s, p in problems.items() if p})]
    return "\n".join(lines)


def _p(p: float, n: int) -> str:
    if not math.isnan(p):
        return f"{p:.3g}"
    return "n/a (needs 2 folds)" if n < 2 else "n/a (no spread)"


def paired_markdown(tests: pd.DataFrame) -> list[str]:
    """The comparison with the baseline: difference with its 95 % interval and the paired t-test
    per split x fraction x strategy; a Wilcoxon column only where it can mean something."""
    wilcoxon = bool((tests["n_folds"] >= WILCOXON_MIN_FOLDS).any())
    lines = [f"## Paired comparison with {tests['baseline'].iloc[0]} (per fraction, across folds)", "",
             "Difference = strategy minus baseline, fold by fold; the 95 % confidence interval is from the t "
             "distribution with folds - 1 degrees of freedom (none with 1 fold). On the test set every fold is "
             "scored on the same cases: the interval covers the variation between training folds.", "",
             "| split | labels | strategy | difference [95 % CI] | folds | p (paired t-test) |"
             + (" p (Wilcoxon) |" if wilcoxon else ""),
             "|---|---|---|---|---|---|" + ("---|" if wilcoxon else "")]
    for _, r in tests.sort_values(["split", "fraction", "strategy"]).iterrows():
        n = int(r["n_folds"])
        cells = [r["split"], f"{r['fraction'] * 100:g} %", r["strategy"], fmt_interval(r.to_dict()), str(n),
                 _p(r["p_value"], n)]
        if wilcoxon:
            cells.append(f"{r['p_wilcoxon']:.3g}" if not math.isnan(r["p_wilcoxon"])
                         else f"n/a (needs {WILCOXON_MIN_FOLDS} folds)")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    n_max = int(tests["n_folds"].max())
    if not wilcoxon and n_max >= 2:
        lines += [f"No Wilcoxon signed-rank test: with {n_max} folds its exact two-sided p value cannot go below "
                  f"{wilcoxon_smallest_p(n_max):.3g} whatever the data, so it could not show a difference at 0.05; "
                  f"it is reported from {WILCOXON_MIN_FOLDS} folds on.", ""]
    return lines


def paired_csv(tests: pd.DataFrame) -> str:
    """paired.csv: per split x fraction x strategy, both arms' mean and sd over the paired folds,
    the difference with its interval, and the p values."""
    cols = ["split", "fraction", "strategy", "baseline", "n_folds", "mean", "sd", "baseline_mean", "baseline_sd",
            "mean_difference", "sd_difference", "ci_low", "ci_high", "p_value", "p_wilcoxon"]
    if tests.empty:
        return ",".join(cols) + "\n"
    return tests.sort_values(["split", "fraction", "strategy"])[cols].to_csv(index=False)


def describe_cell_iterations(iterations: dict[str, int], overrides: dict | None = None,
                             max_minutes: float | None = None, fitted: bool = False,
                             until_converged: bool = False) -> str:
    """What each cell of a grid trains, for summary.md and the figure: ``"300 iterations per cell"``,
    per strategy when they differ, with the cap and the command-line settings that changed the
    budget's (``"1200 iterations per cell, at most 12 min each; --epochs 48 given"``). ``fitted``:
    the schedule is fitted to ``max_minutes`` (:attr:`TrainingConfig.fit_schedule_to_minutes`), so
    the iterations are an upper bound (the loop plans ``min(fitted, epochs x iterations)``).
    ``until_converged``: each cell stops at its plateau, the iterations are a cap."""
    counts = set(iterations.values())
    up_to = "until converged, up to " if until_converged else "up to " if fitted and max_minutes else ""
    text = (f"{up_to}{counts.pop()} iterations per cell" if len(counts) == 1 else
            f"{up_to}iterations per cell: " + ", ".join(f"{s} {n}" for s, n in iterations.items()))
    if max_minutes:
        text += (f", the schedule fitted to {max_minutes:g} min each" if fitted
                 else f", at most {max_minutes:g} min each")
    given = [f"--{k.replace('_', '-')} {v:g}" for k, v in (overrides or {}).items()
             if k in ("epochs", "iters_per_epoch", "max_minutes") and v is not None]
    return text + (f"; {', '.join(given)} given" if given else "")


def write_reports(res, dataset: str, configuration: str, budget: str, metric: str, strategies: list[str],
                  fractions: list[float], pretraining: dict[str, dict] | None = None, claims: tuple = (),
                  cell_iterations: str = "") -> None:
    folder = Path(res.folder)
    folder.mkdir(parents=True, exist_ok=True)
    df = results_frame(res.rows)
    res.results_csv = folder / "results.csv"
    atomic_write_text(res.results_csv, df.to_csv(index=False))
    tests = paired_tests(df)
    res.paired_csv = folder / "paired.csv"
    atomic_write_text(res.paired_csv, paired_csv(tests))
    res.summary_text = summary_markdown(df, dataset, configuration, budget, metric, strategies, fractions, claims,
                                        pretraining, tests, cell_iterations)
    res.summary_md = folder / "summary.md"
    atomic_write_text(res.summary_md, res.summary_text + "\n")
    res.pictures = cell_pictures(res.rows, folder.parent.parent)  # folder: <results>/NAME/experiment
    res.figure = folder / "figure.png"
    plot_figure(df, res.figure, dataset, metric, strategies, fractions, configuration, budget, cell_iterations)
    res.report = write_experiment_html(res, df)


def write_experiment_html(res, df: pd.DataFrame) -> Path:
    """``report.html``: summary.md (claims, tables, pre-training) with the figure, the results as a
    sortable table, each cell's montage with a link to the cell's own report."""
    from selfconfig.evaluation.html_report import REPORT_NAME, esc, image, link, markdown, table, write_page

    folder = Path(res.folder)
    cells = []
    for picture in res.pictures:
        scored = picture.parents[1] if picture.parent.name == "overlays" else picture.parent
        name = "/".join(scored.parts[-4:])  # <Trainer>__<plans>__<config>/frac_f/fold_k/<split>
        cells.append(f"<h3>{esc(name)}</h3>{image(picture, name)}"
                     f"<p>{link(scored.parent / REPORT_NAME, folder, 'report of this cell')}</p>")
    pretrainings = sorted(folder.parent.glob(f"pretrain/*/{REPORT_NAME}"))
    title, *rest = (res.summary_text or "# experiment").splitlines()
    shown = df.drop(columns=[c for c in ("dataset", "configuration", "run_dir") if c in df.columns])
    sections = [image(res.figure, "figure"), markdown("\n".join(rest)),
                "<h2>Every cell (click a heading to sort)</h2>" + table(shown.to_dict("records")),
                "<h2>Pre-training</h2>" + " ".join(link(p, folder, p.parent.name) for p in pretrainings)
                if pretrainings else "", "<h2>Cells</h2>" + "".join(cells) if cells else ""]
    return write_page(folder, title.lstrip("# "), sections, [res.results_csv, res.paired_csv, res.summary_md, res.figure])


#: the folder of a cell's run folder that holds its scores, by split
SPLIT_FOLDERS = {"val": "validation", "test": "test"}


def cell_pictures(rows: list[dict], results_root: Path) -> list[Path]:
    """The pictures each scored cell's evaluation wrote (``rows``' run_dir is relative to the
    results root)."""
    from selfconfig.evaluation.overlays import figure_paths

    out = []
    for row in rows:
        scored = Path(results_root) / str(row.get("run_dir")) / SPLIT_FOLDERS.get(row.get("split"), "")
        if row.get("run_dir") and (scored / "summary.json").is_file():
            out += [scored / p for p in figure_paths(read_json(scored / "summary.json"))]
    return out


def pretraining_markdown(summaries: dict[str, dict]) -> str:
    """The pre-trainings behind the surrogate arms: held-out pretext accuracy against chance, with a
    warning a reader cannot miss when one ended near chance (or, judged by a held-out error, no
    better than an output that learned nothing)."""
    from selfconfig.pretext.base import PretextTask, format_per_part, pretraining_warning

    lines = ["## Pre-training (held-out pretext accuracy on unlabeled cases kept out of pre-training)", "",
             "| strategy | pretext task | held-out accuracy | per part | chance | held-out error (learned nothing) "
             "| iterations | minutes |",
             "|---|---|---|---|---|---|---|---|"]
    warnings = []
    for strategy, s in summaries.items():
        acc = s.get("held_out_accuracy")
        parts = format_per_part(s) or "-"
        chance = s.get("chance")
        what = s.get("accuracy_name")
        named = f" ({what})" if what and what != PretextTask.accuracy_name else ""
        acc_text = "-" if acc is None else f"{acc:.3f}{named}"
        err = s.get("held_out_error") or {}
        err_text = "-" if err.get("value") is None else (
            f"{err['name']} {err['value']:.3f}" + (f" ({err['no_learning']:.3f})" if err.get("no_learning") is not None
                                                    else ""))
        lines.append(f"| {strategy} | {s.get('pretext_task', '-')} | {acc_text} | {parts} | "
                     f"{'-' if chance is None else f'{chance:.3f}'} | {err_text} | {s.get('iterations', '-')} | "
                     f"{s.get('minutes', '-')} |")
        problem = pretraining_warning(s)
        if problem:
            warnings.append(f"> **WARNING: the {strategy} pre-training {problem[0]}** "
                            f"({problem[1]}): its weights learned little of the pretext task, so the "
                            f"{strategy} rows above do not test surrogate supervision. Pre-train longer "
                            f"(--pretrain-epochs / --pretrain-max-minutes) before reading them.")
    return "\n".join(lines + [""] + ([w + "\n" for w in warnings] if warnings else []))
