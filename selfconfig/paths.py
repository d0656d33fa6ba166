"""The three data roots: raw, preprocessed, results.

Each root comes from an explicit argument (a CLI flag), else an environment variable
(``SELFCONFIG_RAW``, ``SELFCONFIG_PREPROCESSED``, ``SELFCONFIG_RESULTS``), else
``selfconfig_data/{raw,preprocessed,results}`` under the current directory. Everything is read
when a function is called, never at import time, so tests and notebooks can change the
environment freely.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from selfconfig.errors import DatasetNotFoundError

ENV_VARS = {
    "raw": "SELFCONFIG_RAW",
    "preprocessed": "SELFCONFIG_PREPROCESSED",
    "results": "SELFCONFIG_RESULTS",
}
DEFAULT_BASE = "selfconfig_data"
DEFAULT_PLANS_NAME = "selfconfigPlans"  # the plans a run folder names unless -p says otherwise


def user_cache_dir() -> Path:
    """Per-user, per-machine cache (the CPU throughput measurement): ``SELFCONFIG_CACHE``, else
    ``$XDG_CACHE_HOME/selfconfig``, else ``~/.cache/selfconfig``. Outside every dataset folder, so
    that every plan made on this machine reuses one measurement."""
    env = os.environ.get("SELFCONFIG_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base).expanduser() / "selfconfig").resolve()


def get_root(kind: str, explicit: str | os.PathLike | None = None) -> Path:
    """Resolve one root: ``explicit`` > environment variable > ``./selfconfig_data/<kind>``."""
    if kind not in ENV_VARS:
        raise ValueError(f"unknown root {kind!r}; expected one of {sorted(ENV_VARS)}")
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_VARS[kind])
    if env:
        return Path(env).expanduser().resolve()
    return (Path.cwd() / DEFAULT_BASE / kind).resolve()


@dataclass(frozen=True)
class Roots:
    """The three roots, resolved once per command."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def resolve(cls, raw=None, preprocessed=None, results=None) -> "Roots":
        return cls(
            raw=get_root("raw", raw),
            preprocessed=get_root("preprocessed", preprocessed),
            results=get_root("results", results),
        )


_PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_plain_name(value: str, what: str = "dataset name", flag: str = "-d") -> str:
    """A name that becomes one folder or file name under a root: no path separators, no ``..``,
    nothing absolute, so that it can never point outside its root. Returns it stripped."""
    from selfconfig.errors import ConfigurationError

    text = str(value).strip()
    if not text or not _PLAIN_NAME_RE.match(text) or ".." in text:
        raise ConfigurationError(
            f"{flag} {value!r} is not a plain {what}: use letters, digits, '_', '-', '.' only (no '/', '\\' or "
            f"'..'); it names a folder inside the data roots, never a path")
    return text


def _candidates(roots: Roots) -> list[str]:
    names: set[str] = set()
    for base in (roots.raw, roots.preprocessed):
        if base.is_dir():
            names.update(p.name for p in base.iterdir() if p.is_dir())
    return sorted(names)


