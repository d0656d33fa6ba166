"""API behind ``selfconfig_find_best_configuration``: which trained configuration (or ensemble of
two) segments best in cross-validation, and does keeping only the largest connected component of
a class raise its Dice?

As nnU-Net: every run folder ``<Trainer>__<plans>__<config>`` of the dataset is a candidate
(2D, 3D, low resolution, cascade ... whatever was trained), every pair of candidates is an
ensemble (the mean of their softmax probabilities), and all are scored on the same validation
cases, pooled over the folds that every candidate finished. Post-processing is decided per class
on the pooled cases: a class keeps only its largest component when that raises its mean Dice.
The winner is the candidate with the best mean Dice after its post-processing.

Writes ``results/NAME/best_configuration[__plans][__tag]/<frac>/``: ``best_configuration.json``
(every candidate's scores and the decision), ``postprocessing.json`` (the winner's),
``postprocessing/<candidate>.json`` (each candidate's) and ``inference_instructions.txt`` with the
exact ``selfconfig_predict`` command.
"""

from __future__ import annotations

import itertools
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfconfig.dataset.io import read_label
from selfconfig.errors import CheckpointError, ConfigurationError, EvaluationError
from selfconfig.evaluation.metrics import dice_per_class, nanmean
from selfconfig.inference.postprocessing import (best_configuration_folder, keep_largest_component,
                                                  postprocessing_record)
from selfconfig.inference.predictor import Predictor
from selfconfig.inference.validation import predict_and_score, raw_cases
from selfconfig.paths import Roots, fraction_tag, resolve_dataset_name, results_dataset_dir
from selfconfig.planning import DEFAULT_PLANS_NAME
from selfconfig.utils import atomic_write_text, read_json, write_json

log = logging.getLogger(__name__)

FINAL = "checkpoint_final.pt"


@dataclass(frozen=True)
class Member:
    """One trained run configuration at one label fraction: its folds are below ``folder``."""

    trainer: str
    configuration: str
    folder: Path  # results/NAME/<Trainer>__<plans>__<config>[__tag]/frac_<f>

    @property
    def name(self) -> str:
        return f"{self.trainer}__{self.configuration}"

    def fold_dir(self, fold: str) -> Path:
        return self.folder / f"fold_{fold}"

    def finished_folds(self) -> set[str]:
        return {p.parent.name[len("fold_"):] for p in self.folder.glob(f"fold_*/{FINAL}")} - {"all"}


@dataclass
class BestConfigurationResult:
    folder: Path
    best: dict
    candidates: list[dict]
    predict_command: str
    folds: list[str] = field(default_factory=list)


def discover_members(results_dir: Path, plans_name: str, tag: str, trainers: list[str] | None,
                     configurations: list[str] | None, fraction: float | None) -> tuple[list[Member], str]:
    """The run configurations with finished folds, and the fraction folder they are compared at."""
    runs = []
    for d in sorted(p for p in results_dir.iterdir() if p.is_dir()) if results_dir.is_dir() else []:
        parts = d.name.split("__")
        if len(parts) not in (3, 4) or parts[1] != plans_name or (parts[3] if len(parts) == 4 else "") != tag:
            continue
        if (trainers and parts[0] not in trainers) or (configurations and parts[2] not in configurations):
            continue
        runs.append((parts[0], parts[2], d))
    if fraction is not None:
        frac = fraction_tag(fraction)
    else:
        fracs = sorted({f.name for _, _, d in runs for f in d.glob("frac_*") if any(f.glob(f"fold_*/{FINAL}"))})
        if len(fracs) != 1:
            raise ConfigurationError(f"{results_dir} holds finished runs at {', '.join(fracs) or 'no fraction'}; "
                                     f"pick one with -frac" if fracs else
                                     f"no finished run in {results_dir} (plans {plans_name}"
                                     f"{', tag ' + tag if tag else ''}); train some first")
        frac = fracs[0]
    members = [Member(t, c, d / frac) for t, c, d in runs if any((d / frac).glob(f"fold_*/{FINAL}"))]
    for wanted, what in ((trainers, "trainer"), (configurations, "configuration")):
        for w in wanted or []:
            if not any(getattr(m, what) == w for m in members):
                raise ConfigurationError(f"no finished run of {what} {w} at {frac} in {results_dir}")
    if not members:
        raise ConfigurationError(f"no finished run at {frac} in {results_dir}; train some first")
    return members, frac


