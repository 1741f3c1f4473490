"""The contract of a model runtime behind `Translator`: the directions it translates, `run` on a
float32 NCHW batch, and what else it can do, declared rather than probed (``tiles``: `run_tiled`
with whole-image statistics; ``tensors``: `run_tensor` on torch tensors without a copy through
numpy). PyTorch (`TorchBackend`) and onnxruntime (`OnnxBackend`) implement it; this module
imports no torch, so translating with an .onnx file never does."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from cyclekit.errors import CyclekitError

if TYPE_CHECKING:
    from torch import Tensor


class Backend(ABC):
    tiles: ClassVar[bool] = False
    tensors: ClassVar[bool] = False

    @property
    @abstractmethod
    def directions(self) -> list[str]:
        """The directions ("AtoB", "BtoA") this runtime translates."""

    def prepare(self, direction: str, dropout: bool | None = None) -> None:
        """Load what ``direction`` needs now, so a damaged file is one error before any image
        (``dropout``: override a bundle's test-time dropout). Nothing to do by default."""
        return None

    @abstractmethod
    def run(self, direction: str, x: np.ndarray) -> np.ndarray:
        """Translate a float32 NCHW batch in [-1, 1] whose sides are multiples of the size multiple."""

    def run_tensor(self, direction: str, x: Tensor) -> Tensor:
        raise CyclekitError(f"{type(self).__name__} does not run torch tensors")

    def run_tiled(
        self,
        direction: str,
        x: Tensor,
        tile: int,
        overlap: int,
        multiple: int,
        stats_size: int | None = None,
        shared_stats: bool = True,
    ) -> Tensor:
        """Translate one (1, C, H, W) image tile by tile (see `cyclekit.inference.tiling`)."""
        raise CyclekitError(
            "tiling needs the PyTorch backend (a run or bundle dir): an ONNX graph computes its "
            "instance-norm statistics per tile, which gives visible seams"
        )