def resolve_dataset_name(name: str | int | None, roots: Roots, *, need: str = "raw") -> str:
    """Turn ``-d`` into a dataset folder name.

    Accepts the folder name itself (``LUNG_LOBES``, ``Dataset501_Lobes``) or an nnU-Net numeric
    id (``501``). ``None`` resolves when exactly one dataset is preprocessed (or, with
    ``need='raw'``, exactly one raw dataset exists).
    """
    where = roots.raw if need == "raw" else roots.preprocessed
    if name is None or name == "":
        pool = [p.name for p in where.iterdir() if p.is_dir()] if where.is_dir() else []
        if need != "raw":
            pool = [n for n in pool if (where / n / "plans.json").is_file()] or pool
        if len(pool) == 1:
            return pool[0]
        if not pool:
            raise DatasetNotFoundError(
                f"no dataset found under {where}; run selfconfig_make_example or "
                f"selfconfig_plan_and_preprocess first, or pass -d NAME"
            )
        raise DatasetNotFoundError(
            f"several datasets under {where} ({', '.join(sorted(pool))}); pick one with -d NAME"
        )
    text = check_plain_name(name)
    if (where / text).is_dir():
        return text
    if text.isdigit():
        prefix = f"Dataset{int(text):03d}_"
        hits = [n for n in _candidates(roots) if n.startswith(prefix)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DatasetNotFoundError(f"dataset id {text} is ambiguous: {', '.join(hits)}")
    # a name that exists in the other root (e.g. only preprocessed data was copied here)
    if text in _candidates(roots):
        return text
    known = _candidates(roots)
    hint = f" Known datasets: {', '.join(known)}." if known else ""
    raise DatasetNotFoundError(
        f"dataset {text!r} not found under {where}.{hint} "
        f"Set {ENV_VARS[need if need != 'raw' else 'raw']} or pass the root folder flag."
    )


def results_dataset_dir(name: str, roots: Roots) -> Path:
    return roots.results / name


def run_folder_name(trainer: str, plans: str, configuration: str, tag: str = "") -> str:
    """``<Trainer>__<plans>__<config>``, the nnU-Net naming users already know; a run tag (e.g. the
    experiment's ``quick`` budget) is appended as ``__<tag>`` so runs with other settings stay apart."""
    return f"{trainer}__{plans}__{configuration}" + (f"__{tag}" if tag else "")


def fraction_tag(fraction: float) -> str:
    """``frac_0.25``; 1.0 is written ``frac_1.0`` so that every fraction has one spelling."""
    return f"frac_{float(fraction):g}" if float(fraction) != 1.0 else "frac_1.0"


def run_dir(roots: Roots, dataset: str, trainer: str, plans: str, configuration: str,
            fraction: float, fold: int | str, tag: str = "") -> Path:
    return (results_dataset_dir(dataset, roots) / run_folder_name(trainer, plans, configuration, tag)
            / fraction_tag(fraction) / f"fold_{fold}")


@dataclass(frozen=True)
class RunLocation:
    """What a run folder's path says: ``<Trainer>__<plans>__<config>[__tag]/frac_<f>/fold_<k>``."""

    trainer: str
    plans: str
    configuration: str
    tag: str
    fraction: float
    fold: str


def parse_run_dir(fold_dir: str | Path) -> RunLocation | None:
    """The inverse of :func:`run_dir` (None when ``fold_dir`` is not laid out as one)."""
    fold_dir = Path(fold_dir)
    frac_dir = fold_dir.parent
    parts = frac_dir.parent.name.split("__")
    if len(parts) not in (3, 4) or not frac_dir.name.startswith("frac_") or not fold_dir.name.startswith("fold_"):
        return None
    try:
        fraction = float(frac_dir.name[len("frac_"):])
    except ValueError:
        return None
    return RunLocation(parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else "", fraction,
                       fold_dir.name[len("fold_"):])


def train_command_line(dataset: str, configuration: str, trainer: str, fraction: float, fold: str,
                       plans_name: str = DEFAULT_PLANS_NAME, tag: str = "") -> str:
    """``selfconfig_train`` for one run folder (:func:`selfconfig.paths.run_dir`'s arguments)."""
    cmd = f"selfconfig_train -d {dataset} -c {configuration} -tr {trainer} -frac {float(fraction):g} -f {fold}"
    if plans_name != DEFAULT_PLANS_NAME:
        cmd += f" -p {plans_name}"
    return cmd + (f" --tag {tag}" if tag else "")


def pretrain_dir(roots: Roots, dataset: str, strategy: str, plans: str, configuration: str, tag: str = "") -> Path:
    return (results_dataset_dir(dataset, roots) / "pretrain"
            / run_folder_name(strategy, plans, configuration, tag))
