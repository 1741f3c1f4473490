"""Run a bundle's translating networks with PyTorch (including tiled translation of huge images)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError
from cyclekit.inference.backend import Backend
from cyclekit.inference.bundle import load_network, read_bundle
from cyclekit.inference.tiling import translate_tiled

# Test-time dropout (pix2pix) draws from this seed on every call, so translating the same input
# twice gives the same image.
DROPOUT_SEED = 0


class TorchBackend(Backend):
    """The networks of a bundle that translates, loaded on first use."""

    tiles = True
    tensors = True

    def __init__(self, folder: Path, device: str = "auto"):
        self.folder = Path(folder)
        self.bundle = read_bundle(self.folder)
        if not self.bundle.translates:
            raise CyclekitError(f"{self.folder} holds a model that samples, not translates (use `cyclekit sample`)")
        self.device = resolve_device(device)
        self._nets: dict[str, nn.Module] = {}
        self._dropout: bool | None = None

    @property
    def directions(self) -> list[str]:
        return list(self.bundle.translates)

    def prepare(self, direction: str, dropout: bool | None = None) -> None:
        """Load the network of ``direction`` (``dropout`` overrides the bundle's test-time dropout)."""
        if dropout is not None:
            self._dropout = dropout
        self.network(direction)

    def network(self, direction: str) -> nn.Module:
        """The network of ``direction``, loaded on first use."""
        if direction not in self._nets:
            key = self.bundle.network_for(direction)
            self._nets[direction] = load_network(self.folder, self.bundle, key, self.device, dropout=self._dropout)
        return self._nets[direction]

    def run(self, direction: str, x: np.ndarray) -> np.ndarray:
        """Translate a float32 NCHW numpy batch in [-1, 1] (sides multiples of size_multiple)."""
        return self.run_tensor(direction, torch.from_numpy(np.ascontiguousarray(x))).cpu().numpy()

    def run_tensor(self, direction: str, x: Tensor) -> Tensor:
        """Translate an NCHW tensor; the result stays on the backend's device."""
        net = self.network(direction)
        with torch.no_grad(), self._seeded(), _out_of_memory_as_error(tuple(x.shape)):
            return net(x.to(self.device, torch.float32))

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
        """Translate one (1, C, H, W) CPU tensor tile by tile; returns a CPU tensor (see `translate_tiled`)."""
        net = self.network(direction)
        with torch.no_grad(), self._seeded(), _out_of_memory_as_error(tuple(x.shape)):
            return translate_tiled(
                net, x, tile, overlap, multiple, stats_size=stats_size, shared_stats=shared_stats, device=self.device
            )

    def _seeded(self) -> contextlib.AbstractContextManager:
        if not (self.bundle.test_time.dropout if self._dropout is None else self._dropout):
            return contextlib.nullcontext()
        return _seeded_rng(self.device)


@contextlib.contextmanager
def _seeded_rng(device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(DROPOUT_SEED)
        yield


@contextlib.contextmanager
def _out_of_memory_as_error(shape: tuple[int, ...]) -> Iterator[None]:
    try:
        yield
    except (MemoryError, torch.OutOfMemoryError):
        raise CyclekitError(f"out of memory translating a {shape[-1]}x{shape[-2]} image; use --tile 512") from None
    except RuntimeError as exc:
        # The CPU allocator reports exhaustion as a plain RuntimeError.
        if "alloc" in str(exc) and "memory" in str(exc):
            raise CyclekitError(f"out of memory translating a {shape[-1]}x{shape[-2]} image; use --tile 512") from None
        raise
