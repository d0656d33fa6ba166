"""Geometry of one case: what is needed to write a prediction back exactly where it came from.

Array convention used everywhere in selfconfig: images are ``float32`` arrays of shape
``(C, Z, Y, X)``; 2D images are stored the same way with ``Z == 1`` (as nnU-Net does), so one
code path serves 2D and 3D. ``spacing`` is given in the *array* axis order ``(z, y, x)``.
``origin`` and ``direction`` are kept in SimpleITK's (x, y, z) convention so that writers can
hand them back unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# spacing used for the dummy z axis of 2D images (nnU-Net uses the same convention)
DUMMY_2D_SPACING = 999.0


@dataclass
class Geometry:
    """Spacing, origin and direction of a case, plus how it was stored on disk.

    ``spacing``: (z, y, x) in mm, array axis order. ``origin``: (x, y, z) in mm.
    ``direction``: 9 floats, row-major 3x3 (SimpleITK order). ``shape``: (Z, Y, X).
    ``dim``: 2 for 2D images (Z == 1), 3 otherwise. ``source_format``: ``nifti``, ``nrrd``,
    ``mha``, ``dicom`` or ``image2d``; ``file_ending`` is the ending of the source file
    (``.nii.gz``, ``.png``...; ``""`` for a DICOM folder).
    """

    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    dim: int = 3
    source_format: str = "nifti"
    file_ending: str = ".nii.gz"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("spacing", "shape", "origin", "direction"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(
            spacing=tuple(float(v) for v in d["spacing"]),
            shape=tuple(int(v) for v in d["shape"]),
            origin=tuple(float(v) for v in d.get("origin", (0.0, 0.0, 0.0))),
            direction=tuple(float(v) for v in d.get("direction", (1, 0, 0, 0, 1, 0, 0, 0, 1))),
            dim=int(d.get("dim", 3)),
            source_format=d.get("source_format", "nifti"),
            file_ending=d.get("file_ending", ".nii.gz"),
            extra=dict(d.get("extra", {})),
        )

    def same_grid(self, other: "Geometry", tol: float = 1e-3) -> bool:
        """True when both describe the same voxel grid (shape, spacing, origin, direction)."""
        if tuple(self.shape) != tuple(other.shape):
            return False
        pairs = [(self.spacing, other.spacing, tol), (self.origin, other.origin, max(tol, 1e-2)),
                 (self.direction, other.direction, tol)]
        for a, b, t in pairs:
            if any(abs(float(x) - float(y)) > t * max(1.0, abs(float(x))) for x, y in zip(a, b)):
                return False
        return True
