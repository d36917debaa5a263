"""Errors that the command line reports as one line, without a traceback.

Every error a user can cause (bad input file, unknown id, impossible budget, bad config)
is raised as a subclass of :class:`CfpoisonError`; anything else is a bug.
"""

from __future__ import annotations


class CfpoisonError(Exception):
    """Base class of the errors a user can cause; ``str(err)`` is one line."""


class DataError(CfpoisonError):
    """A data file or data set is malformed, missing, or fails its checksum."""


class DownloadError(DataError):
    """A download failed (refused connection, truncated archive, checksum mismatch)."""


class ConfigError(CfpoisonError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class BudgetError(ConfigError):
    """An attack budget cannot be met (for example more items per user than items)."""


class ConvergenceError(CfpoisonError):
    """A solver did not reach its tolerance where the caller demanded it."""
