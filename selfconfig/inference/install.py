"""API behind ``selfconfig_install_model``: check a model package completely, then put it into a
results root, where ``selfconfig_predict`` finds it without the dataset or its plans.

A package is refused (one line, nothing written) when a member's path would land outside the
target folder (absolute, ``..``, a link, a drive or backslash path), when a member is anything but
JSON, text or a checkpoint that loads with ``torch.load(weights_only=True)``, or when it would
replace different files of an installed model (``--overwrite`` replaces them).
"""

from __future__ import annotations

import io
import json
import logging
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from selfconfig.errors import ModelPackageError
from selfconfig.inference.export import CARD, MODELS_FOLDER, PACKAGE_FORMAT, PACKAGE_VERSION, is_checkpoint_payload
from selfconfig.paths import Roots, results_dataset_dir
from selfconfig.utils import atomic_write_bytes

log = logging.getLogger(__name__)

TEXT_ENDINGS = (".json", ".txt", ".md")
WEIGHT_ENDINGS = (".pt",)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class InstallResult:
    target: Path
    card: dict
    files: list[Path]
    predict_command: str


def _member_path(info: zipfile.ZipInfo, package: Path) -> PurePosixPath | None:
    """The member's relative path, or a refusal; ``None`` for a directory entry."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelPackageError(f"{package}: refused: member {name!r} is a link")
    if "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        raise ModelPackageError(f"{package}: refused: member {name!r} has an absolute or non-portable path")
    path = PurePosixPath(name)
    if any(part in ("..", "") for part in path.parts) or path.is_absolute():
        raise ModelPackageError(f"{package}: refused: member {name!r} escapes the target folder")
    if name.endswith("/"):
        return None
    for part in path.parts:
        if not _SAFE_NAME.match(part):
            raise ModelPackageError(f"{package}: refused: member {name!r} has an unexpected file or folder name")
    return path


def _check_content(path: PurePosixPath, data: bytes, package: Path):
    """JSON/text must decode; weights must load with weights_only=True as a selfconfig checkpoint."""
    ending = path.suffix.lower()
    if ending in TEXT_ENDINGS:
        try:
            text = data.decode("utf-8")
            return json.loads(text) if ending == ".json" else text
        except (UnicodeDecodeError, ValueError) as e:
            raise ModelPackageError(f"{package}: refused: {path} is not valid {ending[1:]} ({type(e).__name__})")
    if ending in WEIGHT_ENDINGS:
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelPackageError(f"{package}: refused: {path} does not load as weights only "
                                    f"({type(e).__name__}); it may hold code")
        if not is_checkpoint_payload(obj):
            raise ModelPackageError(f"{package}: refused: {path} is not a selfconfig checkpoint")
        return obj
    raise ModelPackageError(f"{package}: refused: {path} is neither JSON/text nor weights (.pt); a model package "
                            f"holds nothing else")


def read_package(package: Path) -> tuple[dict, dict[PurePosixPath, bytes]]:
    """Every member checked; returns the model card and the members' bytes."""
    package = Path(package)
    if not package.is_file():
        raise ModelPackageError(f"{package} does not exist; give the .zip written by selfconfig_export_model")
    try:
        zf = zipfile.ZipFile(package)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelPackageError(f"{package} is not a zip file ({e})")
    members: dict[PurePosixPath, bytes] = {}
    with zf:
        for info in zf.infolist():
            path = _member_path(info, package)
            if path is None:
                continue
            if path in members:
                raise ModelPackageError(f"{package}: refused: member {path} appears twice")
            members[path] = zf.read(info)
    cards = [p for p in members if p.name == CARD and len(p.parts) == 3 and p.parts[0] == MODELS_FOLDER]
    if len(cards) != 1:
        raise ModelPackageError(f"{package}: refused: expected one {MODELS_FOLDER}/<model>/{CARD}, found {len(cards)}")
    parsed = {p: _check_content(p, data, package) for p, data in members.items()}
    card = parsed[cards[0]]
    if not isinstance(card, dict) or card.get("format") != PACKAGE_FORMAT:
        raise ModelPackageError(f"{package}: refused: {cards[0]} is not a selfconfig model card")
    if int(card.get("format_version", 0)) > PACKAGE_VERSION:
        raise ModelPackageError(f"{package} was written by a newer selfconfig (package version "
                                f"{card.get('format_version')}); update selfconfig to install it")
    if not _SAFE_NAME.match(str(card.get("dataset", ""))):
        raise ModelPackageError(f"{package}: refused: the card's dataset name {card.get('dataset')!r} is not a "
                                f"plain folder name")
    if not any(p.suffix == ".pt" for p in members):
        raise ModelPackageError(f"{package}: refused: it holds no checkpoint")
    return card, members


def install_model(package: Path, *, roots: Roots | None = None, overwrite: bool = False) -> InstallResult:
    """Check ``package`` completely, then write its files under ``results/<dataset>/``."""
    roots = roots or Roots.resolve()
    card, members = read_package(package)
    target = results_dataset_dir(card["dataset"], roots)
    clashes = [p for p, data in members.items()
               if (target / p).exists() and (not (target / p).is_file() or (target / p).read_bytes() != data)]
    if clashes and not overwrite:
        raise ModelPackageError(f"{target / clashes[0]} exists with other content ({len(clashes)} file(s) differ); "
                                f"install with --overwrite to replace them")
    written = []
    for p, data in sorted(members.items()):
        atomic_write_bytes(target / p, data)
        written.append(target / p)
    pp = card.get("postprocessing")
    command = " ".join(["selfconfig_predict", "-i", "INPUT", "-o", "OUTPUT", *card.get("predict_args", []),
                        "--results", str(roots.results)] + (["--postprocessing", str(target / pp)] if pp else []))
    log.info("installed %s (%d file(s)) into %s", card.get("model_id"), len(written), target)
    return InstallResult(target, card, written, command)
