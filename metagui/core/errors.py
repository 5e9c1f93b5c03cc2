"""Errors a user can cause. Their message is shown as-is in the GUI and the CLI."""


class MetaGUIError(Exception):
    """A problem the user can fix (bad file, impossible task, ...): one readable sentence."""


class ConfigError(MetaGUIError):
    """The run configuration is invalid."""


class DataError(MetaGUIError):
    """A dataset cannot be read or does not fit the task."""


class Cancelled(MetaGUIError):
    """Long work was cancelled by the user."""


class TrainingFailed(MetaGUIError):
    """Meta-training ended without completing (diverged, failed) where completion was needed."""


class StoreError(MetaGUIError):
    """The run store cannot be used: not MetaGUI's, damaged, read-only where writing is needed,
    written by a newer version. The file is left as it was."""


class CheckpointDamaged(DataError):
    """A checkpoint's files are truncated, garbled or from different saves."""

    def __init__(self, where: object, reason: str) -> None:
        super().__init__(f"checkpoint damaged: {where}: {reason}")
