"""Paired image scores: L1, PSNR, SSIM, and the label-map scores of the CycleGAN paper.

Inputs are cyclekit images: torch tensors (or numpy arrays) in [-1, 1], CxHxW, or NxCxHxW for a
batch. The pixel scores work in [0, 1] units: an image x in [-1, 1] is mapped to (x + 1) / 2, so a
difference d of cyclekit values is d / 2 in these units. All arithmetic is float64 numpy. For a
batch, L1 is the mean over all pixels and PSNR/SSIM are the means of the per-image values.

Label-map scores (photo -> label evaluation of Zhu et al. 2017, the "FCN score" of Isola et al.
2017 without the FCN): target label maps define a palette (:func:`find_palette`), both predictions
and targets are snapped to it (:func:`snap_to_palette`), and :func:`label_scores` compares the class
maps. Colours there are 8-bit RGB (0..255): x in [-1, 1] -> round((x + 1) * 127.5).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cyclekit.errors import CyclekitError

# PSNR of identical images (MSE = 0) would be infinite; it is reported as this many dB instead.
PSNR_CAP_DB = 100.0

# SSIM constants of Wang et al. 2004 (and skimage's defaults with gaussian_weights=True).
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # 2 * int(3.5 * sigma + 0.5) + 1: the Gaussian truncated at 3.5 sigma, as scipy/skimage


def _as_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (torch is not imported here)
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _pair(a: Any, b: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Two equally shaped batches N x C x H x W in [0, 1] units."""
    x, y = _as_array(a), _as_array(b)
    if x.shape != y.shape:
        raise CyclekitError(f"{what}: the images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise CyclekitError(f"{what}: expected CxHxW or NxCxHxW images, got shape {x.shape}")
    return (x + 1) / 2, (y + 1) / 2


def l1(a: Any, b: Any) -> float:
    """Mean absolute difference in [0, 1] units: mean(|a - b|) / 2 for a, b in [-1, 1].

    0 for identical images, 1 for black vs white everywhere.
    """
    x, y = _pair(a, b, "L1")
    return float(np.abs(x - y).mean())


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB with peak 1: 10 log10(1 / MSE), MSE = mean(((a - b) / 2)²).

    Identical images (MSE = 0) give :data:`PSNR_CAP_DB` (100 dB), and every value is capped there.
    A batch gives the mean of the per-image PSNRs.
    """
    x, y = _pair(a, b, "PSNR")
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(axis=1)
    values = [PSNR_CAP_DB if m <= 0 else min(PSNR_CAP_DB, 10.0 * math.log10(1.0 / m)) for m in mse]
    return float(np.mean(values))


def _gaussian_window() -> np.ndarray:
    radius = SSIM_WINDOW // 2
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return w / w.sum()


def _filter_valid(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes (no padding: only full windows)."""
    k = len(w)
    h, wd = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = sum(w[i] * x[..., i : i + h, :] for i in range(k))
    return sum(w[i] * rows[..., :, i : i + wd] for i in range(k))


def ssim(a: Any, b: Any) -> float:
    """Structural similarity (Wang et al. 2004), images in [0, 1] (data range 1).

    Local statistics use an 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma) with
    population (not sample) moments; with C1 = (0.01)², C2 = (0.03)²::

        SSIM(x, y) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x² + mu_y² + C1)(sigma_x² + sigma_y² + C2))

    averaged over the positions where the whole window fits in the image (as skimage crops its
    border), then over the channels, then over the images of a batch. This equals
    ``skimage.metrics.structural_similarity(x, y, channel_axis=0, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``. Images must be at least 11x11.
    """
    x, y = _pair(a, b, "SSIM")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise CyclekitError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {x.shape[-2:]}")
    w = _gaussian_window()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mx, my = _filter_valid(x, w), _filter_valid(y, w)
    vx = _filter_valid(x * x, w) - mx * mx
    vy = _filter_valid(y * y, w) - my * my
    cxy = _filter_valid(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean(axis=(-2, -1)).mean(axis=1).mean())


# ---------------------------------------------------------------------------------------------
# Label maps
# ---------------------------------------------------------------------------------------------

# find_palette defaults (all distances Euclidean in 8-bit RGB): see its docstring.
MERGE_DISTANCE = 16.0
CORE_RADIUS = 6.0
FLAT_DISTANCE = 12.0
MIN_FRACTION = 0.001
FRINGE_FACTOR = 2.0
FRINGE_RATIO = 3.0
MAX_COLORS = 64
# looks_like_label_map defaults: see its docstring.
LABEL_COVERAGE = 0.7
LABEL_TOLERANCE = 8.0
LABEL_TIGHT_TOLERANCE = 3.0
LABEL_TIGHT_SHARE = 0.6
LABEL_MAX_COLORS = 40
JPEG_TOLERANCE = 32.0  # the second rule of looks_like_label_map (blurred JPEG label maps)
JPEG_TIGHT = 0.2
JPEG_WIDE = 0.5
JPEG_TIGHT_SHARE = 0.35


def _rgb(image: Any) -> np.ndarray:
    """(3, H, W) 8-bit RGB values (as int64) of one CxHxW image in [-1, 1]; gray is repeated."""
    x = _as_array(image)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise CyclekitError(f"label maps must be 1- or 3-channel CxHxW images, got shape {x.shape}")
    u8 = np.clip(np.rint((x + 1) * 127.5), 0, 255).astype(np.int64)
    return np.repeat(u8, 3, axis=0) if u8.shape[0] == 1 else u8


def _codes(rgb: np.ndarray) -> np.ndarray:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


def _decode(codes: np.ndarray) -> np.ndarray:
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1)


