"""Prediction: sliding window with Gaussian weighting, mirroring, fold ensembles, export in the
input's own geometry and format."""
