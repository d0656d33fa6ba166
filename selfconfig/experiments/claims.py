"""The paper's claims (Tajbakhsh et al., ISBI 2019) and whether an experiment grid bears them out.

The claims are keyed by the bundled examples' dataset names, and apply only to a dataset whose
dataset.json declares the example's surrogate task (``surrogate_task``, written by
``selfconfig_make_example``): a user's own dataset gets no claims section, even under one of
these names.

A claim is judged on the paired per-fold difference of its two arms
(:func:`selfconfig.experiments.statistics.paired_difference`) and its 95 % interval:

- ``greater`` (A > B): *holds* when the interval lies above 0, *fails* when it lies below 0,
  *cannot be decided* when it contains 0 or there are fewer than 2 folds (no interval).
- ``about_equal`` (A ≈ B): the paper gives no margin, so "about equal" is read as "within
  ``margin``" (a choice of this module, stated in the report): *holds* when the whole interval
  lies within ±margin, *fails* when it lies wholly outside, *cannot be decided* otherwise.

Only the direction is judged, not the size; the paper's size is printed next to the measured one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from selfconfig.experiments.statistics import fmt_interval, paired_difference

HOLDS, FAILS, UNDECIDED, NOT_RUN = "holds", "fails", "cannot be decided", "not run"


@dataclass(frozen=True)
class Claim:
    """``first`` is claimed to be above (``greater``) or about equal to (``about_equal``) ``second``."""

    first: str
    second: str
    relation: str  # "greater" | "about_equal"
    fractions: tuple[float, ...] | None  # None: at every fraction the grid ran
    paper: str  # what the paper reports, in words
    margin: float | None = None  # about_equal: the band read as "about equal"

    def words(self) -> str:
        return f"{self.first} {'>' if self.relation == 'greater' else '≈'} {self.second}"


#: one place for the paper's claims, by the bundled examples' names (selfconfig.examples.EXAMPLES)
CLAIMS: dict[str, tuple[Claim, ...]] = {
    "LUNG_LOBES": (
        Claim("SurrogateFlip", "Scratch", "greater", (0.1, 0.25), "+0.02 to +0.04 Dice at 10 % and 25 % of the labels"),
    ),
    "FUNDUS_DR": (
        Claim("SurrogateRotation", "Scratch", "greater", (0.1,), "+0.24 kappa at 10 % of the labels"),
        Claim("SurrogateRotation", "Scratch", "greater", (0.25,), "+0.09 kappa at 25 % of the labels"),
        Claim("SurrogateRotation", "ImageNet", "greater", None, "ImageNet below rotation on retinopathy"),
    ),
    "NODULE_FPR": (
        Claim("SurrogateWGAN", "Scratch", "about_equal", (0.1,), "about equal at 10 % of the labels", margin=0.02),
        Claim("SurrogateWGAN", "Scratch", "about_equal", (0.25,),
              "about equal at 25 % of the labels (+0.013 FROC)", margin=0.02),
    ),
    "SKIN_SEG": (
        Claim("ImageNet", "SurrogateColor", "greater", None, "ImageNet > colourisation > Scratch"),
        Claim("SurrogateColor", "Scratch", "greater", None, "ImageNet > colourisation > Scratch"),
    ),
}


def claims_for(dataset: str, surrogate_task: str | None) -> tuple[Claim, ...]:
    """The paper's claims for ``dataset``: only a bundled example's name whose dataset.json
    declares that example's surrogate task; empty for every other dataset."""
    from selfconfig.examples import EXAMPLES

    example = EXAMPLES.get(dataset)
    if example is None or dataset not in CLAIMS or surrogate_task != example.strategy:
        return ()
    return CLAIMS[dataset]


