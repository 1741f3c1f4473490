"""Using trained generators: load a bundle, sample a GAN, translate images with a CycleGAN.

Imports neither `cyclekit.train` nor `cyclekit.recipes`: translating needs only the bundle. This
module does not import torch either (only the functions that need it do), so translating with
an exported ONNX file works where torch is not installed.

    translator = Translator.load("runs/horse2zebra")        # run dir, bundle dir or .onnx file
    zebra = translator(Image.open("horse.jpg"), to="B")       # or to="zebra"
    big = translator(photo, to="B", tile=512, overlap=64)     # bounded memory for huge images
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from cyclekit.errors import CyclekitError

if TYPE_CHECKING:
    import torch

# Target domain -> network direction.
DIRECTION_TO = {"B": "AtoB", "A": "BtoA"}
# PIL modes that hold grey levels (with or without alpha): their translation comes back grey.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# ITU-R 601-2 luma, the weights PIL's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def bundle_dir(path: Path) -> Path:
    """A run dir (holding bundle/) or a bundle dir (holding config.json) -> the bundle dir."""
    path = Path(path)
    if not path.exists():
        raise CyclekitError(f"model path not found: {path}")
    if (path / "bundle" / "config.json").is_file():
        return path / "bundle"
    if (path / "config.json").is_file():
        return path
    raise CyclekitError(f"{path} is neither a run dir with bundle/ nor a bundle dir with config.json")


def sample_gan(path: Path, n: int, seed: int = 0, device: str = "auto") -> torch.Tensor:
    """`n` samples from a GAN bundle's generator with noise from `seed` (CPU tensor)."""
    import torch

    from cyclekit.bundle import load_network, read_bundle_config
    from cyclekit.device import resolve_device

    folder = bundle_dir(path)
    config = read_bundle_config(folder)
    if config.get("kind") != "gan":
        raise CyclekitError(f"{folder} holds a {config.get('kind')} model; `sample` needs a GAN (use translate)")
    dev = resolve_device(device)
    generator = load_network(folder, config, "G", dev)
    z = torch.randn(n, config["latent_dim"], generator=torch.Generator().manual_seed(seed))
    out = []
    with torch.no_grad():
        for chunk in z.split(256):
            out.append(generator(chunk.to(dev)).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# Array helpers (numpy only)


def _round_up(n: int, multiple: int) -> int:
    return max(2 * multiple, -(-n // multiple) * multiple)  # 2x: the smallest side the ResNet accepts


def reflect_pad(x: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pad the last two axes at the bottom/right up to multiples of ``multiple``.

    Reflection (not zeros) so the border looks like image content to the convolutions; the
    padding is cropped off the result.
    """
    h, w = x.shape[-2:]
    ph, pw = _round_up(h, multiple) - h, _round_up(w, multiple) - w
    if ph == 0 and pw == 0:
        return x
    pad = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, pad, mode="reflect")  # numpy reflects repeatedly when a pad exceeds the side


def _to_gray(x: np.ndarray, axis: int) -> np.ndarray:
    """RGB -> luma along ``axis`` (kept, size 1), in whatever linear units ``x`` has."""
    gray = np.tensordot(np.moveaxis(x, axis, -1), LUMA, axes=([-1], [0]))
    return np.moveaxis(gray[..., None], -1, axis)


def _uint8_to_model(u8: np.ndarray, channels: int, mean: float, std: float) -> np.ndarray:
    """uint8 HxWxC (C = 1 or 3) -> float32 CxHxW in the network's range, with ``channels`` channels.

    Transposes while still uint8 and scales in place: for a 6000x4000 photo every float32 copy
    is 288 MB, so temporaries matter.
    """
    x = np.ascontiguousarray(u8.transpose(2, 0, 1)).astype(np.float32)
    x *= 1.0 / (255.0 * std)
    x -= mean / std
    if x.shape[0] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=0)
    elif x.shape[0] == 3 and channels == 1:
        x = _to_gray(x, 0)
    return x


def _model_to_uint8(y: np.ndarray, gray: bool, mean: float, std: float) -> np.ndarray:
    """float CxHxW network output -> uint8 HxWxC (C = 1 if ``gray`` else 3)."""
    if gray and y.shape[0] == 3:
        y = _to_gray(y, 0)  # before quantising, so the grey is rounded once
    out = np.multiply(y, 255.0 * std, dtype=np.float32)
    out += 255.0 * mean
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return np.ascontiguousarray(out.astype(np.uint8).transpose(1, 2, 0))


def _whiten_transparent(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fully transparent pixels -> white: their stored colour is arbitrary and would bleed into
    neighbours through the convolutions (as `cyclekit.data.images.load_image_with_alpha`)."""
    if (alpha == 0).any():
        colour = colour.copy()
        colour[alpha == 0] = 255
    return colour


@dataclass
class _Prepared:
    """One input converted for the network, plus what is needed to give the output back in kind."""

    x: np.ndarray  # float32 CxHxW (model channels), unpadded
    restore: Callable[[np.ndarray], Any]  # float CxHxW output -> the caller's type


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """A PIL image -> (colour "RGB" or "L", alpha "L" or None); grey modes stay grey."""
    mode = img.mode
    if mode in ("RGB", "L"):
        return img, None
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    elif mode in ("RGBa", "La"):
        img = img.convert("RGBA" if mode == "RGBa" else "LA")
    elif "transparency" in img.info and mode in ("L", "RGB"):
        img = img.convert("LA" if mode == "L" else "RGBA")
    if img.mode in ("RGBA", "LA"):
        *colour, alpha = img.split()
        return (Image.merge("RGB", colour) if img.mode == "RGBA" else colour[0]), alpha
    if img.mode in GRAY_MODES:
        return img.convert("L"), None
    return img.convert("RGB"), None


# --------------------------------------------------------------------------------------------
# Translator


class Translator:
    """Translate images between the two domains of a trained CycleGAN.

    Build it with :meth:`load`. Calling it accepts a PIL image, a uint8 numpy array (HxW, HxWxC or
    a NxHxWxC batch) or a float tensor in [-1, 1] (CxHxW or NxCxHxW), and returns the same kind at
    the same size: sides are reflect-padded to a multiple of ``size_multiple`` and cropped back.
    Grey inputs come back grey, an alpha channel is carried over unchanged.
    """

    def __init__(
        self,
        backend: Any,
        *,
        name: str,
        domains: dict[str, str],
        channels: int,
        size_multiple: int,
        mean: float,
        std: float,
        source: Path,
    ):
        self.backend = backend
        self.name = name
        self.domains = {"A": str(domains.get("A") or "A"), "B": str(domains.get("B") or "B")}
        self.channels = channels
        self.size_multiple = size_multiple
        self.mean, self.std = mean, std
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> Translator:
        """Load a run dir (with bundle/), a bundle dir, or an exported ``.onnx`` file (onnxruntime, no torch)."""
        path = Path(path)
        if path.suffix.lower() == ".onnx":
            from cyclekit.onnx_backend import OnnxBackend

            backend = OnnxBackend(path, device)
            meta = backend.meta
            return cls(
                backend,
                name=meta["run"] or path.stem,
                domains=meta["domains"],
                channels=meta["channels"],
                size_multiple=meta["size_multiple"],
                mean=meta["mean"],
                std=meta["std"],
                source=path,
            )
        folder = bundle_dir(path)
        from cyclekit.torch_backend import TorchBackend

        backend = TorchBackend(folder, device)
        cfg = backend.config
        norm = cfg.get("normalization", {})
        name = cfg.get("run") or (folder.parent.name if folder.name == "bundle" else folder.name)
        return cls(
            backend,
            name=str(name),
            domains=cfg.get("domains", {}),
            channels=int(cfg.get("channels", 3)),
            size_multiple=int(cfg.get("size_multiple", 4)),
            mean=float(norm.get("mean", 0.5)),
            std=float(norm.get("std", 0.5)),
            source=folder,
        )

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
        only = f"{self.source} translates to {self.domains[targets[0]]} only; " if len(targets) == 1 else ""
        raise CyclekitError(f"unknown target domain {to!r}: {only}valid: {valid}")

    def target_label(self, to: str | None) -> str:
        """Domain name of the target (or its letter when unnamed), for file and folder names."""
        letter = self.target(to)
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.domains[letter]) or letter

    # -- translation ------------------------------------------------------------------------

    def __call__(
        self,
        image: Any,
        to: str | None = None,
        *,
        tile: int | None = None,
        overlap: int = 64,
        stats_size: int | None = None,
    ) -> Any:
        """Translate one image (or a batch: NCHW tensor, NHWC array, list) to domain ``to``.

        ``tile``: translate in tiles of at most ``tile`` px overlapping by ``overlap`` px, for
        images too large for one pass (PyTorch backend only; see `cyclekit.torch_backend`).
        """
        if isinstance(image, (list, tuple)):
            return self.translate_many(image, to, tile=tile, overlap=overlap, stats_size=stats_size)
        if isinstance(image, np.ndarray) and image.ndim == 4:
            return np.stack(self.translate_many(list(image), to, tile=tile, overlap=overlap, stats_size=stats_size))
        if _is_tensor(image):
            return self._translate_tensor(image, to, tile, overlap, stats_size)
        return self.translate_many([image], to, tile=tile, overlap=overlap, stats_size=stats_size)[0]

    def translate_many(
        self,
        images: Sequence[Any],
        to: str | None = None,
        *,
        batch_size: int = 8,
        tile: int | None = None,
        overlap: int = 64,
        stats_size: int | None = None,
    ) -> list[Any]:
        """Translate a list of PIL images / uint8 arrays; equal-size images run ``batch_size`` at a time."""
        direction = DIRECTION_TO[self.target(to)]
        if batch_size < 1:
            raise CyclekitError(f"batch size must be >= 1, got {batch_size}")
        if tile is not None:
            self.check_tiling(tile, overlap)
        prepared = [self._prepare(img) for img in images]
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
                batch = reflect_pad(np.stack([prepared[i].x for i in chunk]), self.size_multiple)
                result = self.backend.run(direction, batch)
                for i, y in zip(chunk, result, strict=True):
                    outputs[i] = prepared[i].restore(y[:, :h, :w])
        return outputs

    def check_tiling(self, tile: int, overlap: int) -> None:
        """Raise CyclekitError unless this model can translate in tiles of ``tile`` px with ``overlap``."""
        m = self.size_multiple
        if not hasattr(self.backend, "run_tiled"):
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
        padded = torch.from_numpy(reflect_pad(x, self.size_multiple)[None])
        y = self.backend.run_tiled(direction, padded, tile, overlap, self.size_multiple, stats_size=stats_size)
        return y[0, :, :h, :w].numpy()

    # -- input kinds ------------------------------------------------------------------------

    def _prepare(self, image: Any) -> _Prepared:
        if isinstance(image, Image.Image):
            return self._prepare_pil(image)
        if isinstance(image, np.ndarray):
            return self._prepare_array(image)
        raise CyclekitError(
            f"cannot translate a {type(image).__name__}; pass a PIL image, a uint8 numpy array or a torch tensor"
        )

    def _prepare_pil(self, img: Image.Image) -> _Prepared:
        colour, alpha = split_alpha(img)
        gray = colour.mode == "L" or self.channels == 1
        u8 = np.asarray(colour)
        u8 = u8[:, :, None] if u8.ndim == 2 else u8
        if alpha is not None:
            u8 = _whiten_transparent(u8, np.asarray(alpha))

        def restore(y: np.ndarray) -> Image.Image:
            out = _model_to_uint8(y, gray, self.mean, self.std)
            result = Image.fromarray(out[:, :, 0], "L") if gray else Image.fromarray(out, "RGB")
            if alpha is not None:
                result.putalpha(alpha)  # L -> LA, RGB -> RGBA; alpha untouched
            return result

        return _Prepared(_uint8_to_model(u8, self.channels, self.mean, self.std), restore)

    def _prepare_array(self, arr: np.ndarray) -> _Prepared:
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
            u8 = _whiten_transparent(u8, alpha)
        gray = u8.shape[2] == 1 or self.channels == 1

        def restore(y: np.ndarray) -> np.ndarray:
            out = _model_to_uint8(y, gray, self.mean, self.std)
            if alpha is not None:
                out = np.concatenate([out, alpha[:, :, None]], axis=2)
            return out if has_axis else out[:, :, 0]

        return _Prepared(_uint8_to_model(u8, self.channels, self.mean, self.std), restore)

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
        elif hasattr(self.backend, "run_tensor"):
            y = self.backend.run_tensor(direction, _reflect_pad_tensor(x, self.size_multiple))[:, :, :h, :w]
        else:
            padded = reflect_pad(x.cpu().numpy(), self.size_multiple)
            y = torch.from_numpy(self.backend.run(direction, padded))[:, :, :h, :w]
        if gray_in and y.shape[1] == 3:
            y = torch.einsum("nchw,c->nhw", y, torch.from_numpy(LUMA).to(y.device)).unsqueeze(1)
        y = y.to(t.device, t.dtype)
        return y[0] if t.dim() == 3 else y


def _is_tensor(obj: Any) -> bool:
    # Checked by name so a caller with numpy or PIL never pays for importing torch.
    return type(obj).__module__.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter")


def _reflect_pad_tensor(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Torch twin of `reflect_pad`; pads in steps because F.pad reflects at most side-1 px at once."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    target_h, target_w = _round_up(h, multiple), _round_up(w, multiple)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        ph = min(target_h - x.shape[-2], x.shape[-2] - 1)
        pw = min(target_w - x.shape[-1], x.shape[-1] - 1)
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


# --------------------------------------------------------------------------------------------
# Files: what the `translate` command does, minus printing


def find_default_model(runs: Path = Path("runs")) -> Path:
    """The run to use when no model is given: the only run in ``runs`` that has a bundle."""
    candidates = []
    if runs.is_dir():
        candidates = [d for d in runs.iterdir() if (d / "bundle" / "config.json").is_file()]
    candidates.sort(key=lambda d: (d / "bundle" / "config.json").stat().st_mtime, reverse=True)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CyclekitError(
            f"no --model given and no run with a bundle in {runs}/; pass --model RUN_DIR, BUNDLE_DIR or FILE.onnx"
        )
    names = ", ".join(str(d) for d in candidates)
    raise CyclekitError(
        f"no --model given and {len(candidates)} runs have a bundle (newest first): {names}; pick one with --model"
    )


@dataclass
class InputSet:
    """Files to translate, each with the output path relative to the output folder."""

    jobs: list[tuple[Path, Path]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # inputs that named nothing usable


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> InputSet:
    """Expand files, folders and glob patterns into (source, relative output PNG) pairs.

    Folder inputs keep their sub-folder structure; files and glob matches are named after their
    stem. Globs are expanded here too, for shells (and Windows) that pass them through.
    Two inputs that would be written to the same output are an error.
    """
    from cyclekit.data.images import is_image_file, list_images

    result = InputSet()
    seen: dict[Path, Path] = {}  # resolved source -> itself, to skip repeats
    targets: dict[Path, Path] = {}  # relative output -> source

    def add(src: Path, rel: Path) -> None:
        key = src.resolve()
        if key in seen:
            return
        seen[key] = src
        if rel in targets:
            raise CyclekitError(f"{targets[rel]} and {src} would both be written to {rel}; translate them separately")
        targets[rel] = src
        result.jobs.append((src, rel))

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            images = list_images(path, recursive=recursive)
            if not images:
                result.problems.append(f"{path}: no images found" + ("" if recursive else " (use --recursive?)"))
            for img in images:
                add(img, img.relative_to(path).with_suffix(".png"))
        elif path.exists():
            add(path, Path(path.stem + ".png"))
        elif any(c in raw for c in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(raw, recursive=recursive))]
            files = [m for m in matches if m.is_file() and is_image_file(m)]
            if not files:
                result.problems.append(f"{raw}: no image files match")
            for m in files:
                add(m, Path(m.stem + ".png"))
        else:
            result.problems.append(f"{raw}: no such file or folder")
    return result


def check_output_dir(out_dir: Path, jobs: Sequence[tuple[Path, Path]]) -> None:
    """Create ``out_dir`` and make sure it is writable and that no output would overwrite an input."""
    sources = {src.resolve() for src, _ in jobs}
    for src, rel in jobs:
        if (out_dir / rel).resolve() in sources:
            raise CyclekitError(f"output {out_dir / rel} would overwrite the input {src}; choose another -o folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".cyclekit-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise CyclekitError(f"cannot write to output folder {out_dir}: {exc.strerror or exc}") from None


def load_for_translation(path: Path) -> Image.Image:
    """Decode an image file as "RGB"/"L" (grey files stay grey) with alpha attached, EXIF applied."""
    from cyclekit.data.images import load_image_with_alpha

    # The header's mode tells grey from colour without decoding; load_image_with_alpha always
    # converts to the channel count it is given.
    try:
        with Image.open(path) as probe:
            gray = probe.mode in GRAY_MODES
    except Exception:  # undecodable: let load_image_with_alpha raise its DataError naming the file
        gray = False
    colour, alpha = load_image_with_alpha(path, channels=1 if gray else 3)
    if alpha is not None:
        colour = colour.copy()
        colour.putalpha(alpha)
    return colour


def side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    """``left | right`` in ``right``'s mode."""
    canvas = Image.new(right.mode, (left.width + right.width, max(left.height, right.height)))
    canvas.paste(left.convert(right.mode), (0, 0))
    canvas.paste(right, (left.width, 0))
    return canvas


@dataclass
class TranslateSummary:
    """What `translate_files` did."""

    written: list[Path]
    failed: list[tuple[Path, str]]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.written) / self.seconds if self.seconds > 0 else 0.0


def _save_png(img: Image.Image, path: Path) -> None:
    """Write via a temporary name, so an interrupted run never leaves a truncated PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        img.save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def translate_files(
    translator: Translator,
    jobs: Sequence[tuple[Path, Path]],
    out_dir: Path,
    to: str | None = None,
    *,
    batch_size: int = 4,
    side_by_side_output: bool = False,
    tile: int | None = None,
    overlap: int = 64,
    on_error: Callable[[Path, str], None] | None = None,
) -> TranslateSummary:
    """Translate every (source, relative output) job into ``out_dir`` as PNG.

    A file that cannot be read, translated or written is reported through ``on_error`` and
    skipped; the others are still written.
    """
    from cyclekit.errors import DataError

    start = time.perf_counter()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []

    def fail(src: Path, message: str) -> None:
        failed.append((src, message))
        if on_error is not None:
            on_error(src, message)

    for first in range(0, len(jobs), batch_size):
        loaded: list[tuple[Path, Path, Image.Image]] = []
        for src, rel in jobs[first : first + batch_size]:
            try:
                loaded.append((src, rel, load_for_translation(src)))
            except DataError as exc:
                fail(src, str(exc))
        if not loaded:
            continue
        try:
            outputs = translator.translate_many(
                [img for _, _, img in loaded], to, batch_size=batch_size, tile=tile, overlap=overlap
            )
        except CyclekitError as exc:
            if len(loaded) == 1 or tile is not None:
                for src, _, _ in loaded:
                    fail(src, f"{src}: {exc}")
                continue
            # Retry one by one so a single troublesome image does not sink its batch-mates.
            outputs = []
            for src, _, img in loaded:
                try:
                    outputs.append(translator(img, to))
                except CyclekitError as exc1:
                    fail(src, f"{src}: {exc1}")
                    outputs.append(None)
        for (src, rel, img), out in zip(loaded, outputs, strict=True):
            if out is None:
                continue
            dst = out_dir / rel
            try:
                _save_png(side_by_side(img, out) if side_by_side_output else out, dst)
            except OSError as exc:
                fail(src, f"cannot write {dst}: {exc.strerror or exc}")
                continue
            written.append(dst)
    return TranslateSummary(written, failed, time.perf_counter() - start)
