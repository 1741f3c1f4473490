"""What a person watching a run sees of its progress: the schedule line at the start, and a
progress bar on a terminal or, in a log file, a plain line every 30 s."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import torch

from cyclekit.config import TrainConfig


def schedule_line(
    cfg: TrainConfig, spe: int, total: int, resumed: int | None, precision: str, device: torch.device, world: int
) -> str:
    """ "160 steps/epoch x 4 epochs (2 at the initial lr + 2 decaying to 0) = 640 steps; cpu, fp32, 1 process"."""
    n_epochs = cfg.epochs + cfg.decay_epochs
    line = (
        f"{spe:,} steps/epoch x {n_epochs} epochs ({cfg.epochs} at the initial lr + {cfg.decay_epochs} "
        f"decaying to 0) = {n_epochs * spe:,} steps"
    )
    if total < n_epochs * spe:
        line += f", stopping at step {total:,} (train.max_steps)"
    if resumed is not None:
        line += f"; resuming at step {resumed:,}"
    return line + f"; {device}, {precision}, {world} process{'es' if world > 1 else ''}"


def progress_bar(enabled: bool, total: int, initial: int) -> Any:
    """A progress bar on a terminal; elsewhere (a log file, CI) plain lines every 30 s, since a bar
    redrawn with carriage returns makes a log unreadable. None when not ``enabled``."""
    if not enabled:
        return None
    if not sys.stderr.isatty():
        return LogLines(total, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)


class LogLines:
    """The progress bar's interface as periodic log lines: "step 120/640 (19%), 0.21 s/step, about
    1 min 49 s left; loss_G 3.210, ..."; a last line when training ends."""

    def __init__(self, total: int, initial: int, every: float = 30.0) -> None:
        self.total, self.n, self.start_n = total, initial, initial
        self.every = every
        self.started = self.last = time.monotonic()
        self.postfix: Mapping[str, Any] = {}

    def set_postfix(self, values: Mapping[str, Any], refresh: bool = False) -> None:
        self.postfix = values

    def update(self, n: int) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def close(self) -> None:
        if self.n > self.start_n:
            self._line()

    def _line(self) -> None:
        self.last = now = time.monotonic()
        done = self.n - self.start_n
        per_step = (now - self.started) / done if done else 0.0
        left = per_step * (self.total - self.n)
        losses = ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(
            f"step {self.n:,}/{self.total:,} ({100 * self.n / max(self.total, 1):.0f}%), {per_step:.3g} s/step, "
            f"about {duration(left)} left" + (f"; {losses}" if losses else ""),
            file=sys.stderr,
            flush=True,
        )


def duration(seconds: float) -> str:
    """ "42 s", "1 min 49 s", "2 h 05 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
