"""API behind ``selfconfig_export_model``: a trained model as one zip that another machine installs
with ``selfconfig_install_model`` and predicts with, without the dataset.

The zip mirrors ``results/NAME/``::

    plans.json                                          the plans (checkpoints carry them too)
    <Trainer>__<plans>__<config>/frac_<f>/fold_<k>/checkpoint_final.pt   weights + what rebuilds the network
    models/<model id>/model_card.json, model_card.md    strategy, pre-training, fraction, folds, metrics, versions
    models/<model id>/dataset.json, fingerprint.json    the dataset's description (no image data)
    models/<model id>/postprocessing.json               when one was decided or given

Checkpoints are exported without optimizer, scaler, augmenter and random states (prediction does
not need them), so the package holds JSON, text and weights only; every member loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import platform
import zipfile
from pathlib import Path
from typing import Callable

import torch

from selfconfig.errors import CheckpointError, ConfigurationError
from selfconfig.inference.api import ensemble_members, find_checkpoints, load_model_plans, resolve_model_dataset
from selfconfig.inference.postprocessing import load_postprocessing
from selfconfig.paths import Roots, results_dataset_dir
from selfconfig.planning import DEFAULT_PLANS_NAME, plans_file
from selfconfig.checkpoint import FORMAT, load_checkpoint
from selfconfig.utils import atomic_write_bytes, read_json

log = logging.getLogger(__name__)

PACKAGE_FORMAT = "selfconfig-model"
PACKAGE_VERSION = 1
MODELS_FOLDER = "models"
CARD = "model_card.json"
#: checkpoint entries prediction needs; the rest (optimizer, rng, ...) stays behind
KEEP_KEYS = ("format", "format_version", "trainer", "trainer_class", "plans", "configuration", "dataset",
             "hyperparameters", "fold", "fraction", "initialization")


def slim_checkpoint(path: Path) -> tuple[bytes, dict]:
    """The checkpoint's prediction part as bytes, and the full checkpoint (for the card)."""
    ckpt = load_checkpoint(path)
    slim = {k: ckpt[k] for k in KEEP_KEYS if k in ckpt}
    slim["module"] = {"network": ckpt["module"]["network"] if "module" in ckpt else ckpt["network"]}
    loop = ckpt.get("loop") or {}
    slim["loop"] = {k: loop[k] for k in ("epochs", "iters_per_epoch", "epoch", "global_step", "history") if k in loop}
    buf = io.BytesIO()
    torch.save(slim, buf)
    return buf.getvalue(), ckpt


def previous_stages(path: Path, plans, configuration: str) -> list[Path]:
    """The checkpoints a cascade checkpoint needs at prediction (its previous stage's, and so on)."""
    from selfconfig.errors import PreviousStageError
    from selfconfig.inference.predictor import previous_stage_checkpoint

    out = []
    while plans.configuration(configuration).previous_stage:
        previous = plans.configuration(configuration).previous_stage
        path = previous_stage_checkpoint(path, configuration, previous)
        if not path.is_file():
            raise PreviousStageError(f"{configuration} needs its {previous} model at {path} for prediction, and it "
                                     f"does not exist; train that fold of {previous} before exporting")
        out.append(path)
        configuration = previous
    return out


def pretraining_record(initialization: dict) -> dict | None:
    """What the encoder was pre-trained on and for how long (surrogate strategies), read from the
    pre-training checkpoint when it is still where the run found it; ImageNet runs name their source."""
    source = initialization.get("pretrained_from")
    if not source:
        return None
    path = Path(source)
    if not path.is_file():
        return {"source": str(source)}
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError:
        return {"source": str(source)}
    if ckpt.get("kind") != "pretrain":
        return {"source": str(source)}
    loop = ckpt.get("loop") or {}
    epochs, iters = loop.get("epochs"), loop.get("iters_per_epoch")
    return {"source": str(source), "strategy": ckpt.get("strategy"), "pretext_task": ckpt.get("pretext_task"),
            "dataset": (ckpt.get("dataset") or {}).get("name"), "configuration": ckpt.get("configuration"),
            "unlabeled_cases": ckpt.get("pool_size"), "epochs": epochs, "iters_per_epoch": iters,
            "iterations": epochs * iters if epochs and iters else None,
            "note": "D^u: the training cases without labels plus imagesUn; no test case"}


def fold_metrics(fold_dir: Path) -> dict | None:
    summary = fold_dir / "validation" / "summary.json"
    if not summary.is_file():
        return None
    s = read_json(summary)
    if s.get("task") == "segmentation":
        return {"mean_dice": s["mean"]["mean_dice"], "dice_per_class": s["mean"]["dice_per_class"],
                "n_cases": s.get("n_cases")}
    return {k: v for k, v in (s.get("metrics") or {}).items() if isinstance(v, (int, float)) or v is None}


