"""metrics.jsonl (one JSON object per logged step) and the loss-curve PNG."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cyclekit.atomic import atomic_write
from cyclekit.records import read_json_lines


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


def plot_losses(rows: Iterable[dict[str, Any]], path: Path) -> bool:
    """Loss curves (matplotlib: labelled axes, smoothing, log scale where it helps; see
    `cyclekit.report.plots.plot_losses`) into a PNG. Returns False (no file) when there is nothing to plot."""
    from cyclekit.report.plots import plot_losses as draw

    return bool(draw(rows, path))