def common_folds(members: list[Member], folds: list[str] | None) -> list[str]:
    if folds:
        for m in members:
            missing = sorted(set(folds) - m.finished_folds())
            if missing:
                raise CheckpointError(f"{m.folder} has no finished fold {', '.join(missing)}; train it or pick -f")
        return list(folds)
    common = set.intersection(*(m.finished_folds() for m in members))
    for m in members:
        if m.finished_folds() - common:
            log.warning("%s: fold(s) %s are left out (not finished by every candidate)", m.name,
                        ", ".join(sorted(m.finished_folds() - common)))
    if not common:
        raise CheckpointError("the candidates share no finished fold; train the same folds of each (or pick -tr/-c)")
    return sorted(common, key=lambda f: (len(f), f))


def _fresh(fold_dir: Path, case_ids: list[str], probabilities: bool) -> bool:
    val = fold_dir / "validation"
    final_time = (fold_dir / FINAL).stat().st_mtime
    for cid in case_ids:
        hits = list(val.glob(f"{cid}_probabilities.npz" if probabilities else f"{cid}.*"))
        hits = [h for h in hits if probabilities or not h.name.endswith(".npz")]
        if not hits or min(h.stat().st_mtime for h in hits) < final_time:
            return False
    return True


def ensure_validation(member: Member, fold: str, raw_dir: Path, probabilities: bool, device, progress: bool) -> list[str]:
    """The fold's validation case ids, after making sure their predictions (and probabilities, if
    asked) exist and are newer than the final checkpoint: predicted again otherwise."""
    fold_dir = member.fold_dir(fold)
    cases_file = fold_dir / "cases.json"
    if not cases_file.is_file():
        raise CheckpointError(f"{cases_file} is missing; {fold_dir} is not a selfconfig run folder")
    val_ids = list(read_json(cases_file)["val"])
    if not val_ids:
        raise ConfigurationError(f"{fold_dir} has no validation cases; cross-validation needs folds 0..k, not 'all'")
    if not _fresh(fold_dir, val_ids, probabilities):
        hp = read_json(fold_dir / "hyperparameters.json") if (fold_dir / "hyperparameters.json").is_file() else {}
        log.info("predicting the validation cases of %s fold %s%s", member.name, fold,
                 " with probabilities" if probabilities else "")
        predictor = Predictor.from_checkpoints([fold_dir / FINAL], device, tta=hp.get("tta", True))
        predict_and_score(predictor, raw_dir, "train", val_ids, fold_dir / "validation", progress,
                          save_probabilities=probabilities)
    return val_ids


def _segmentation(members: list[Member], fold: str, case: str, shape: tuple[int, ...], scheme) -> np.ndarray:
    if len(members) == 1:
        val = members[0].fold_dir(fold) / "validation"
        files = [p for p in val.glob(f"{case}.*") if not p.name.endswith(".npz")]
        if len(files) != 1:
            raise EvaluationError(f"{val} should hold one prediction of {case}, found {len(files)}")
        seg, _ = read_label(files[0])
        return np.asarray(seg).reshape(shape)
    total = None
    for m in members:
        with np.load(m.fold_dir(fold) / "validation" / f"{case}_probabilities.npz") as z:
            p = z["probabilities"].astype(np.float32)
        total = p if total is None else total + p
    return scheme.probabilities_to_label_map(total / len(members)).reshape(shape)


def _key(target):
    return target if isinstance(target, int) else tuple(target)