def _mean(values: list) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else None


def model_id(members: list[tuple[str, str]], fraction_name: str, tag: str) -> str:
    return "+".join(f"{t}__{c}" for t, c in members) + f"__{fraction_name}" + (f"__{tag}" if tag else "")


def _first_file(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def export_model(output: Path, *, trainer: str | list[str], dataset: str | None = None,
                 configuration: str | list[str] | None = None, fraction: float | None = None,
                 folds: list[str] | None = None, plans_name: str = DEFAULT_PLANS_NAME, checkpoint: str = "final",
                 postprocessing: Path | None = None, tag: str = "", roots: Roots | None = None,
                 describe: Callable[[str], str] | None = None) -> dict:
    """Write the model package ``output`` (a .zip); returns its model card. ``describe``: trainer
    name -> the strategy's description for the card (the command passes the registry's)."""
    import selfconfig

    output = Path(output)
    if output.suffix.lower() != ".zip":
        raise ConfigurationError(f"-o {output}: the model package is a .zip file")
    roots = roots or Roots.resolve()
    name = resolve_model_dataset(dataset, roots)
    plans = load_model_plans(roots, name, plans_name)
    trainers = [trainer] if isinstance(trainer, str) else list(trainer)
    configs = [configuration] if configuration is None or isinstance(configuration, str) else list(configuration)
    members = ensemble_members(trainers, [c or plans.recommended_configuration for c in configs])
    results = results_dataset_dir(name, roots)
    files: dict[str, bytes] = {}
    card_members, fraction_names, fold_sets = [], set(), []
    for tr, cfg in members:
        plans.configuration(cfg)
        paths = find_checkpoints(roots, name, tr, plans_name, cfg, fraction, folds, checkpoint, tag)
        per_fold, first = {}, None
        for p in paths:
            data, ckpt = slim_checkpoint(p)
            first = first or ckpt
            rel = p.relative_to(results).with_name("checkpoint_final.pt").as_posix()
            files[rel] = data
            for q in previous_stages(p, plans, cfg):  # a cascade runs its earlier stages first: they travel along
                files[q.relative_to(results).with_name("checkpoint_final.pt").as_posix()] = slim_checkpoint(q)[0]
            per_fold[p.parent.name[len("fold_"):]] = fold_metrics(p.parent)
            fraction_names.add(p.parent.parent.name)
        fold_sets.append(sorted(per_fold))
        hp = first.get("hyperparameters") or {}
        loop = first.get("loop") or {}
        init = first.get("initialization") or {}
        card_members.append({
            "trainer": tr, "configuration": cfg, "trainer_class": first.get("trainer_class"),
            "strategy": describe(tr) if describe else "", "initialization": {k: v for k, v in init.items() if k != "transfer"},
            "pretraining": pretraining_record(init),
            "training": {"epochs": loop.get("epochs"), "iters_per_epoch": loop.get("iters_per_epoch"),
                         **{k: hp.get(k) for k in ("optimizer", "lr", "batch_size", "seed", "precision")}},
            "folds": sorted(per_fold), "cross_validation": {
                "per_fold": per_fold,
                "mean_dice": _mean([m.get("mean_dice") for m in per_fold.values() if m]) if plans.task == "segmentation"
                else None},
            "checkpoints": sorted(k for k in files if k.startswith(p.parent.parent.parent.name + "/")),
            **({"previous_stage": plans.configuration(cfg).previous_stage} if plans.configuration(cfg).previous_stage
               else {})})
    if len(fraction_names) != 1:
        raise ConfigurationError(f"the members were trained at different fractions ({', '.join(sorted(fraction_names))}); "
                                 f"pick one with -frac")
    frac_name = fraction_names.pop()
    mid = model_id(members, frac_name, tag)
    folder = f"{MODELS_FOLDER}/{mid}"
    pp_path = Path(postprocessing) if postprocessing else _decided_postprocessing(results, plans_name, tag, frac_name,
                                                                                  members)
    if pp_path is not None:
        load_postprocessing(pp_path)  # checked before it is packaged
        files[f"{folder}/postprocessing.json"] = pp_path.read_bytes()
    files[plans_file(Path(""), plans_name).as_posix()] = json.dumps(plans.to_dict(), indent=2).encode()
    pre, raw = roots.preprocessed / name, roots.raw / name
    for fname in ("dataset.json", "fingerprint.json"):
        src = _first_file(pre / fname, raw / fname, results / folder / fname)
        if src is not None:
            files[f"{folder}/{fname}"] = src.read_bytes()
    card = {
        "format": PACKAGE_FORMAT, "format_version": PACKAGE_VERSION, "model_id": mid, "dataset": name,
        "task": plans.task, "dim": plans.dim, "labels": plans.labels, "channel_names": plans.channel_names,
        "plans": plans_name, "tag": tag, "label_fraction": float(frac_name[len("frac_"):]),
        "folds": fold_sets[0] if all(f == fold_sets[0] for f in fold_sets) else fold_sets,
        "members": card_members,
        "ensemble": "mean of the members' softmax probabilities" if len(members) > 1 else None,
        "postprocessing": f"{folder}/postprocessing.json" if pp_path is not None else None,
        "versions": {"selfconfig": selfconfig.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "predict_args": _predict_args(name, members, frac_name, fold_sets[0], plans_name, tag),
    }
    files[f"{folder}/{CARD}"] = json.dumps(card, indent=2).encode()
    files[f"{folder}/model_card.md"] = render_card(card).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname in sorted(files):
            zf.writestr(arcname, files[arcname])
    atomic_write_bytes(output, buf.getvalue())
    log.info("exported %s (%d checkpoint(s)) to %s", mid, sum(k.endswith(".pt") for k in files), output)
    return card


def _decided_postprocessing(results: Path, plans_name: str, tag: str, frac_name: str,
                            members: list[tuple[str, str]]) -> Path | None:
    from selfconfig.inference.postprocessing import best_configuration_folder

    name = "+".join(f"{t}__{c}" for t, c in members)
    p = best_configuration_folder(results, plans_name, tag, frac_name) / "postprocessing" / f"{name}.json"
    if p.is_file():
        log.info("packaging the post-processing decided for %s: %s", name, p)
        return p
    return None


def _predict_args(dataset: str, members, frac_name: str, folds: list[str], plans_name: str, tag: str) -> list[str]:
    trainers = [t for t, _ in members]
    args = ["-d", dataset, "-tr", *(trainers[:1] if len(set(trainers)) == 1 else trainers),
            "-c", *[c for _, c in members], "-frac", frac_name[len("frac_"):], "-f", *folds]
    if plans_name != DEFAULT_PLANS_NAME:
        args += ["-p", plans_name]
    if tag:
        args += ["--tag", tag]
    return args


def render_card(card: dict) -> str:
    """The model card as Markdown (the JSON next to it holds the same)."""
    lines = [f"# {card['model_id']}", "",
             f"- dataset: {card['dataset']} ({card['task']}, {card['dim']}D), labels {card['labels']}, "
             f"channels {card['channel_names']}",
             f"- label fraction: {card['label_fraction']:g}; folds: {card['folds']}",
             f"- ensemble: {card['ensemble'] or 'no (one configuration; its folds are averaged)'}",
             f"- post-processing: {card['postprocessing'] or 'none'}",
             f"- selfconfig {card['versions']['selfconfig']}, torch {card['versions']['torch']}, "
             f"python {card['versions']['python']}; exported {card['exported']}", ""]
    for m in card["members"]:
        lines += [f"## {m['trainer']} / {m['configuration']}", "",
                  f"- strategy: {m['trainer']}" + (f" ({m['strategy']})" if m["strategy"] else ""),
                  f"- initialisation: {m['initialization'].get('init', '?')}"]
        pre = m.get("pretraining")
        if pre and pre.get("iterations"):
            lines.append(f"- pre-trained: {pre['strategy']} ({pre['pretext_task']}) on {pre['unlabeled_cases']} "
                         f"unlabeled case(s) of {pre['dataset']}/{pre['configuration']}, {pre['epochs']} x "
                         f"{pre['iters_per_epoch']} = {pre['iterations']} iterations")
        elif pre:
            lines.append(f"- pre-trained weights from: {pre['source']}")
        t = m["training"]
        lines.append(f"- fine-tuning: {t['epochs']} x {t['iters_per_epoch']} iterations, {t['optimizer']} lr {t['lr']}")
        cv = m["cross_validation"]
        for fold, met in cv["per_fold"].items():
            lines.append(f"- fold {fold}: " + (", ".join(f"{k} {v:.4f}" for k, v in met.items()
                                                         if isinstance(v, float)) if met else "not validated"))
        if cv.get("mean_dice") is not None:
            lines.append(f"- cross-validation mean Dice: {cv['mean_dice']:.4f}")
        lines.append("")
    lines += ["Install and predict:", "", "```bash", "selfconfig_install_model MODEL.zip",
              "selfconfig_predict -i INPUT -o OUTPUT " + " ".join(card["predict_args"])
              + (f" --postprocessing selfconfig_data/results/{card['dataset']}/{card['postprocessing']}"
                 if card["postprocessing"] else ""), "```", ""]
    return "\n".join(lines)


def is_checkpoint_payload(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT
