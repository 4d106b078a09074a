"""Errors that speak to the user: what was wrong, what was expected, what to do."""

from __future__ import annotations


class MaeNbError(Exception):
    """Base class of every error mae-nb raises on purpose."""


class DatasetNotFoundError(MaeNbError, KeyError):
    """A dataset name that the registry does not know."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class DataUnavailableError(MaeNbError):
    """A known dataset that is neither cached, mirrored nor downloadable right now."""


class ChecksumError(MaeNbError):
    """A file whose sha256 does not match the registry."""


class RasterError(MaeNbError, ValueError):
    """A path that is not a raster, a band out of range, a window outside the image."""


class NotebookError(MaeNbError):
    """A notebook that is missing, has a bad parameter, or failed while running."""
