"""Which files of an input folder form which case, for prediction."""

from __future__ import annotations

import re
from pathlib import Path

from selfconfig.dataset.io import SUPPORTED_ENDINGS, is_dicom_folder, split_ending
from selfconfig.errors import ImageReadError

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _supported(p: Path) -> bool:
    return split_ending(p.name)[1].lower() in SUPPORTED_ENDINGS


def discover_inputs(path: Path, num_file_channels: int) -> dict[str, list[Path]]:
    """Map case name -> channel files. Accepts a single file, a DICOM series folder, or a folder
    of ``CASE_XXXX.ext`` files / DICOM series folders / (single-channel models) any image files."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path} does not exist; pass a file or a folder of scans with -i")
    if path.is_file() or is_dicom_folder(path):
        stem = split_ending(path.name)[0] if path.is_file() else path.name
        m = _CHANNEL_RE.match(stem)
        if num_file_channels != 1:
            raise ImageReadError(f"{path}: the model needs {num_file_channels} channel files per case; "
                                 f"pass the folder holding CASE_0000 ... CASE_{num_file_channels - 1:04d}")
        return {m.group("case") if m else stem: [path]}
    groups: dict[str, dict[int, Path]] = {}
    singles: dict[str, Path] = {}
    for p in sorted(path.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if not is_dicom_folder(p):
                continue
            stem = p.name
        elif _supported(p):
            stem = split_ending(p.name)[0]
        else:
            continue
        m = _CHANNEL_RE.match(stem)
        if m:
            chans = groups.setdefault(m.group("case"), {})
            other = chans.get(int(m.group("channel")))
        else:
            other = singles.get(stem)
        if other is not None:  # pat.nii.gz and pat.nrrd: one would silently be dropped
            raise ImageReadError(f"{path}: case {stem} is given twice ({other.name} and {p.name}); both would be "
                                 f"written as one prediction: rename or move one of them")
        if m:
            chans[int(m.group("channel"))] = p
        else:
            singles[stem] = p
    if singles and num_file_channels != 1:
        name = next(iter(singles.values()))
        raise ImageReadError(f"{name}: not named CASE_XXXX (XXXX = channel index); the model needs "
                             f"{num_file_channels} channel files per case")
    cases: dict[str, list[Path]] = {k: [v] for k, v in singles.items()}
    for case, chans in groups.items():
        if sorted(chans) != list(range(num_file_channels)):
            have = ", ".join(f"{c:04d}" for c in sorted(chans))
            raise ImageReadError(f"{path / case}_*: has channel file(s) [{have}] but the model needs "
                                 f"{num_file_channels} (0000..{num_file_channels - 1:04d})")
        if case in cases:
            raise ImageReadError(f"{path}: case {case} is given twice (as {cases[case][0].name} and with channel files)")
        cases[case] = [chans[c] for c in range(num_file_channels)]
    if not cases:
        raise ImageReadError(f"{path} holds no readable scans ({', '.join(SUPPORTED_ENDINGS)} or DICOM series folders)")
    return dict(sorted(cases.items()))


def check_output_folder(output: Path, cases: dict[str, list[Path]]) -> None:
    """Predictions never go where they could replace an input: the output must not be a file, nor
    the folder that holds any input file (whose name a prediction may take)."""
    from selfconfig.errors import ConfigurationError

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ConfigurationError(f"-o {output} is an existing file; the output is a folder: pick a folder name "
                                 f"(nothing was written)")
    out = output.resolve()
    for case, paths in cases.items():
        for p in paths:
            if p.resolve().parent == out or p.resolve() == out:
                raise ConfigurationError(
                    f"-o {output} holds the input {p.name} (case {case}); a prediction could replace the scan: "
                    f"pick another output folder (nothing was written)")
