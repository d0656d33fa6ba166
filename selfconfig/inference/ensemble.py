"""Ensembles across configurations (and trainers): the mean of the members' softmax (regions:
sigmoid) probabilities on the input's own grid, as nnU-Net ensembles 2D and 3D models. Each member is a
:class:`Predictor` (itself the mean over its folds), so every configuration weighs the same
however many folds it has."""

from __future__ import annotations

import numpy as np

from selfconfig.dataset.geometry import Geometry
from selfconfig.errors import CheckpointError
from selfconfig.inference.predictor import Predictor


class EnsemblePredictor:
    """Same interface as :class:`Predictor` for :func:`selfconfig.inference.api.predict_files`."""

    def __init__(self, members: list[Predictor]):
        if len(members) < 2:
            raise CheckpointError("an ensemble needs at least two members")
        first = members[0]
        for m in members[1:]:
            for what in ("task", "labels", "channel_names", "regions_class_order"):
                a, b = getattr(first.plans, what, None), getattr(m.plans, what, None)
                if a != b:
                    raise CheckpointError(f"cannot ensemble configuration {first.configuration} with "
                                          f"{m.configuration}: their {what} differ ({a} vs {b})")
        self.members = members
        self.plans = first.plans
        self.configuration = "+".join(m.configuration for m in members)
        self.precision = ", ".join(sorted({m.precision for m in members}))

    @property
    def task(self) -> str:
        return self.plans.task

    def predict_case(self, image: np.ndarray, geometry: Geometry, source: str = "input",
                     return_probabilities: bool = False) -> dict:
        total = None
        for m in self.members:
            res = m.predict_case(image, geometry, source, return_probabilities=True)
            probs = res["probabilities"].astype(np.float32)
            total = probs if total is None else total + probs
        probs = total / len(self.members)
        if self.task == "classification":
            return {"probabilities": probs, "prediction": int(np.argmax(probs))}
        out = {"seg": self.members[0].label_scheme.probabilities_to_label_map(probs)}
        if return_probabilities:
            out["probabilities"] = probs
        return out
