"""Errors that speak to the user: what was wrong, what was expected, what to do.

Every error mae-nb raises on purpose is a :class:`MaeNbError`; the ``mae-nb`` command prints
those as one line and lets anything else show its traceback, as the bug it is. Each class also
derives from the standard exception a Python user would expect (``ValueError`` for a bad value,
``FileExistsError`` for a file that would be overwritten, ...), so ``except ValueError`` keeps
working.
"""

from __future__ import annotations


class MaeNbError(Exception):
    """Base class of every error mae-nb raises on purpose."""


class InputError(MaeNbError, ValueError):
    """A value, shape, option or combination of them that mae-nb cannot use."""


class InputTypeError(MaeNbError, TypeError):
    """An argument of the wrong kind (a list where a tensor is expected, ...)."""


class ConfigError(InputError):
    """A configuration file or section with a missing, unknown or invalid entry."""


class CheckpointError(InputError):
    """A checkpoint file that is not what it was given as (another preset, another format)."""


class RasterError(InputError):
    """A path that is not a raster, a band out of range, a window outside the image."""


class OutputExistsError(MaeNbError, FileExistsError):
    """A file that would be overwritten without ``overwrite=True`` (``--overwrite``)."""


class MissingFileError(MaeNbError, FileNotFoundError):
    """A file the user named that is not there."""


class DatasetNotFoundError(MaeNbError, KeyError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class DataUnavailableError(MaeNbError):
    """A known dataset that is neither cached, mirrored nor downloadable right now."""


class ChecksumError(MaeNbError):
    """A file whose sha256 does not match the registry."""


class NotebookError(MaeNbError):
    """A notebook that is missing, has a bad parameter, or failed while running."""


class BookError(MaeNbError):
    """The course's website cannot be built: no executed run, a failed chapter, a broken page."""
