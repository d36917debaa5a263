"""Errors that the command line reports as one line, without a traceback.

Every error a user can cause (bad input file, unknown id, impossible budget, bad config)
is raised as a subclass of :class:`CfpoisonError`; anything else is a bug. Each class has its
exit code (``exit_code``): 2 for a bad setting (:class:`ConfigError`: a flag, an option or a
config file's value; argparse's usage errors exit 2 too), 1 for everything else (data, files,
solvers).
"""

from __future__ import annotations


class CfpoisonError(Exception):
    """Base class of the errors a user can cause; ``str(err)`` is one line."""

    #: The command line's exit code for this class of error.
    exit_code: int = 1


class DataError(CfpoisonError):
    """A data file or data set is malformed, missing, or fails its checksum."""


class DownloadError(DataError):
    """A download failed (refused connection, truncated archive, checksum mismatch)."""


class ConfigError(CfpoisonError, ValueError):
    """A configuration value is out of range, of the wrong type, or does not apply."""

    exit_code = 2


class OutputError(CfpoisonError):
    """An output path cannot be written (no such folder, a folder, no permission)."""


class BudgetError(ConfigError):
    """An attack budget cannot be met (for example more items per user than items)."""


class ConvergenceError(CfpoisonError):
    """A solver did not reach its tolerance where the caller demanded it."""
