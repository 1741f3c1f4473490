"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""

from __future__ import annotations


class CyclekitError(Exception):
    """A problem with the user's input (file, key, value, name) that they can fix.

    The message must name the offending thing. Library code raises it instead of printing or
    "fixing" bad input; only ``cyclekit.cli`` catches it.
    """


class ConfigError(CyclekitError):
    """A config file or override is wrong: the message names the dotted key."""


class DataError(CyclekitError):
    """A dataset folder or image file is missing, empty or unreadable."""


class TrainingInterrupted(CyclekitError):
    """Ctrl-C during training: raised after the checkpoint of the finished step is safely written."""


class ReportedElsewhere(CyclekitError):
    """Multi-process training: an error rank 0 reports; the other ranks exit with it silently,
    so the user reads one line, not one per process."""
