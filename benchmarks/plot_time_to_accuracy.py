"""Plot the snapshots of one or more ``bench_time_to_accuracy.py`` JSON files: the test metric
against training minutes and against iterations, one line per run (a label per file, then the
configuration when a file holds several).

    .venv/bin/python benchmarks/plot_time_to_accuracy.py \\
        documentation/benchmarks/time_to_accuracy_fundus_dr.json:"warm-up 10 %" \\
        documentation/benchmarks/time_to_accuracy_fundus_dr_nowarmup.json:"no warm-up" \\
        --title "FUNDUS_DR, Scratch, 100 % labels" --out documentation/benchmarks/schedule_fundus_dr.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="JSON[:label]")
    ap.add_argument("--title", default="")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    metric = None
    for spec in args.files:
        path, _, label = spec.partition(":")
        data = json.loads(Path(path).read_text())
        for run in data["runs"]:
            name = label or data["dataset"]
            if len(data["runs"]) > 1:
                name = f"{name} {run['configuration']}"
            snaps = run["snapshots"]
            metric = snaps[0]["metric"]
            for ax, key in zip(axes, ("minutes", "iterations")):
                ax.plot([s[key] for s in snaps], [s["test"] for s in snaps], marker="o", label=name)
    for ax, xlabel in zip(axes, ("training minutes", "iterations")):
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {metric}")
    axes[1].legend(loc="best")
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
