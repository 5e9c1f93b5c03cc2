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