def _flat(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixel's 8 neighbours (edges replicated) are all within FLAT_DISTANCE of it."""
    h, w = rgb.shape[1:]
    padded = np.pad(rgb.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="edge")
    worst = np.zeros((h, w))
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                diff = padded[:, dy : dy + h, dx : dx + w] - rgb
                worst = np.maximum(worst, (diff * diff).sum(axis=0))
    return worst <= FLAT_DISTANCE**2


def _images(images: Any) -> list[Any]:
    """A single CxHxW image, an NxCxHxW batch or an iterable of CxHxW images -> list of images."""
    if hasattr(images, "ndim"):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise CyclekitError(f"expected CxHxW or NxCxHxW images, got shape {tuple(images.shape)}")
    return list(images)


def _colour_counts(images: Iterable[Any], flat: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Distinct 8-bit colours (K, 3) as float, their pixel counts over all images, and (``flat``)
    how many of those pixels are flat (see :func:`_flat`)."""
    codes, counts, flats = [], [], []
    for image in images:
        rgb = _rgb(image)
        c, inverse, n = np.unique(_codes(rgb), return_inverse=True, return_counts=True)
        codes.append(c)
        counts.append(n)
        if flat:
            flats.append(np.bincount(inverse.ravel(), weights=_flat(rgb).ravel(), minlength=len(c)))
    if not codes:
        raise CyclekitError("no label-map images given")
    all_codes, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    total = np.bincount(inverse, weights=np.concatenate(counts)).astype(np.int64)
    flat_total = np.bincount(inverse, weights=np.concatenate(flats)).astype(np.int64) if flat else None
    return _decode(all_codes).astype(np.float64), total, flat_total


def _clusters(
    colours: np.ndarray,
    counts: np.ndarray,
    flat_counts: np.ndarray,
    merge_distance: float,
    min_fraction: float,
    max_colors: int,
) -> list[tuple[np.ndarray, int]]:
    """Greedy mode-seeking clustering, largest first; see :func:`find_palette`."""
    total = counts.sum()
    need = max(1, math.ceil(min_fraction * total))
    remaining = flat_counts > 0  # only flat colours can seed a class
    found: list[tuple[np.ndarray, int]] = []
    for _ in range(16 * max_colors):  # bounded: every round removes at least the seed colour
        idx = np.flatnonzero(remaining)
        if len(found) >= max_colors or flat_counts[idx].sum() < need:
            break
        seed = idx[np.argmax(flat_counts[idx])]
        dist = np.linalg.norm(colours[idx] - colours[seed], axis=1)
        near, core = idx[dist <= merge_distance], idx[dist <= CORE_RADIUS]
        remaining[near] = False
        core_size = int(flat_counts[core].sum())
        if core_size < need:
            continue
        size = int(counts[np.linalg.norm(colours - colours[seed], axis=1) <= merge_distance].sum())
        centre = (colours[core] * flat_counts[core, None]).sum(axis=0) / core_size
        if any(
            np.linalg.norm(centre - c) <= FRINGE_FACTOR * merge_distance and n >= FRINGE_RATIO * size for c, n in found
        ):
            continue  # the JPEG fringe of a much larger class next to it, not a class
        found.append((np.clip(np.rint(centre), 0, 255), size))
    found.sort(key=lambda item: -item[1])
    return found


def find_palette(
    target_images: Any,
    max_colors: int = MAX_COLORS,
    merge_distance: float = MERGE_DISTANCE,
    min_fraction: float = MIN_FRACTION,
) -> np.ndarray:
    """The class colours of label-map images: a (K, 3) uint8 array of 8-bit RGB, largest class first.

    Rule (robust to JPEG noise; distances are Euclidean in 0..255 RGB, defaults in brackets):

    1. count the pixels of every exact colour over all images, and separately its *flat* pixels:
       those whose 8 neighbours all lie within ``FLAT_DISTANCE`` (12) of it. Region interiors are
       flat; the blends that JPEG ringing, chroma subsampling and anti-aliasing put along borders
       change quickly from pixel to pixel and are not;
    2. the colour with the most flat pixels not yet assigned is a candidate class: every unassigned
       colour within ``merge_distance`` (16) of it joins it (and can join no later class);
    3. the candidate is kept only if its *core*, the flat pixels within ``CORE_RADIUS`` (6) of
       that mode colour, holds at least ``min_fraction`` (0.1%) of all pixels;
    4. a kept candidate within ``FRINGE_FACTOR * merge_distance`` (32) of an earlier class with at
       least ``FRINGE_RATIO`` (3) times its pixels is dropped as that class's JPEG fringe (JPEG
       shifts saturated colours next to other regions by 15-25 as a whole, flat areas included);
    5. repeat from 2 until fewer than ``min_fraction`` flat pixels are unassigned or
       ``max_colors`` classes are found. A class's colour is the mean of its core's flat pixels.

    Consequences: classes closer than ``merge_distance`` merge; a class with less than
    ``min_fraction`` of flat interior (thin or tiny objects), or within 32 of a class three times
    its size, is not found. Pass a known palette (e.g. the dataset's official colours) to
    :func:`label_scores` when that matters.
    """
    colours, counts, flat_counts = _colour_counts(_images(target_images), flat=True)
    found = _clusters(colours, counts, flat_counts, merge_distance, min_fraction, max_colors)
    if not found:
        raise CyclekitError("no colour covers enough of the label-map images to form a palette")
    return np.stack([c for c, _ in found]).astype(np.uint8)


def _check_palette(palette: Any) -> np.ndarray:
    p = np.asarray(palette, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or len(p) == 0:
        raise CyclekitError(f"a palette must be a (K, 3) array of RGB colours, got shape {p.shape}")
    return p


def _nearest(px: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest palette colour for each (P, 3) pixel, and its squared distance.

    |x - p|² = |x|² - 2 x.p + |p|² is exact here: the values are integers far below 2**53.
    """
    px = px.astype(np.float64)
    d2 = (px * px).sum(axis=1)[:, None] - 2.0 * px @ palette.T + (palette * palette).sum(axis=1)[None, :]
    idx = d2.argmin(axis=1)
    return idx, d2[np.arange(len(px)), idx]


def snap_to_palette(image: Any, palette: Any) -> np.ndarray:
    """Class map (H, W) int64 of one CxHxW image in [-1, 1]: the index of the palette colour nearest
    to each pixel (Euclidean in 8-bit RGB; ties go to the lower index). ``palette[labels]`` gives
    the snapped colours."""
    p = _check_palette(palette)
    rgb = _rgb(image)
    codes, inverse = np.unique(_codes(rgb), return_inverse=True)
    return _nearest(_decode(codes), p)[0][inverse.ravel()].reshape(rgb.shape[1:])


@dataclass(frozen=True)
class LabelScores:
    """Label-map agreement over all pixels of all image pairs.

    ``class_accuracy[c]`` = TP_c / (target pixels of class c) (recall); ``class_iou[c]`` =
    TP_c / (target pixels of c + predicted pixels of c - TP_c). Both are None for classes absent
    from the targets, which are left out of ``mean_class_accuracy`` and ``mean_iou`` (their
    false positives still lower ``pixel_accuracy`` and the IoU of the true classes).
    """

    pixel_accuracy: float
    mean_class_accuracy: float
    mean_iou: float
    class_accuracy: list[float | None]
    class_iou: list[float | None]
    class_pixels: list[int]
    palette: list[list[int]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def confusion_matrix(pred_images: Any, target_images: Any, palette: Any) -> np.ndarray:
    """(K, K) int64 counts: rows are target classes, columns predicted classes."""
    p = _check_palette(palette)
    preds, targets = _images(pred_images), _images(target_images)
    if len(preds) != len(targets):
        raise CyclekitError(f"label scores need one target per prediction, got {len(preds)} and {len(targets)}")
    if not preds:
        raise CyclekitError("label scores need at least one image pair")
    k = len(p)
    conf = np.zeros((k, k), dtype=np.int64)
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        a, b = _as_array(pred), _as_array(target)
        if a.shape[1:] != b.shape[1:]:
            raise CyclekitError(f"image pair {i}: prediction {a.shape} and target {b.shape} differ in size")
        yp = snap_to_palette(a, p).ravel()
        yt = snap_to_palette(b, p).ravel()
        conf += np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)
    return conf


def label_scores(pred_images: Any, target_images: Any, palette: Any) -> LabelScores:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU of predicted label maps.

    Predictions and targets (paired, same sizes; a batch, a single image or a sequence of images)
    are both snapped to ``palette`` (:func:`snap_to_palette`) and compared pixel by pixel:
    pixel accuracy = sum_c TP_c / all pixels; the means run over the classes present in the
    targets only (see :class:`LabelScores`).
    """
    p = _check_palette(palette)
    conf = confusion_matrix(pred_images, target_images, p)
    tp = np.diag(conf).astype(np.float64)
    in_target = conf.sum(axis=1)
    in_pred = conf.sum(axis=0)
    present = in_target > 0
    acc = [float(tp[c] / in_target[c]) if present[c] else None for c in range(len(p))]
    iou = [float(tp[c] / (in_target[c] + in_pred[c] - tp[c])) if present[c] else None for c in range(len(p))]
    return LabelScores(
        pixel_accuracy=float(tp.sum() / conf.sum()),
        mean_class_accuracy=float(np.mean([a for a in acc if a is not None])),
        mean_iou=float(np.mean([v for v in iou if v is not None])),
        class_accuracy=acc,
        class_iou=iou,
        class_pixels=[int(n) for n in in_target],
        palette=[[int(v) for v in colour] for colour in p],
    )


def palette_coverage(images: Any, palette: Any, tolerance: float = LABEL_TOLERANCE) -> float:
    """Fraction of the pixels of ``images`` within ``tolerance`` (8-bit RGB distance) of a palette colour."""
    return _coverages(_images(images), _check_palette(palette), (tolerance,))[0]


def _coverages(images: list[Any], palette: np.ndarray, tolerances: Sequence[float]) -> list[float]:
    colours, counts, _ = _colour_counts(images)
    _, d2 = _nearest(colours, palette)
    return [float(counts[d2 <= tol**2].sum() / counts.sum()) for tol in tolerances]


def looks_like_label_map(
    images: Any,
    coverage: float = LABEL_COVERAGE,
    max_colors: int = LABEL_MAX_COLORS,
    tolerance: float = LABEL_TOLERANCE,
    tight_tolerance: float = LABEL_TIGHT_TOLERANCE,
    tight_share: float = LABEL_TIGHT_SHARE,
) -> bool:
    """Heuristic: are these images label maps (a few flat colours) rather than photos?

    With the palette of at most ``max_colors`` (40) colours that :func:`find_palette` finds, two
    conditions must hold:

    1. few colours dominate: at least ``coverage`` (70%) of all pixels lie within ``tolerance``
       (8, Euclidean in 8-bit RGB) of a palette colour;
    2. the colours are sharp peaks, not samples of a continuum: of those pixels, at least
       ``tight_share`` (60%) lie within ``tight_tolerance`` (3) of their palette colour.

    Colour photos fail (1). Smooth or grayscale photos can pass (1), since a few grey levels cover
    a narrow histogram, but fail (2): their pixels spread evenly around the palette colours.
    A second rule admits heavily compressed, downscaled JPEG label maps (see the code). Coverage
    stays below 100% for real label maps because JPEG (chroma subsampling, ringing)
    shifts the colours along region borders; on synthetic street-scene label maps saved as JPEG
    quality 75 condition (1) gave 0.73-0.85 and (2) 0.70-0.91, on smooth grayscale photos
    (2) gave about 0.33. Near-binary images (MNIST digits, masks, line drawings) pass; label maps
    with added noise of more than about 1 grey level (not JPEG's, which leaves flat areas flat) fail (2).
    """
    items = _images(images)
    try:
        palette = find_palette(items, max_colors=max_colors)
    except CyclekitError:
        return False
    tight, loose, wide = _coverages(items, palette.astype(np.float64), (tight_tolerance, tolerance, JPEG_TOLERANCE))
    if loose >= coverage and tight >= tight_share * loose:
        return True
    # Heavily compressed JPEG label maps scaled down with a bicubic filter (facades' labels at
    # 64-256 px) blur every border, so (1) fails; their flat interiors still hold exact colours:
    # measured on facades' test labels, 30% of pixels within 3 of the palette (photos: 2-5%) and
    # 40-45% of those within 32 (photos: 6-11%), 67-76% within 32 in all.
    return tight >= JPEG_TIGHT and wide >= JPEG_WIDE and tight >= JPEG_TIGHT_SHARE * wide
