"""Matplotlib plots of a run: loss curves from metrics.jsonl and evaluation scores from evals.jsonl.

matplotlib is optional: it is imported only when a plot is drawn, through its object-oriented API
on an Agg canvas (no pyplot, no global backend switch, no display needed). Every PNG is written
atomically.

Loss curves
    Each series (every logged number but ``step``, ``epoch``, ``lr`` and ``sec``: the losses, D's
    scores, and a recipe's measures such as WGAN's ``wasserstein`` or BEGAN's ``M`` and ``k``) is
    drawn twice: the raw logged values as a faint line, and an exponential moving average (EMA) on
    top. The EMA spans
    ``max(5, n // 50)`` of the series' ``n`` logged points (about 2% of a long run, at least 5;
    ``alpha = 2 / (span + 1)``, the pandas ``ewm(span=...)`` convention) and starts at the first
    value; a series of fewer than 20 points is not smoothed. Non-finite values are skipped.
    Generator series (``loss*``), discriminator series (``loss_D*`` and ``D_*``) and the other
    measures get a panel each when they exist. A panel's y axis is logarithmic when all its values
    are positive and the largest is more than ``10 ** 1.5`` (~32x) the smallest: otherwise the
    late, small losses would be a flat line at the bottom.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cyclekit.atomic import atomic_path
from cyclekit.errors import CyclekitError

LOG_DECADES = 1.5  # log y-scale when positive values span more than this many decades
SMOOTH_FRACTION = 50  # EMA span = logged points // SMOOTH_FRACTION (about 2% of the run) ...
SMOOTH_MIN_SPAN = 5  # ... but at least this many points ...
SMOOTH_MIN_POINTS = 20  # ... and no smoothing for series shorter than this
DPI = 100


class MatplotlibMissing(CyclekitError):
    """matplotlib is not installed."""


@dataclass
class Panel:
    title: str
    keys: list[str]
    log_y: bool


@dataclass
class PlotInfo:
    """What a plot function drew (it is truthy, so ``if plot_losses(...)`` reads naturally)."""

    path: Path
    panels: list[Panel] = field(default_factory=list)


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing("plots need matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, fsync=False) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


NOT_SERIES = ("step", "epoch", "lr", "sec")  # in every row, but not training curves


def is_series(key: str) -> bool:
    return key not in NOT_SERIES


def is_discriminator(key: str) -> bool:
    return key.startswith(("loss_D", "D_"))


def wants_log_scale(values: Iterable[float]) -> bool:
    """True when every value is positive and they span more than ``LOG_DECADES`` decades."""
    values = [v for v in values if math.isfinite(v)]
    if not values or min(values) <= 0:
        return False
    return math.log10(max(values) / min(values)) > LOG_DECADES


def smoothing_span(n: int) -> int:
    """The EMA span, in logged points, for a series of ``n`` points (1: no smoothing)."""
    return 1 if n < SMOOTH_MIN_POINTS else max(SMOOTH_MIN_SPAN, n // SMOOTH_FRACTION)


def ema(values: Sequence[float], span: int) -> list[float]:
    """Exponential moving average with ``alpha = 2 / (span + 1)``, starting at the first value."""
    alpha = 2.0 / (span + 1)
    out, current = [], None
    for v in values:
        current = v if current is None else alpha * v + (1 - alpha) * current
        out.append(current)
    return out


def plot_losses(rows: Iterable[dict[str, Any]], path: str | Path) -> PlotInfo | Literal[False]:
    """Loss curves against step into the PNG ``path`` (see the module docstring for smoothing and
    log scale). Returns False, writing nothing, when there is nothing to plot."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        step = _number(row.get("step"))
        if step is None:
            continue
        for key, raw in row.items():
            value = _number(raw)
            if is_series(key) and value is not None:
                xs, ys = series.setdefault(key, ([], []))
                xs.append(step)
                ys.append(value)
    if not any(len(xs) >= 2 for xs, _ in series.values()):
        return False
    generator = sorted(k for k in series if k.startswith("loss") and not is_discriminator(k))
    discriminator = sorted(k for k in series if is_discriminator(k))
    measures = sorted(k for k in series if not k.startswith("loss") and not is_discriminator(k))
    titled = (("generator", generator), ("discriminator", discriminator), ("other logged", measures))
    groups = [(t, ks) for t, ks in titled if ks]
    fig = _figure(10, 3.4 * len(groups) + 0.4)
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    panels = []
    for ax, (title, keys) in zip(axes, groups, strict=True):
        log_y = wants_log_scale(v for k in keys for v in series[k][1])
        for i, key in enumerate(keys):
            xs, ys = series[key]
            color = f"C{i % 10}"
            span = smoothing_span(len(ys))
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(xs, ema(ys, span), color=color, linewidth=1.8, label=key)
        if log_y:
            ax.set_yscale("log")
        kind = "losses and scores" if any(k.startswith("D_") for k in keys) else "losses"
        kind = "values" if title == "other logged" else kind
        ax.set_title(f"{title} {kind}" + (" (log scale)" if log_y else ""), fontsize=11)
        ax.set_ylabel("value" + (" (log)" if log_y else ""))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
        panels.append(Panel(title, keys, log_y))
    axes[-1].set_xlabel("training step")
    span = smoothing_span(max(len(xs) for xs, _ in series.values()))
    smoothing = f"faint: raw; bold: EMA over {span} logged points" if span > 1 else "too few points to smooth"
    fig.suptitle(f"Training losses ({smoothing})", fontsize=12)
    path = Path(path)
    _save(fig, path)
    return PlotInfo(path, panels)


def plot_evals(eval_rows: Iterable[dict[str, Any]], path: str | Path) -> PlotInfo | Literal[False]:
    """Each evaluation metric across epochs, one panel per metric and one line per direction
    (``evals.jsonl`` rows). Null and non-finite values leave gaps. Returns False, writing nothing,
    when no metric has a number."""
    data: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for row in eval_rows:
        epoch = _number(row.get("epoch"))
        directions = row.get("directions")
        if epoch is None or not isinstance(directions, dict):
            continue
        for direction, scores in directions.items():
            if not isinstance(scores, dict):
                continue
            for metric, raw in scores.items():
                value = _number(raw)
                if value is not None:
                    xs, ys = data.setdefault(str(metric), {}).setdefault(str(direction), ([], []))
                    xs.append(epoch)
                    ys.append(value)
    if not data:
        return False
    metrics = sorted(data)
    cols = min(3, len(metrics))
    nrows = math.ceil(len(metrics) / cols)
    fig = _figure(3.6 * cols + 0.4, 2.8 * nrows + 0.5)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    panels = []
    for ax, metric in zip(axes, metrics, strict=False):
        for i, direction in enumerate(sorted(data[metric])):
            xs, ys = data[metric][direction]
            ax.plot(xs, ys, marker="o", markersize=4, color=f"C{i % 10}", label=direction)
        ax.set_title(metric, fontsize=11)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, loc="best")
        panels.append(Panel(metric, sorted(data[metric]), False))
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle("Evaluation metrics per epoch", fontsize=12)
    path = Path(path)
    _save(fig, path)
    return PlotInfo(path, panels)
