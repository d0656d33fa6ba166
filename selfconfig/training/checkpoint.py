"""Kept for imports written before checkpoint I/O moved to :mod:`selfconfig.checkpoint` (which
training and inference both import)."""

from selfconfig.checkpoint import FORMAT, FORMAT_VERSION, load_checkpoint, save_checkpoint

__all__ = ["FORMAT", "FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]
