"""Splits and label fractions, patch sampling and background loading."""