def verdict(claim: Claim, row: dict) -> tuple[str, str]:
    """(verdict, one sentence why) for ``claim`` from its paired difference ``row``."""
    n, low, high = row["n_folds"], row["ci_low"], row["ci_high"]
    diff = f"{claim.first} − {claim.second} = {fmt_interval(row)}"
    if n == 0:
        return NOT_RUN, f"no fold has both {claim.first} and {claim.second}"
    if n < 2 or math.isnan(low):
        return UNDECIDED, f"{diff}: with {n} fold there is no interval (needs at least 2 folds, e.g. -f 0 1 2 3 4)"
    if claim.relation == "greater":
        if low > 0:
            return HOLDS, f"{diff}: the 95 % interval over {n} folds lies above 0"
        if high < 0:
            return FAILS, f"{diff}: the 95 % interval over {n} folds lies below 0 ({claim.second} is better here)"
        return UNDECIDED, f"{diff}: the 95 % interval over {n} folds contains 0"
    m = float(claim.margin)
    if -m <= low and high <= m:
        return HOLDS, f"{diff}: the 95 % interval over {n} folds lies within ±{m:g}"
    if low > m or high < -m:
        return FAILS, f"{diff}: the 95 % interval over {n} folds lies outside ±{m:g}"
    return UNDECIDED, f"{diff}: the 95 % interval over {n} folds reaches beyond ±{m:g} but not wholly"


def judge_claims(df: pd.DataFrame, claims: tuple[Claim, ...], fractions: list[float]) -> list[dict]:
    """One verdict per claim and label fraction, on the test set (the paper's numbers are test-set
    numbers), or on the validation folds when the grid has no test scores."""
    if df.empty:
        return []
    split = "test" if (df["split"] == "test").any() else "val"
    strategies = set(df["strategy"])
    out = []
    for claim in claims:
        for f in (claim.fractions if claim.fractions is not None else sorted(fractions)):
            ran = [f_ for f_ in fractions if np.isclose(f_, f)]
            missing = [s for s in (claim.first, claim.second) if s not in strategies]
            base = {"claim": claim, "fraction": float(f), "split": split}
            if missing or not ran:
                why = (f"the grid has no {' and no '.join(missing)} arm (add -tr {' '.join(missing)})" if missing
                       else f"the grid did not run {f * 100:g} % of the labels (add -frac {f:g})")
                out.append({**base, "verdict": NOT_RUN, "why": why, "row": None})
                continue
            row = paired_difference(df, split, f, claim.first, claim.second)
            v, why = verdict(claim, row)
            out.append({**base, "verdict": v, "why": why, "row": row})
    return out


def claims_markdown(df: pd.DataFrame, claims: tuple[Claim, ...], fractions: list[float], metric: str,
                    flagged: dict[str, str] | None = None) -> str:
    """The section "The paper's claims": a verdict in words per claim and fraction; ``flagged``:
    strategy -> what went wrong with its pre-training, in words (``"ended near chance"``, ``"ended no
    better than an output that learned nothing"``); their verdicts say so."""
    flagged = flagged or {}
    judged = judge_claims(df, claims, fractions)
    if not judged:
        return ""
    split = judged[0]["split"]
    where = "held-out test set" if split == "test" else "validation folds (no test scores)"
    lines = ["## The paper's claims", "",
             f"Tajbakhsh et al., ISBI 2019, checked on the {where}: the paired per-fold difference in `{metric}` "
             "with its 95 % confidence interval (t distribution, folds - 1 degrees of freedom). A claim *holds* "
             "when the interval excludes 0 in the claimed direction, *fails* when it excludes 0 in the other "
             "direction, and *cannot be decided* when it contains 0 or there is only one fold. Only the "
             "direction is judged; the paper's size is quoted for comparison. Each interval is 95 % on its own "
             "(no correction for the number of claims); on synthetic data a verdict says whether this "
             "framework reproduces the claimed direction here, not whether the paper is right.", ""]
    for words, margin in dict.fromkeys((j["claim"].words(), j["claim"].margin) for j in judged
                                       if j["claim"].relation == "about_equal"):
        lines += [f"*{words}* is read as: the difference lies within ±{margin:g} "
                  f"(the paper gives no margin; this one is ours).", ""]
    for j in judged:
        c = j["claim"]
        lines.append(f"- **{j['verdict']}**: {c.words()} at {j['fraction'] * 100:g} % of the labels "
                     f"(paper: {c.paper}). {j['why'][0].upper()}{j['why'][1:]}."
                     + "".join(f" The {s} pre-training {flagged[s]} (see above): this does not "
                               f"test surrogate supervision." for s in (c.first, c.second) if s in flagged))
    lines.append("")
    return "\n".join(lines)
