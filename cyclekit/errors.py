"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterable


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


def did_you_mean(word: object, options: Iterable[str]) -> str:
    """ " (did you mean epochs?)" when ``word`` is close to one of ``options``, else ""."""
    import difflib

    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""
