"""Translate images with a trained model: a bundle's networks (PyTorch) or an exported .onnx file.

Imports neither `cyclekit.train` nor `cyclekit.recipes`, and not torch at module level (only the
paths that need it do), so translating with an ONNX file works where torch is not installed.

    translator = Translator.load("runs/horse2zebra")        # run dir, bundle dir or .onnx file
    zebra = translator(Image.open("horse.jpg"), to="B")       # or to="zebra"
    big = translator(photo, to="B", tile=512, overlap=64)     # bounded memory for huge images
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cyclekit.choices import DIRECTION_TO
from cyclekit.data.images import LUMA, from_model_array, split_alpha, to_model_array, whiten_transparent
from cyclekit.errors import CyclekitError
from cyclekit.inference.backend import Backend
from cyclekit.inference.provenance import bundle_name, domain_label, onnx_run_name, stale_export_note

if TYPE_CHECKING:
    import torch


def _round_up(n: int, multiple: int, minimum: int) -> int:
    return max(minimum, -(-n // multiple) * multiple)


def reflect_pad(x: np.ndarray, multiple: int, minimum: int = 1) -> np.ndarray:
    """Reflect-pad the last two axes at the bottom/right up to multiples of ``multiple`` (and at
    least ``minimum``).

    Reflection (not zeros) so the border looks like image content to the convolutions; the
    padding is cropped off the result.
    """
    h, w = x.shape[-2:]
    ph, pw = _round_up(h, multiple, minimum) - h, _round_up(w, multiple, minimum) - w
    if ph == 0 and pw == 0:
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode="reflect")  # numpy reflects repeatedly when a pad exceeds the side


@dataclass
class _Prepared:
    """One input converted for the network, plus what is needed to give the output back in kind."""

    x: np.ndarray  # float32 CxHxW (model channels), unpadded
    restore: Callable[[np.ndarray], Any]  # float CxHxW output -> the caller's type


class Translator:
    """Translate images with a model that translates one or both directions between two domains
    (CycleGAN: both; Pix2Pix: the trained one).

    Build it with :meth:`load`. Calling it accepts a PIL image, a uint8 numpy array (HxW, HxWxC or
    a NxHxWxC batch) or a float tensor in [-1, 1] (CxHxW or NxCxHxW), and returns the same kind at
    the same size: sides are reflect-padded to a multiple of ``size_multiple`` (at least
    ``min_size``) and cropped back. Grey inputs come back grey, an alpha channel is carried over
    unchanged.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        name: str,
        domains: dict[str, str],
        channels: int,
        size_multiple: int,
        mean: float,
        std: float,
        source: Path,
        min_size: int = 1,
        train_scale: int | None = None,
    ):
        self.backend = backend
        # The side training images were resized to (load_size; else the crop size); None: unknown.
        self.train_scale = train_scale
        self.name = name
        self.domains = {"A": str(domains.get("A") or "A"), "B": str(domains.get("B") or "B")}
        self.channels = channels
        self.size_multiple = size_multiple
        self.min_size = max(min_size, size_multiple)
        self.mean, self.std = mean, std
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> Translator:
        """Load a run dir (with bundle/), a bundle dir, or an exported ``.onnx`` file (onnxruntime, no torch)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            from cyclekit.inference.onnx_backend import OnnxBackend

            backend = OnnxBackend(path, device)
            meta = backend.meta
            raw = dict(backend.session.get_modelmeta().custom_metadata_map)
            stale = stale_export_note(path, raw)  # an export an older step of its bundle left
            if stale is not None:
                logging.getLogger("cyclekit.inference").warning(stale)
            return cls(
                backend,
                name=onnx_run_name(meta["run"], path),
                domains=meta["domains"],
                channels=meta["channels"],
                size_multiple=meta["size_multiple"],
                min_size=meta["min_size"],
                mean=meta["mean"],
                std=meta["std"],
                source=path,
                train_scale=meta.get("load_size") or meta.get("train_size"),
            )
        from cyclekit.inference.bundle import bundle_dir
        from cyclekit.inference.torch_backend import TorchBackend

        folder = bundle_dir(path)
        backend = TorchBackend(folder, device)
        b = backend.bundle
        if b.channels is None:
            raise CyclekitError(f"{folder} does not hold an image model")
        return cls(
            backend,
            name=bundle_name(b, folder),
            domains=b.domains,
            channels=b.channels,
            size_multiple=b.size_multiple,
            min_size=b.min_size,
            mean=b.mean,
            std=b.std,
            source=folder,
            train_scale=b.load_size or b.train_size,
        )

    def prepare(self, to: str | None = None, dropout: bool | None = None) -> None:
        """Load the network for target ``to`` now (so a missing or damaged weight file is one
        error before any image); ``dropout`` overrides a bundle's test-time dropout."""
        direction = DIRECTION_TO[self.target(to)]
        self.backend.prepare(direction, dropout=dropout)

    # -- targets ----------------------------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        """The target domain letters this model can translate to ("B" for A->B)."""
        return [t for t, d in DIRECTION_TO.items() if d in self.backend.directions][::-1]

    def target(self, to: str | None) -> str:
        """``to`` ("A", "B", a domain name, or None for the default) -> "A" or "B"."""
        targets = self.targets
        if to is None:
            return "B" if "B" in targets else targets[0]
        for letter in targets:
            if to.casefold() in (letter.casefold(), self.domains[letter].casefold()):
                return letter
        valid = ", ".join(f"{t} ({self.domains[t]})" if self.domains[t] != t else t for t in targets)
        if len(targets) == 1 and any(to.casefold() in (t.casefold(), n.casefold()) for t, n in self.domains.items()):
            have = DIRECTION_TO[targets[0]]
            raise CyclekitError(
                f"{self.source} translates {have} only ({self.domains[have[0]]} -> {self.domains[targets[0]]}); "
                f"it cannot translate to {to}: use --to {targets[0]} or a model trained the other way"
            )
        raise CyclekitError(f"unknown target domain {to!r}; valid: {valid}")

    def target_label(self, to: str | None) -> str:
        """Domain name of the target (or its letter when unnamed), for file and folder names."""
        letter = self.target(to)
        return domain_label(self.domains[letter], letter)

    # -- translation ------------------------------------------------------------------------

    def __call__(
        self,
        image: Any,
        to: str | None = None,
        *,
        tile: int | None = None,
        overlap: int = 64,
        stats_size: int | None = None,
        scale: int | None = None,
    ) -> Any:
        """Translate one image (or a batch: NCHW tensor, NHWC array, list) to domain ``to``.

        ``tile``: translate in tiles of at most ``tile`` px overlapping by ``overlap`` px, for
        images too large for one pass (PyTorch backend only; see `cyclekit.torch_backend`).
        ``scale``: translate PIL images and arrays whose shorter side is larger than ``scale`` px
        at that size (e.g. `train_scale`), and resize the result back to the image's own size.
        """
        kw: dict[str, Any] = {"tile": tile, "overlap": overlap, "stats_size": stats_size, "scale": scale}
        if isinstance(image, (list, tuple)):
            return self.translate_many(image, to, **kw)
        if isinstance(image, np.ndarray) and image.ndim == 4:
            return np.stack(self.translate_many(list(image), to, **kw))
        if _is_tensor(image):
            return self._translate_tensor(image, to, tile, overlap, stats_size)
        return self.translate_many([image], to, **kw)[0]

    def translate_many(
        self,
        images: Sequence[Any],
        to: str | None = None,
        *,
        batch_size: int = 8,
        tile: int | None = None,
        overlap: int = 64,
        stats_size: int | None = None,
        scale: int | None = None,
    ) -> list[Any]:
        """Translate a list of PIL images / uint8 arrays; equal-size images run ``batch_size`` at a
        time. ``scale``: see `__call__`."""
        direction = DIRECTION_TO[self.target(to)]
        if batch_size < 1:
            raise CyclekitError(f"batch size must be >= 1, got {batch_size}")
        if scale is not None and scale < 1:
            raise CyclekitError(f"scale must be >= 1 px, got {scale}")
        if tile is not None:
            self.check_tiling(tile, overlap)
        prepared = [self._prepare(img, scale) for img in images]
        outputs: list[Any] = [None] * len(prepared)
        if tile is not None:
            for i, p in enumerate(prepared):
                outputs[i] = p.restore(self._run_tiled(direction, p.x, tile, overlap, stats_size))
            return outputs
        # Instance norm is per sample, so batching equal sizes changes nothing but speed.
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            by_size.setdefault(p.x.shape, []).append(i)
        for (_, h, w), idx in by_size.items():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                batch = reflect_pad(np.stack([prepared[i].x for i in chunk]), self.size_multiple, self.min_size)
                result = self.backend.run(direction, batch)
                for i, y in zip(chunk, result, strict=True):
                    outputs[i] = prepared[i].restore(y[:, :h, :w])
        return outputs

    def check_tiling(self, tile: int, overlap: int) -> None:
        """Raise CyclekitError unless this model can translate in tiles of ``tile`` px with ``overlap``."""
        m = self.size_multiple
        if not self.backend.tiles:
            raise CyclekitError(
                "tiling needs the PyTorch backend (a run or bundle dir): an ONNX graph computes its "
                "instance-norm statistics per tile, which gives visible seams"
            )
        if tile < 8 * m or tile % m:
            raise CyclekitError(f"tile size must be a multiple of {m} and at least {8 * m}, got {tile}")
        if overlap < 0 or overlap % m or overlap > tile // 2:
            raise CyclekitError(f"overlap must be a multiple of {m} between 0 and tile/2 ({tile // 2}), got {overlap}")

    def _run_tiled(self, direction: str, x: np.ndarray, tile: int, overlap: int, stats_size: int | None) -> np.ndarray:
        import torch

        h, w = x.shape[-2:]
        padded = torch.from_numpy(reflect_pad(x, self.size_multiple, self.min_size)[None])
        y = self.backend.run_tiled(direction, padded, tile, overlap, self.size_multiple, stats_size=stats_size)
        return y[0, :, :h, :w].numpy()

    def model_input(self, image: Any, scale: int | None = None) -> np.ndarray:
        """The float32 CxHxW array (model channels, network range, not yet padded) that translating
        ``image`` (a PIL image or uint8 array) with ``scale`` feeds the network; e.g. int8
        calibration (`cyclekit.export.quantize`) sees exactly what translation sees."""
        return self._prepare(image, scale).x

    # -- input kinds ------------------------------------------------------------------------

    def _prepare(self, image: Any, scale: int | None = None) -> _Prepared:
        if isinstance(image, Image.Image):
            return self._prepare_pil(image, scale)
        if isinstance(image, np.ndarray):
            return self._prepare_array(image, scale)
        raise CyclekitError(
            f"cannot translate a {type(image).__name__}; pass a PIL image, a uint8 numpy array or a torch tensor"
        )

    def _prepare_pil(self, img: Image.Image, scale: int | None = None) -> _Prepared:
        colour, alpha = split_alpha(img)
        gray = colour.mode == "L" or self.channels == 1
        u8 = np.asarray(colour)
        u8 = u8[:, :, None] if u8.ndim == 2 else u8
        if alpha is not None:
            u8 = whiten_transparent(u8, np.asarray(alpha))
        u8, back = _at_scale(u8, scale)

        def restore(y: np.ndarray) -> Image.Image:
            out = back(from_model_array(y, gray, self.mean, self.std))
            result = Image.fromarray(out[:, :, 0], "L") if gray else Image.fromarray(out, "RGB")
            if alpha is not None:
                result.putalpha(alpha)  # L -> LA, RGB -> RGBA; alpha untouched
            return result

        return _Prepared(to_model_array(u8, self.channels, self.mean, self.std), restore)

    def _prepare_array(self, arr: np.ndarray, scale: int | None = None) -> _Prepared:
        if arr.dtype != np.uint8:
            raise CyclekitError(f"numpy images must be uint8 (0..255), got {arr.dtype}; pass float data as a tensor")
        if arr.ndim == 2:
            has_axis, u8, alpha = False, arr[:, :, None], None
        elif arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
            has_axis = True
            colour_c = 1 if arr.shape[2] in (1, 2) else 3
            u8, alpha = arr[:, :, :colour_c], (arr[:, :, colour_c] if arr.shape[2] in (2, 4) else None)
        else:
            raise CyclekitError(f"expected an HxW or HxWxC (C = 1, 2, 3, 4) uint8 array, got shape {arr.shape}")
        if alpha is not None:
            u8 = whiten_transparent(u8, alpha)
        gray = u8.shape[2] == 1 or self.channels == 1
        u8, back = _at_scale(u8, scale)

        def restore(y: np.ndarray) -> np.ndarray:
            out = back(from_model_array(y, gray, self.mean, self.std))
            if alpha is not None:
                out = np.concatenate([out, alpha[:, :, None]], axis=2)
            return out if has_axis else out[:, :, 0]

        return _Prepared(to_model_array(u8, self.channels, self.mean, self.std), restore)

    def _translate_tensor(
        self, t: torch.Tensor, to: str | None, tile: int | None, overlap: int, stats_size: int | None
    ) -> torch.Tensor:
        """CxHxW / NxCxHxW float tensor in [-1, 1] -> the same shape, device and dtype."""
        import torch

        direction = DIRECTION_TO[self.target(to)]
        if t.dim() not in (3, 4) or t.shape[-3] not in (1, 3):
            raise CyclekitError(f"expected a CxHxW or NxCxHxW tensor with 1 or 3 channels, got {tuple(t.shape)}")
        batch = t.unsqueeze(0) if t.dim() == 3 else t
        gray_in = batch.shape[1] == 1
        x = batch.detach().float()
        if gray_in and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif not gray_in and self.channels == 1:
            x = torch.einsum("nchw,c->nhw", x, torch.from_numpy(LUMA).to(x.device)).unsqueeze(1)
        h, w = x.shape[-2:]
        if tile is not None:
            self.check_tiling(tile, overlap)
            tiled = [self._run_tiled(direction, xi.cpu().numpy(), tile, overlap, stats_size) for xi in x]
            y = torch.from_numpy(np.stack(tiled)).to(t.device)
        elif self.backend.tensors:
            y = self.backend.run_tensor(direction, _reflect_pad_tensor(x, self.size_multiple, self.min_size))[
                :, :, :h, :w
            ]
        else:
            padded = reflect_pad(x.cpu().numpy(), self.size_multiple, self.min_size)
            y = torch.from_numpy(self.backend.run(direction, padded))[:, :, :h, :w]
        if gray_in and y.shape[1] == 3:
            y = torch.einsum("nchw,c->nhw", y, torch.from_numpy(LUMA).to(y.device)).unsqueeze(1)
        y = y.to(t.device, t.dtype)
        return y[0] if t.dim() == 3 else y


def _at_scale(u8: np.ndarray, scale: int | None) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``u8`` (HxWxC) with its shorter side brought down to ``scale`` (bicubic), and the function
    that brings a result at that size back to HxW; the image itself when it is not larger."""
    h, w = u8.shape[:2]
    if scale is None or min(h, w) <= scale:
        return u8, lambda out: out
    f = scale / min(h, w)
    small = (max(1, round(w * f)), max(1, round(h * f)))

    def resized(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        out = np.asarray(img.resize(size, Image.Resampling.BICUBIC))
        return out[:, :, None] if out.ndim == 2 else out

    return resized(u8, small), lambda out: resized(out, (w, h))


def _is_tensor(obj: Any) -> bool:
    # Checked by name so a caller with numpy or PIL never pays for importing torch.
    return type(obj).__module__.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter")


def _reflect_pad_tensor(x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """Torch twin of `reflect_pad`; pads in steps because F.pad reflects at most side-1 px at once."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    target_h, target_w = _round_up(h, multiple, minimum), _round_up(w, multiple, minimum)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        ph = min(target_h - x.shape[-2], x.shape[-2] - 1)
        pw = min(target_w - x.shape[-1], x.shape[-1] - 1)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x
