"""Image files: find them, decode them robustly, and convert to/from [-1, 1] tensors.

Every failure to read a user's file becomes a :class:`~cyclekit.errors.DataError` whose single-line
message names the file and the reason, so a bad JPEG in a folder of thousands is easy to find.
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cyclekit.atomic import atomic_path
from cyclekit.errors import DataError

if TYPE_CHECKING:  # torch is imported lazily: the ONNX translate path must not need it
    import torch

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Modes whose pixels carry an alpha channel (after P-with-transparency is expanded to RGBA).
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
# 32-bit integer / 16-bit modes that need explicit range scaling to 8 bits (PIL would clip).
_WIDE_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

# Everything PIL raises for a file it cannot decode. SyntaxError and struct errors surface from
# some plugins on malformed headers; DecompressionBombError is a subclass of Exception.
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    zlib.error,
    Image.DecompressionBombError,
)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.fspath(path).lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Return the image files in ``folder`` (sorted by path), optionally searching subfolders.

    Hidden files (``.name``, e.g. macOS ``._x.jpg`` resource forks) are ignored: they carry image
    extensions but are never images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"expected an image folder but found a file: {folder}")
    pattern = "**/*" if recursive else "*"
    found = [
        p
        for p in folder.glob(pattern)
        # Skip hidden files and anything inside hidden folders (.ipynb_checkpoints, .git, ...).
        if is_image_file(p.name)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    ]
    return sorted(found)


def describe_error(exc: BaseException) -> str:
    """A short single-line description of a decode error."""
    text = " ".join(str(exc).split())
    if text and isinstance(exc, OSError):
        return text  # PIL's OSError messages ("image file is truncated") stand on their own
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_checked(path: Path) -> Image.Image:
    """Open ``path`` with PIL, turning every failure into a DataError naming the file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {describe_error(exc)}") from exc
    if path.is_dir():
        raise DataError(f"expected an image file but found a folder: {path}")
    if size == 0:
        raise DataError(f"cannot read image {path}: file is empty (0 bytes)")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise DataError(f"cannot read image {path}: not a recognised image format") from None
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {describe_error(exc)}") from exc


