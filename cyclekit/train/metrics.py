"""metrics.jsonl (one JSON object per logged step) and a dependency-free loss-curve PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from cyclekit.atomic import atomic_path, atomic_write

PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut short by a kill: everything after it is unreliable
    return rows


class MetricsLog:
    """Appends one line per logged step. On resume the file is first cut back to the checkpoint's
    step, so the log never holds steps the resumed run is about to repeat."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            rows = [r for r in read_metrics(path) if r.get("step", 0) <= keep_until_step]
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))
        elif keep_until_step is None and path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


def plot_losses(rows: Iterable[dict[str, Any]], path: Path, size: tuple[int, int] = (900, 420)) -> bool:
    """Draw each `loss*` series against step (light smoothing) into a PNG. Returns False if empty."""
    rows = list(rows)
    keys = sorted({k for r in rows for k in r if k.startswith("loss") and isinstance(r[k], (int, float))})
    if len(rows) < 2 or not keys:
        return False
    width, height = size
    left, right, top, bottom = 60, 170, 20, 40
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    steps = [r["step"] for r in rows]
    values = [r[k] for r in rows for k in keys if k in r and math.isfinite(r[k])]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    s0, s1 = min(steps), max(steps)
    s1 = s1 if s1 > s0 else s0 + 1

    def xy(step: float, value: float) -> tuple[float, float]:
        x = left + (step - s0) / (s1 - s0) * (width - left - right)
        y = top + (1 - (value - lo) / (hi - lo)) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = lo + frac * (hi - lo)
        _, y = xy(s0, value)
        draw.text((4, y - 6), f"{value:.3g}", fill=(0, 0, 0))
        draw.line([left, y, width - right, y], fill=(230, 230, 230))
    draw.text((left, height - bottom + 8), f"step {s0}", fill=(0, 0, 0))
    draw.text((width - right - 70, height - bottom + 8), f"step {s1}", fill=(0, 0, 0))
    alpha = 2.0 / (1 + max(1, len(rows) // 50))  # exponential smoothing over ~2% of the run
    for i, key in enumerate(keys):
        color = PALETTE[i % len(PALETTE)]
        points, ema = [], None
        for r in rows:
            if key in r and math.isfinite(r[key]):
                ema = r[key] if ema is None else alpha * r[key] + (1 - alpha) * ema
                points.append(xy(r["step"], ema))
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
        draw.text((width - right + 10, top + 16 * i), key, fill=color)
    with atomic_path(path, fsync=False) as tmp:
        img.save(tmp, format="PNG")
    return True
