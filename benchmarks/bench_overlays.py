"""What the overlay PNGs add to ``evaluate_segmentation_folder`` per case: a 32^3 case and a
large CT-sized case (default 300 x 512 x 512), each scored with and without overlays.

    python benchmarks/bench_overlays.py [--large 300 512 512] [--repeats 3] [--out overlay_bench.json]

The added time is reading the scan (it grows with the scan) plus drawing three slices resampled
to a fixed pixel budget (it does not). Prints one line per size and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from selfconfig.evaluation.evaluate import evaluate_segmentation_folder

LABELS = {"background": 0, "organ": 1, "lesion": 2}


def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path), useCompression=False)


def make_case(folder: Path, shape: tuple[int, int, int]) -> dict[str, list[Path]]:
    """An ellipsoid organ with a lesion, a prediction shifted by a few voxels, a noisy scan."""
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    c = [n / 2 for n in shape]
    r = [n / 4 for n in shape]
    organ = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 < 1
    ref = organ.astype(np.uint8)
    ref[(((z - c[0]) / (r[0] / 3)) ** 2 + ((y - c[1]) / (r[1] / 3)) ** 2 + ((x - c[2]) / (r[2] / 3)) ** 2) < 1] = 2
    pred = np.roll(ref, max(1, shape[2] // 32), axis=2)
    scan = (ref * 80.0 + np.random.default_rng(0).normal(0, 20, shape)).astype(np.float32)
    _write(folder / "labelsTs" / "case.nii", ref)
    _write(folder / "pred" / "case.nii", pred)
    _write(folder / "imagesTs" / "case_0000.nii", scan)
    return {"case": [folder / "imagesTs" / "case_0000.nii"]}


def seconds(folder: Path, images, overlays: bool, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        evaluate_segmentation_folder(folder / "pred", folder / "labelsTs", LABELS, output_dir=folder / "out",
                                     images=images, overlays=overlays)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", type=int, nargs=3, default=[300, 512, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("overlay_bench.json"))
    args = ap.parse_args()
    rows = []
    for shape in ((32, 32, 32), tuple(args.large)):
        with tempfile.TemporaryDirectory() as tmp:
            images = make_case(Path(tmp), shape)
            seconds(Path(tmp), images, True, 1)  # warm-up: imports, file cache
            plain = seconds(Path(tmp), images, False, args.repeats)
            drawn = seconds(Path(tmp), images, True, args.repeats)
        rows.append({"shape": list(shape), "evaluate_s": round(plain, 3), "with_overlays_s": round(drawn, 3),
                     "added_s": round(drawn - plain, 3)})
        print(f"{'x'.join(map(str, shape)):>12}: evaluate {plain:.3f} s, with overlays {drawn:.3f} s "
              f"(+{drawn - plain:.3f} s per case, best of {args.repeats})")
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
