"""selfconfig: self-configuring medical-image deep learning with surrogate-supervised pre-training.

Importing the package reads no environment variables and touches no files; the three data roots
are resolved when a command asks for them (see :mod:`selfconfig.paths`).
"""

from __future__ import annotations

__version__ = "0.1.0"
