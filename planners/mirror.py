"""Which spatial axes may be mirrored: not one along which two classes are mirror images.

Mirroring a patch along an axis on which a left and a right class swap places teaches the network
that they are interchangeable, and it then cannot tell them apart (nnU-Net mirrors every axis by
default; documentation/plans.md). The fingerprint records, per case and class, the voxel count and
the centroid relative to the case's foreground bounding box (``class_locations``); a pair of
classes are mirror images along an axis when, in enough of the cases that hold both, they lie on
opposite sides of the foreground centre, each well away from it, with similar volumes, and each on
the same side in all those cases (two classes that swap sides from case to case are not confused
by mirroring: no side tells them apart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

AXIS_NAMES = {3: "zyx", 2: "yx"}


@dataclass(frozen=True)
class MirrorRule:
    """Thresholds of the rule (attributes of the planner, so a subclass can change them)."""

    min_share: float = 0.8  # of the cases that hold both classes
    min_offset: float = 0.1  # of the foreground extent, each class from the centre
    max_volume_ratio: float = 2.0


@dataclass
class MirrorPair:
    axis: int  # axis of the label maps (z, y, x)
    classes: tuple[int, int]
    share: float  # of the cases holding both in which they are mirror images
    cases: int  # cases holding both


@dataclass
class MirrorAnalysis:
    """Mirror pairs found per axis of the label maps (z, y, x); ``measured`` False when the
    fingerprint has no class locations (written before they were recorded, or classification)."""

    pairs: list[MirrorPair] = field(default_factory=list)
    measured: bool = True

    def blocked_axes(self) -> set[int]:
        return {p.axis for p in self.pairs}

    def for_configuration(self, dim: int) -> tuple[list[int], str]:
        """``mirror_axes`` and ``mirror_axes_reason`` of a ``dim``-D configuration. Its axis ``i``
        is axis ``i + 3 - dim`` of the label maps (a 2D configuration of 3D data sees (y, x))."""
        offset = 3 - dim
        names = AXIS_NAMES[dim]
        blocked = sorted(a - offset for a in self.blocked_axes() if a >= offset)
        axes = [a for a in range(dim) if a not in blocked]
        if not self.measured:
            return axes, "all axes: the fingerprint has no class locations"
        if not blocked:
            return axes, "all axes: no two classes are mirror images along an axis"
        parts = []
        for a in blocked:
            pairs = [p for p in self.pairs if p.axis == a + offset]
            classes = ", ".join(f"{i}/{j}" for i, j in (p.classes for p in pairs))
            low, high = (100 * f(p.share for p in pairs) for f in (min, max))
            share = f"{low:.0f} %" if round(low) == round(high) else f"{low:.0f}-{high:.0f} %"
            parts.append(f"axis {a} ({names[a]}): classes {classes} are mirror images "
                         f"(in {share} of the cases that hold both)")
        return axes, "; ".join(parts)


def find_mirror_pairs(fingerprint: dict, rule: MirrorRule = MirrorRule()) -> MirrorAnalysis:
    """The pairs of classes that are mirror images along an axis, from ``class_locations``."""
    locations = fingerprint.get("class_locations")
    if not locations:
        return MirrorAnalysis(measured=locations is not None)
    cases = [{int(k): v for k, v in case.items()} for case in locations.values()]
    values = sorted({v for case in cases for v in case})
    n_axes = max((len(c["centroid"]) for case in cases for c in case.values()), default=0)
    pairs = []
    for axis in range(n_axes):
        for i, a in enumerate(values):
            for b in values[i + 1:]:
                both = [c for c in cases if a in c and b in c]
                if not both:
                    continue
                sides = [_side(c[a], c[b], axis, rule) for c in both]
                share = max(sides.count(1), sides.count(-1)) / len(both)
                if share >= rule.min_share:
                    pairs.append(MirrorPair(axis, (a, b), share, len(both)))
    return MirrorAnalysis(pairs)


def _side(a: dict, b: dict, axis: int, rule: MirrorRule) -> int:
    """+1 / -1: class ``a`` lies before / after the foreground centre along ``axis`` and ``b`` on
    the other side, each at least ``min_offset`` from it, volumes within ``max_volume_ratio``;
    0: they are not mirror images in this case."""
    da = float(a["centroid"][axis]) - 0.5
    db = float(b["centroid"][axis]) - 0.5
    va, vb = int(a["voxels"]), int(b["voxels"])
    if da * db < 0 and min(abs(da), abs(db)) >= rule.min_offset - 1e-9 and \
            max(va, vb) <= rule.max_volume_ratio * max(min(va, vb), 1):
        return -1 if da < 0 else 1
    return 0