def score_candidate(members: list[Member], cases: list[tuple[str, str, Path]], scheme) -> dict:
    """Pooled-case mean Dice per evaluation target (label, or region), without and with keeping only
    the target's largest component, and the per-target decision. ``scheme``: the dataset's
    :class:`~selfconfig.dataset.labels.LabelScheme` (the ignore label is left out of every count)."""
    targets = [_key(t) for _, t in scheme.evaluation_targets()]
    ignore = scheme.ignore_label

    def pooled(apply: list | None = None) -> tuple[dict, dict]:
        before: dict = {t: [] for t in targets}
        after: dict = {t: [] for t in targets}
        for fold, case, ref_path in cases:
            ref, _ = read_label(ref_path)
            ref = np.asarray(ref)
            seg = _segmentation(members, fold, case, ref.shape, scheme)
            if apply is not None:  # the chosen post-processing, all of it (regions may overlap)
                for t in apply:
                    seg = keep_largest_component(seg, t)
                for t, d in dice_per_class(seg, ref, targets, ignore_label=ignore).items():
                    before[t].append(d)
                continue
            for t, d in dice_per_class(seg, ref, targets, ignore_label=ignore).items():
                before[t].append(d)
            for t in targets:
                after[t].append(dice_per_class(keep_largest_component(seg, t), ref, [t], ignore_label=ignore)[t])
        return {t: nanmean(v) for t, v in before.items()}, {t: nanmean(v) for t, v in after.items()}

    mean_before, mean_after = pooled()
    chosen = [t for t in targets if not np.isnan(mean_after[t]) and mean_after[t] > mean_before[t]]
    if chosen and scheme.has_regions:
        final, _ = pooled(chosen)  # nested regions: measure the combination instead of assuming independence
    else:  # plain labels: a class's largest component changes only that class (and background)
        final = {t: (mean_after[t] if t in chosen else mean_before[t]) for t in targets}
    return {"dice_per_class": mean_before, "dice_per_class_largest_component": mean_after,
            "largest_component_classes": [t if isinstance(t, int) else list(t) for t in chosen],
            "dice_per_class_postprocessed": final,
            "mean_dice": nanmean(mean_before.values()), "mean_dice_postprocessed": nanmean(final.values())}


def predict_command(dataset: str, members: list[Member], fraction_name: str, folds: list[str], plans_name: str,
                    tag: str, postprocessing: Path | None) -> str:
    trainers = [m.trainer for m in members]
    parts = ["selfconfig_predict", "-i", "INPUT_FOLDER", "-o", "OUTPUT_FOLDER", "-d", dataset,
             "-tr", *(trainers[:1] if len(set(trainers)) == 1 else trainers),
             "-c", *[m.configuration for m in members], "-frac", fraction_name[len("frac_"):], "-f", *folds]
    if plans_name != DEFAULT_PLANS_NAME:
        parts += ["-p", plans_name]
    if tag:
        parts += ["--tag", tag]
    if postprocessing is not None:
        parts += ["--postprocessing", str(postprocessing)]
    return " ".join(shlex.quote(p) if p not in ("INPUT_FOLDER", "OUTPUT_FOLDER") else p for p in parts)


def _validation_cases(members: list[Member], folds: list[str], raw_dir: Path, probabilities: bool, device,
                      progress: bool) -> dict[str, list[str]]:
    """Each fold's validation cases, predicted by every candidate; the candidates must agree on them."""
    val_ids: dict[str, list[str]] = {}
    for m in members:
        for f in folds:
            ids = ensure_validation(m, f, raw_dir, probabilities, device, progress)
            if val_ids.setdefault(f, ids) != ids and set(val_ids[f]) != set(ids):
                raise CheckpointError(f"{m.fold_dir(f)} validates other cases than the other candidates' fold {f} "
                                      f"(other splits.json?); compare runs of the same splits")
    return val_ids


