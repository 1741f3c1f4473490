"""A run's logs: metrics.jsonl (always) and TensorBoard (`train.loggers: [tensorboard]`), and the
losses as numbers for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cyclekit.errors import CyclekitError
from cyclekit.records import MetricsLog
from cyclekit.train import distributed


class RunLogs:
    """metrics.jsonl and, when ``loggers`` ask for it, a TensorBoard SummaryWriter (scalars and
    sample images, as PyTorch users expect to watch a run). ``resumed_step``: the checkpoint's step
    of a resumed run; the logs are cut back to it (metrics.jsonl's later rows, TensorBoard's later
    events), so they never hold steps the run is about to repeat. Otherwise they start empty."""

    def __init__(self, run_dir: Path, loggers: Sequence[str], resumed_step: int | None) -> None:
        self.metrics = MetricsLog(run_dir / "metrics.jsonl", keep_until_step=resumed_step, create=True)
        self.board: Any = None
        if "tensorboard" in loggers:
            purge = resumed_step + 1 if resumed_step is not None else None
            self.board = tensorboard_writer_class()(str(run_dir / "tensorboard"), purge_step=purge)

    def write(self, row: Mapping[str, Any]) -> None:
        """One logged step: ``step``, ``epoch``, ``lr``, ``sec`` and the losses."""
        self.metrics.write(dict(row))
        if self.board is not None:
            step = row["step"]
            for key, value in row.items():
                if key not in ("step", "epoch"):
                    self.board.add_scalar(key if key in ("lr", "sec") else f"loss/{key}", value, step)

    def images(self, paths: Iterable[Path], step: int) -> None:
        """Sample grids of ``step`` (TensorBoard only)."""
        if self.board is None:
            return
        import numpy as np
        from PIL import Image

        for path in paths:
            with Image.open(path) as img:
                self.board.add_image("samples", np.asarray(img.convert("RGB")), step, dataformats="HWC")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def check_loggers(loggers: Sequence[str]) -> None:
    """A logger whose package is missing, reported before anything is written."""
    if "tensorboard" in loggers:
        tensorboard_writer_class()


def tensorboard_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise CyclekitError(
            "train.loggers: tensorboard needs the tensorboard package: pip install tensorboard "
            "(or cyclekit[tensorboard])"
        ) from None
    return SummaryWriter


def numbers(losses: Mapping[str, Tensor | float], ctx: distributed.Distributed | None = None) -> dict[str, float]:
    """Loss tensors -> floats with one transfer (one host-device sync) for all of them; in a
    multi-process run, the mean over the ranks (one all-reduce for all of them)."""
    keys = list(losses)
    if not keys:
        return {}
    first = next((v for v in losses.values() if isinstance(v, Tensor)), None)
    device = first.device if first is not None else None
    values = [torch.as_tensor(losses[k], device=device).detach().float().reshape(()) for k in keys]
    stacked = torch.stack(values)
    if ctx is not None and ctx.enabled:
        stacked = ctx.mean(stacked)
    return dict(zip(keys, stacked.tolist(), strict=True))
