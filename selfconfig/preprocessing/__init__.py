"""Crop, normalise, resample and store cases (training, test and unlabeled)."""
