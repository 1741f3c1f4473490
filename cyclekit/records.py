"""Reading the JSON files of a run folder (and any JSON a user, a crash or another tool may have
damaged): every problem is one `CyclekitError` naming the file, never a traceback.

A file on disk may be missing, unreadable, not UTF-8, not JSON, nested 200,000 levels deep (which
makes Python's parser raise RecursionError), or valid JSON of the wrong shape (a list where an
object belongs, a string where a number does). The readers here turn each case into a sentence;
the shape helpers (`as_object`, `scores_by_direction`) let callers check what they then use.
JSON-lines logs (metrics.jsonl, evals.jsonl) are read line by line: a line cut short by a kill
ends the log there, and a line that is not an object is left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cyclekit.atomic import atomic_write
from cyclekit.errors import CyclekitError


def describe(value: Any) -> str:
    """What a JSON value is, for messages: "a list", "the string 'x'", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {"list": "a list", "dict": "an object"}.get(type(value).__name__, type(value).__name__)


def parse_json(data: bytes | str, where: str) -> Any:
    """Parse JSON text; CyclekitError naming ``where`` for text that is not UTF-8 or not JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise CyclekitError(f"{where} is not UTF-8 text (bad byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CyclekitError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise CyclekitError(f"{where} is nested too deeply to be a file cyclekit wrote") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise CyclekitError(f"{where} is not usable JSON ({str(exc).splitlines()[0]})") from None


def load_json(path: Path) -> Any:
    """The JSON value in ``path``; CyclekitError when it is missing, unreadable or not JSON."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CyclekitError(f"{path} not found") from None
    except OSError as exc:
        raise CyclekitError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_json(data, str(path))


def as_object(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a JSON object, else CyclekitError naming ``where``."""
    if not isinstance(value, dict):
        raise CyclekitError(f"{where}: expected a JSON object, found {describe(value)}")
    return value


def load_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (see `load_json`; anything but an object is an error too)."""
    return as_object(load_json(path), str(path))


def load_optional_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, None when there is no such file (damage is still an error)."""
    return load_json_object(path) if Path(path).is_file() else None


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, in order. A line that does not parse (cut short by a kill,
    or damaged) ends the log there: what follows it cannot be trusted. Lines that parse but are
    not objects are left out. A missing file is an empty log."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CyclekitError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = []
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            value = parse_json(line, str(path))
        except CyclekitError:
            break
        if isinstance(value, dict):
            rows.append(value)
    return rows


def number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def scores_by_direction(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """A ``directions`` record ({"AtoB": {"l1": 0.21, ...}, ...}) checked for its shape:
    CyclekitError naming ``where`` when it or a direction's scores are not objects."""
    if value is None:
        return {}
    table = as_object(value, where)
    for direction, scores in table.items():
        as_object(scores, f"{where}.{direction if direction.isprintable() else repr(direction)}")
    return table


# --------------------------------------------------------------------------------------------
# metrics.jsonl and evals.jsonl: one JSON object per logged step


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines log (see `cyclekit.records.read_json_lines`: a damaged line ends it)."""
    return read_json_lines(path)


def _step(row: dict[str, Any]) -> float:
    step = row.get("step", 0)
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else float("inf")


class MetricsLog:
    """Appends one line per logged step. On resume the file is first cut back to the checkpoint's
    step, so the log never holds steps the resumed run is about to repeat."""

    def __init__(self, path: Path, keep_until_step: int | None = None, create: bool = False) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            rows = [r for r in read_metrics(path) if _step(r) <= keep_until_step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
        elif keep_until_step is None and path.exists():
            path.unlink()
        if create:
            path.touch()  # a run folder has its log from the start, even before the first logged step

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
