"""Errors a user can cause.

Every error that a user can fix (wrong input, missing dataset, bad flag) is a
:class:`SelfconfigError`. Its message names the file and says what to do; the CLI prints it as
one line and exits with code 2, never with a traceback.
"""

from __future__ import annotations


class SelfconfigError(Exception):
    """Base class of the errors a user can cause and fix."""

    exit_code = 2


class DatasetNotFoundError(SelfconfigError):
    """The dataset name or id does not resolve to a folder."""


class DatasetFormatError(SelfconfigError):
    """dataset.json or the folder layout is not what selfconfig expects."""


class VerificationError(SelfconfigError):
    """Verification found problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str], dataset: str = ""):
        self.problems = list(problems)
        head = f"{len(self.problems)} problem(s) found in dataset {dataset}".strip()
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))


class ImageReadError(SelfconfigError):
    """A file could not be read as an image."""


class PlansError(SelfconfigError):
    """Plans are missing, of another schema version, or do not fit the request."""


class ConfigurationError(SelfconfigError):
    """A flag or option is wrong or does not fit the dataset."""


class TrainerNotFoundError(SelfconfigError):
    """``-tr NAME`` resolves to no trainer."""


class CheckpointError(SelfconfigError):
    """A checkpoint is missing, unreadable or belongs to another run."""


class PreviousStageError(SelfconfigError):
    """A cascade configuration's previous stage (its model, or its predictions of the training
    cases) is missing; the message names the command that makes it."""


class WeightsNotFoundError(SelfconfigError):
    """Pretrained weights are not available offline."""


class WeightTransferError(SelfconfigError):
    """Pretrained weights do not fit the target network."""


class IncompatibleDatasetError(SelfconfigError):
    """A strategy or model does not fit this dataset (e.g. colourisation on gray images)."""


class EvaluationError(SelfconfigError):
    """Predictions do not match the reference (missing cases, other shapes, malformed tables)."""


class WriteError(SelfconfigError):
    """An output could not be written (disk full, no permission, read-only file system); the
    message names the file and, when known, the space it needed."""


class DiskSpaceError(WriteError):
    """Not enough free space for what a command is about to write; nothing was written."""


class InputSizeError(ImageReadError):
    """A file's header claims more data than the file holds or than memory can take."""
class ModelPackageError(SelfconfigError):
    """A model package (zip) is malformed, unsafe, or would overwrite another model."""