def find_best_configuration(dataset: str | int | None = None, *, trainers: list[str] | None = None,
                            configurations: list[str] | None = None, fraction: float | None = None,
                            folds: list[str] | None = None, plans_name: str = DEFAULT_PLANS_NAME, tag: str = "",
                            ensembles: bool = True, device: str | None = None, roots: Roots | None = None,
                            progress: bool = True) -> BestConfigurationResult:
    from selfconfig.dataset.schema import load_dataset_json
    from selfconfig.device import pick_device

    roots = roots or Roots.resolve()
    name = resolve_dataset_name(dataset, roots, need="raw")
    raw_dir = roots.raw / name
    info = load_dataset_json(raw_dir)
    if info.task != "segmentation":
        raise ConfigurationError(f"{name} is a {info.task} dataset; selfconfig_find_best_configuration compares "
                                 f"segmentation runs (Dice, connected components)")
    results_dir = results_dataset_dir(name, roots)
    members, frac = discover_members(results_dir, plans_name, tag, trainers, configurations, fraction)
    fold_list = common_folds(members, folds)
    dev = pick_device(device)
    need_probs = ensembles and len(members) > 1
    val_ids = _validation_cases(members, fold_list, raw_dir, need_probs, dev, progress)
    refs = {c.case_id: c.label_file for c in raw_cases(raw_dir, "train", [i for ids in val_ids.values() for i in ids])[1]}
    cases = [(f, cid, refs[cid]) for f in fold_list for cid in val_ids[f]]
    scheme = info.label_scheme
    label_names = {_key(t): str(n) for n, t in scheme.evaluation_targets()}
    groups = [[m] for m in members] + ([list(p) for p in itertools.combinations(members, 2)] if need_probs else [])
    out = best_configuration_folder(results_dir, plans_name, tag, frac)
    candidates = []
    for group in groups:
        cname = " + ".join(m.name for m in group)
        log.info("scoring %s on %d validation case(s) of fold(s) %s", cname, len(cases), ", ".join(fold_list))
        score = score_candidate(group, cases, scheme)
        named = {k: ({label_names[c]: _finite(v) for c, v in val.items()} if isinstance(val, dict) else _finite(val))
                 for k, val in score.items()}
        candidates.append({"name": cname, "members": [{"trainer": m.trainer, "configuration": m.configuration}
                                                      for m in group], **named,
                           "postprocessing_file": str(out / "postprocessing" / f"{_safe(cname)}.json"),
                           "_group": group})
    best = max(candidates, key=lambda c: (_num(c["mean_dice_postprocessed"]), -len(c["members"])))
    pp_file = out / "postprocessing.json"
    command = predict_command(name, best["_group"], frac, fold_list, plans_name, tag, pp_file)
    for c in candidates:
        group = c.pop("_group")
        c["predict_command"] = predict_command(name, group, frac, fold_list, plans_name, tag,
                                               Path(c["postprocessing_file"]))
        write_json(Path(c["postprocessing_file"]), _pp_record(c, name, frac, fold_list))
    write_json(pp_file, _pp_record(best, name, frac, fold_list))
    record = {"dataset": name, "fraction": frac, "folds": fold_list, "plans": plans_name, "tag": tag,
              "n_validation_cases": len(cases), "selection": "highest mean Dice after post-processing",
              "best": best["name"], "predict_command": command, "candidates": candidates}
    write_json(out / "best_configuration.json", record)
    atomic_write_text(out / "inference_instructions.txt", _instructions(record, best))
    log.info("best: %s (mean Dice %.4f, %.4f with post-processing); wrote %s", best["name"], _num(best["mean_dice"]),
             _num(best["mean_dice_postprocessed"]), out)
    return BestConfigurationResult(out, best, candidates, command, fold_list)


def _num(v) -> float:
    return -1.0 if v is None or np.isnan(v) else float(v)


def _finite(v):
    """NaN (a class absent from every case) -> None: JSON has no NaN."""
    return None if isinstance(v, float) and np.isnan(v) else v


def _safe(name: str) -> str:
    return name.replace(" + ", "+").replace("/", "_")


def _pp_record(candidate: dict, dataset: str, frac: str, folds: list[str]) -> dict:
    names = candidate["largest_component_classes"]
    return postprocessing_record([v for v in names], dataset=dataset, candidate=candidate["name"], fraction=frac,
                                 folds=folds, dice_per_class=candidate["dice_per_class"],
                                 dice_per_class_postprocessed=candidate["dice_per_class_postprocessed"])


def _instructions(record: dict, best: dict) -> str:
    lines = [f"Best on {record['dataset']} ({record['fraction']}, folds {', '.join(record['folds'])}, "
             f"{record['n_validation_cases']} validation cases): {best['name']}",
             f"  mean Dice {_num(best['mean_dice']):.4f}, with post-processing {_num(best['mean_dice_postprocessed']):.4f}",
             f"  largest component only for: {', '.join(map(str, best['largest_component_classes'])) or 'no class'}",
             "", "Predict with:", f"  {record['predict_command']}", "", "All candidates (mean Dice, post-processed):"]
    for c in sorted(record["candidates"], key=lambda c: -_num(c["mean_dice_postprocessed"])):
        lines.append(f"  {c['name']:50s} {_num(c['mean_dice']):.4f}  {_num(c['mean_dice_postprocessed']):.4f}")
    return "\n".join(lines) + "\n"