def _scale_wide_int(img: Image.Image) -> Image.Image:
    """16/32-bit integer greyscale -> 8-bit "L", scaling 0..65535 to 0..255 (PIL would clip)."""
    arr = np.asarray(img).astype(np.float64)
    lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
    if lo >= 0 and hi <= 65535:
        arr = arr * (255.0 / 65535.0)
    else:
        # Mode "I" can hold any int32; outside the 16-bit range there is no "true" scale, so
        # stretch the actual range instead of clipping it to black/white.
        logger.debug("mode %s values %s..%s outside 0..65535; min-max scaling", img.mode, lo, hi)
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _scale_float(img: Image.Image) -> Image.Image:
    """Float greyscale ("F") -> "L": [0,1] data is scaled by 255, [0,255] kept, else min-max."""
    arr = np.asarray(img).astype(np.float64)
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min(initial=0)), float(arr.max(initial=0))
    if lo >= 0 and hi <= 1.0:
        arr = arr * 255.0
    elif lo < 0 or hi > 255:
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def split_alpha(img: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """Normalise any PIL mode to ("RGB" or "L", alpha "L" or None), alpha kept separate.

    Grey modes (1, L, LA, 16-bit, float) stay grey; 16-bit and float data are scaled, not clipped.
    The one place cyclekit turns an arbitrary PIL image into colour + alpha (training and
    translation both use it)."""
    mode = img.mode
    if mode == "P" or mode == "PA":
        # Palette images may mark a colour (or palette alpha) as transparent; expanding to RGBA
        # keeps that information instead of leaking the palette's arbitrary "transparent" colour.
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    elif mode == "1":
        img = img.convert("L")
        mode = "L"
    elif "transparency" in img.info and mode in ("L", "RGB"):
        # tRNS chunk on a non-palette PNG: a single fully transparent colour.
        img = img.convert("LA" if mode == "L" else "RGBA")
        mode = img.mode

    if mode in _ALPHA_MODES:
        if mode in ("RGBa", "La"):  # premultiplied: un-premultiply via PIL's converter
            img = img.convert("RGBA" if mode == "RGBa" else "LA")
            mode = img.mode
        bands = img.split()
        alpha = bands[-1]
        colour = Image.merge("RGB", bands[:3]) if mode in ("RGBA", "PA") else bands[0]
        return colour, alpha
    if mode in _WIDE_INT_MODES:
        return _scale_wide_int(img), None
    if mode == "F":
        return _scale_float(img), None
    if mode in ("RGB", "L"):
        return img, None
    # CMYK (PIL already handles Adobe-inverted CMYK JPEGs via the APP14 marker), YCbCr, LAB,
    # HSV, RGBX, ...: PIL's own converter knows them.
    return img.convert("RGB"), None


def _to_channels(img: Image.Image, channels: int) -> Image.Image:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    want = "RGB" if channels == 3 else "L"
    return img if img.mode == want else img.convert(want)


def _decode(path: Path) -> tuple[Image.Image, Image.Image | None]:
    """Fully decode ``path`` into (colour "RGB"/"L", alpha or None), EXIF orientation applied."""
    img = _open_checked(path)
    try:
        with img:
            # Decode now so truncation errors are raised here, with the path, not later.
            img.load()
            try:
                oriented = ImageOps.exif_transpose(img)
            except DECODE_ERRORS as exc:
                # A broken EXIF block should not make an otherwise fine image unusable.
                logger.warning("ignoring unreadable EXIF orientation in %s: %s", path, describe_error(exc))
                oriented = img
            colour, alpha = split_alpha(oriented)
            colour.load()
            return colour, alpha
    except DataError:
        raise
    except DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {describe_error(exc)}") from exc


def load_image(path: str | os.PathLike[str], channels: int = 3) -> Image.Image:
    """Decode an image file to mode "RGB" (``channels=3``) or "L" (``channels=1``).

    Handles every common PIL mode (1, L, LA, P, RGBA, CMYK, 16-bit, float, YCbCr) and EXIF
    orientation. Transparent pixels are composited over white so the arbitrary colours stored
    under them never reach the model. Unreadable files raise DataError naming the file.
    """
    path = Path(path)
    colour, alpha = _decode(path)
    if alpha is not None:
        base = Image.new(colour.mode, colour.size, 255 if colour.mode == "L" else (255, 255, 255))
        base.paste(colour, (0, 0), alpha)
        colour = base
    return _to_channels(colour, channels)


def load_image_with_alpha(path: str | os.PathLike[str], channels: int = 3) -> tuple[Image.Image, Image.Image | None]:
    """Decode an image, returning (colour "RGB"/"L", alpha "L" or None) after EXIF transpose.

    For inference that re-attaches the alpha channel to the translated image. Colours of
    semi-transparent pixels are kept as stored (they are visible once alpha is re-applied);
    fully transparent pixels are set to white because their stored colour is arbitrary and would
    bleed into neighbours through the convolutions.
    """
    path = Path(path)
    colour, alpha = _decode(path)
    if alpha is not None:
        colour = Image.fromarray(whiten_transparent(np.asarray(colour), np.asarray(alpha)), colour.mode)
    return _to_channels(colour, channels), alpha


def whiten_transparent(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Fully transparent pixels -> white (uint8 HxW or HxWxC): their stored colour is arbitrary
    and would bleed into neighbours through the convolutions."""
    if (alpha == 0).any():
        colour = colour.copy()
        colour[alpha == 0] = 255
    return colour


def probe_image(path: str | os.PathLike[str], side_by_side: bool = False) -> str | None:
    """Quickly check that ``path`` decodes; return None if fine, else a one-line reason.

    JPEGs are decoded at reduced scale (``Image.draft``), which still walks the whole entropy
    coded stream, so truncation and corruption are caught at a fraction of the cost.
    ``side_by_side``: the image must also be wide enough to hold two halves (A|B), 2 px or more.
    """
    path = Path(path)
    try:
        img = _open_checked(path)
    except DataError as exc:
        return _reason_from(exc, path)
    if side_by_side and img.width < 2:
        img.close()
        return f"{img.width}x{img.height} is too narrow to hold A and B side by side"
    try:
        with img, warnings.catch_warnings():
            # Possibly-corrupt-EXIF and similar warnings are not decode failures.
            warnings.simplefilter("ignore")
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except DECODE_ERRORS as exc:
        return describe_error(exc)
    return None


def _reason_from(exc: DataError, path: Path) -> str:
    """Strip the "cannot read image <path>: " prefix so reasons read well next to the path."""
    text = str(exc)
    prefix = f"cannot read image {path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


# ---------------------------------------------------------------------------------------------
# Tensors


# Pixels <-> network values. Networks see (pixel / 255 - MEAN) / STD, i.e. [-1, 1], and return
# tanh outputs in [-1, 1]; bundles and ONNX metadata record these two numbers.
MEAN, STD = 0.5, 0.5
# ITU-R 601-2 luma, the weights PIL's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_gray(x: np.ndarray, axis: int) -> np.ndarray:
    """RGB -> luma along ``axis`` (kept, size 1), in whatever linear units ``x`` has."""
    gray = np.tensordot(np.moveaxis(x, axis, -1), LUMA, axes=([-1], [0]))
    return np.moveaxis(gray[..., None], -1, axis)


def to_model_array(u8: np.ndarray, channels: int | None = None, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """uint8 HxW / HxWxC (C = 1 or 3) -> float32 CxHxW in the network's range with ``channels``
    channels (grey is repeated to RGB, RGB becomes luma; None keeps C).

    Transposes while still uint8 and scales in place: for a 6000x4000 photo every float32 copy
    is 288 MB, so temporaries matter.
    """
    if u8.dtype != np.uint8:
        raise TypeError(f"expected a uint8 array, got {u8.dtype}")
    if u8.ndim == 2:
        u8 = u8[:, :, None]
    x = np.ascontiguousarray(u8.transpose(2, 0, 1)).astype(np.float32)
    x *= 1.0 / (255.0 * std)
    x -= mean / std
    if x.shape[0] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=0)
    elif x.shape[0] == 3 and channels == 1:
        x = to_gray(x, 0)
    return x


def from_model_array(y: np.ndarray, gray: bool = False, mean: float = MEAN, std: float = STD) -> np.ndarray:
    """float CxHxW network output -> uint8 HxWxC (C = 1 if ``gray`` else as given), rounded and clipped."""
    if gray and y.shape[0] == 3:
        y = to_gray(y, 0)  # before quantising, so the grey is rounded once
    out = np.multiply(y, 255.0 * std, dtype=np.float32)
    out += 255.0 * mean
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return np.ascontiguousarray(out.astype(np.uint8).transpose(1, 2, 0))


def array_to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 HxW or HxWxC array -> float32 CxHxW tensor in [-1, 1] (mean 0.5, std 0.5)."""
    import torch

    return torch.from_numpy(to_model_array(arr))


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL "RGB"/"L" image -> float32 CxHxW tensor in [-1, 1] (mean 0.5, std 0.5 per channel)."""
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    return array_to_tensor(np.asarray(img))


def tensor_to_array(t: torch.Tensor) -> np.ndarray:
    """CxHxW (or 1xCxHxW) tensor in [-1, 1] -> uint8 HxWxC array (clamped, rounded)."""
    import torch

    t = t.detach()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"expected a CxHxW tensor, got shape {tuple(t.shape)}")
    return from_model_array(t.to("cpu", torch.float32).numpy())


def tensor_to_image(t: torch.Tensor) -> Image.Image:
    """Inverse of :func:`image_to_tensor`: 1-channel -> "L", 3-channel -> "RGB"."""
    arr = tensor_to_array(t)
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], mode="L")
    if arr.shape[2] == 3:
        return Image.fromarray(arr, mode="RGB")
    raise ValueError(f"expected 1 or 3 channels, got {arr.shape[2]}")


def make_grid(
    images: torch.Tensor | Iterable[torch.Tensor],
    nrow: int | None = None,
    padding: int = 2,
    pad_value: float = -1.0,
) -> torch.Tensor:
    """Tile images into one CxHxW tensor (values stay in [-1, 1]); torchvision-free make_grid.

    ``images`` is an (N,C,H,W) tensor or a sequence of (C,H,W) / (N,C,H,W) tensors. When it is
    a sequence of equal-length (N,C,H,W) tensors and ``nrow`` is None, each tensor becomes one
    row (e.g. ``[real_A, fake_B, rec_A]``). ``nrow`` is the number of images per row, as in
    torchvision. 1-channel images are repeated to 3 channels when mixed with RGB ones.
    """
    import torch

    if isinstance(images, torch.Tensor):
        parts = [images]
    else:
        parts = list(images)
    if not parts:
        raise ValueError("make_grid needs at least one image")
    batches = [p.detach().to("cpu", torch.float32) for p in parts]
    as_rows = len(batches) > 1 and all(b.dim() == 4 for b in batches)
    batches = [b.unsqueeze(0) if b.dim() == 3 else b for b in batches]
    for b in batches:
        if b.dim() != 4:
            raise ValueError(f"expected CxHxW or NxCxHxW tensors, got shape {tuple(b.shape)}")
    if nrow is None:
        counts = {b.shape[0] for b in batches}
        nrow = counts.pop() if as_rows and len(counts) == 1 else 8
    channels = max(b.shape[1] for b in batches)
    if any(b.shape[1] not in (1, channels) for b in batches):
        raise ValueError("make_grid: images must have 1 or the same number of channels")
    batches = [b.expand(-1, channels, -1, -1) if b.shape[1] == 1 else b for b in batches]
    sizes = {tuple(b.shape[2:]) for b in batches}
    if len(sizes) != 1:
        raise ValueError(f"make_grid: all images must have the same HxW, got {sorted(sizes)}")
    flat = torch.cat(batches, dim=0)
    n, c, h, w = flat.shape
    cols = max(1, min(nrow, n))
    rows = (n + cols - 1) // cols
    grid = flat.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(n):
        r, q = divmod(k, cols)
        y, x = r * (h + padding) + padding, q * (w + padding) + padding
        grid[:, y : y + h, x : x + w] = flat[k]
    return grid


LABEL_CHARS = 32  # a grid's row label is cut to this many characters


def label_text(name: str, limit: int = LABEL_CHARS) -> str:
    """A name (a class folder's, a line of classes.txt) as one short line of text to draw on a
    grid: control characters (line breaks, tabs, escapes) shown as "?", cut to ``limit`` ("~")."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(name))
    return text if len(text) <= limit else text[: limit - 1] + "~"


def save_grid(
    images: torch.Tensor | Iterable[torch.Tensor],
    path: str | os.PathLike[str],
    nrow: int | None = None,
    padding: int = 2,
    row_labels: Iterable[str] | None = None,
) -> Path:
    """Tile [-1, 1] images with :func:`make_grid` and save them as a PNG; returns the path.
    ``row_labels``: a name written left of each row (e.g. the class of a conditional GAN's row)."""
    path = Path(path)
    grid = tensor_to_image(make_grid(images, nrow=nrow, padding=padding))
    if row_labels is not None:
        from PIL import ImageDraw

        labels = [label_text(name) for name in row_labels]
        row_height = grid.height / max(1, len(labels))
        margin = 8 + 7 * max((len(s) for s in labels), default=1)
        labelled = Image.new("RGB", (grid.width + margin, grid.height), (0, 0, 0))
        labelled.paste(grid.convert("RGB"), (margin, 0))
        draw = ImageDraw.Draw(labelled)
        for i, text in enumerate(labels):
            draw.text((4, int(i * row_height + row_height / 2 - 5)), text, fill=(255, 255, 255))
        grid = labelled
    with atomic_path(path, fsync=False) as tmp:
        grid.save(tmp, format="PNG")
    return path
