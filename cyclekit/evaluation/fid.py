"""FID and KID: the FID Inception-v3 network, its weights file, feature extraction and the distances.

The network is the one of the widely used pytorch-fid implementation (``mseitzer/pytorch-fid``,
``src/pytorch_fid/inception.py``): torchvision's Inception-v3 layout with 1008 classes, no auxiliary
classifier, and the TensorFlow-compatible patches of ``FIDInceptionA/C/E_1/E_2`` (average pools that
ignore the zero padding, and a max pool in the pool branch of the last block). It is rebuilt here in
plain torch (no torchvision) with the same module names, so the state dict of
``pt_inception-2015-12-05-6726825d.pth`` loads with ``strict=True``; the features are the 2048-d
"pool3" activations (adaptive average pool after ``Mixed_7c``), exactly what pytorch-fid uses.

Preprocessing follows pytorch-fid: images in [0, 1] are resized to 299x299 (bilinear,
``align_corners=False``) and scaled to [-1, 1]. cyclekit images are already in [-1, 1], so they are
mapped to [0, 1] first; grayscale images are repeated to three channels.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to two feature sets; KID
(Bińkowski et al. 2018) is the unbiased MMD² with a cubic polynomial kernel, averaged over random
subsets. Both are computed in float64 numpy; neither needs scipy.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit import fetch as _download
from cyclekit.data.catalogue import default_cache_dir
from cyclekit.errors import CyclekitError, DataError

logger = logging.getLogger(__name__)

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
# torch-hub convention: the file name carries the first 8 hex digits of the file's sha256.
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
FEATURE_DIM = 2048
NUM_CLASSES = 1008
INPUT_SIZE = 299

# ---------------------------------------------------------------------------------------------
# The network (names and shapes identical to torchvision's Inception3 as patched by pytorch-fid)
# ---------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _tf_avg_pool(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that, like TensorFlow's, does not count the zero padding."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """InceptionA with the TensorFlow average pool (``count_include_pad=False``)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([branch1x1, branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (unpatched)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(nn.Module):
    """InceptionC (factorised 7x7) with the TensorFlow average pool."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([branch1x1, branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (unpatched)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class FIDInceptionE(nn.Module):
    """InceptionE (expanded filter bank). ``max_pool=False``: pytorch-fid's ``FIDInceptionE_1``
    (TensorFlow average pool); ``max_pool=True``: ``FIDInceptionE_2``, whose pool branch uses a 3x3
    max pool instead (a quirk of the TensorFlow FID graph that the weights were trained with)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _tf_avg_pool(x)
        branch_pool = self.branch_pool(pooled)
        return torch.cat([branch1x1, branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's ``fid_inception_v3()`` network without torchvision.

    ``forward`` takes a batch already preprocessed (N x 3 x 299 x 299, values in [-1, 1]) and
    returns the N x 2048 pool3 features; ``logits`` adds the 1008-way ``fc`` layer (kept so the
    weights file loads strictly; FID does not use it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)  # FIDInceptionE_1
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)  # FIDInceptionE_2
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.Conv2d_1a_3x3(x)  # N x 32 x 149 x 149
        x = self.Conv2d_2a_3x3(x)  # N x 32 x 147 x 147
        x = self.Conv2d_2b_3x3(x)  # N x 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # N x 64 x 73 x 73
        x = self.Conv2d_3b_1x1(x)  # N x 80 x 73 x 73
        x = self.Conv2d_4a_3x3(x)  # N x 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # N x 192 x 35 x 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)  # -> N x 768 x 17 x 17
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x = block(x)  # -> N x 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))  # N x 2048 x 8 x 8
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # N x 2048

    def logits(self, x: Tensor) -> Tensor:
        return self.fc(self.forward(x))


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def default_weights_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/weights/pt_inception-2015-12-05-6726825d.pth`` (cache: :func:`default_cache_dir`)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / "weights" / FID_WEIGHTS_NAME


def _first_line(exc: BaseException, limit: int = 160) -> str:
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fetch_weights(dest: Path, progress: Callable[[int, int | None], None] | None) -> None:
    """Download the weights to ``dest``; the file appears only once complete and its sha256 starts
    with :data:`FID_WEIGHTS_SHA256_PREFIX`."""
    staging = dest.with_name(dest.name + ".download")
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = f"fetch {FID_WEIGHTS_URL} and save it as {dest}, or pass --inception PATH"
    logger.info("downloading the FID Inception weights (about 92 MB) to %s", dest)
    try:
        _download.download_file(FID_WEIGHTS_URL, staging, progress=progress)
    except _download.DownloadError as exc:
        raise CyclekitError(f"could not download the FID Inception weights ({exc.reason}); {hint}") from None
    except DataError as exc:
        raise CyclekitError(f"could not download the FID Inception weights ({_first_line(exc)}); {hint}") from None
    digest = _sha256(staging)
    if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
        staging.unlink(missing_ok=True)
        raise CyclekitError(
            f"the file downloaded from {FID_WEIGHTS_URL} has sha256 {digest[:8]}..., expected "
            f"{FID_WEIGHTS_SHA256_PREFIX}...; it was deleted ({hint})"
        )
    os.replace(staging, dest)


def _load_state_dict(path: Path) -> Mapping[str, Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 (pickle, zip and torch all raise their own types)
        raise CyclekitError(f"{path} is not a PyTorch weights file ({_first_line(exc)})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CyclekitError(f"{path} does not hold a state dict of tensors (found {type(state).__name__})")
    return state


def _check_keys(path: Path, state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """One-line errors for missing/unexpected keys or wrong shapes; ``num_batches_tracked`` buffers
    (absent from files saved by old torch versions) are optional and filled with 0."""
    what = f"{path} is not the FID Inception weights ({FID_WEIGHTS_NAME})"
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CyclekitError(
            f"{what}: missing key {missing[0]!r} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    if unexpected:
        raise CyclekitError(f"{what}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for key, ref in expected.items():
        if key in state and tuple(state[key].shape) != tuple(ref.shape):
            raise CyclekitError(f"{what}: {key!r} has shape {tuple(state[key].shape)}, expected {tuple(ref.shape)}")
    full = dict(state)
    for key in expected:
        full.setdefault(key, torch.tensor(0, dtype=torch.long))
    return full


def load_inception(
    path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
) -> FIDInceptionV3:
    """The FID Inception network with pytorch-fid's weights, in eval mode on the CPU, no gradients.

    ``path``: an explicit weights file (the CLI's ``--inception PATH``); it must exist. Otherwise
    the cache file :func:`default_weights_path` is used; when it is absent and ``download`` is true
    it is downloaded atomically (resumable) and accepted only if its sha256 starts with
    ``6726825d`` (the torch-hub convention: the file name carries the hash prefix). Offline or
    with ``download=False``, a missing file raises :class:`CyclekitError` naming the URL to fetch
    and the path to save it at. A file that is not a torch file, or whose keys/shapes are not those
    of the FID Inception, raises a one-line :class:`CyclekitError` naming the file and the first
    offending key.
    """
    if path is not None:
        file = Path(path).expanduser()
        if not file.exists():
            raise CyclekitError(f"Inception weights file not found: {file}")
        if not file.is_file():
            raise CyclekitError(f"Inception weights path is not a file: {file}")
    else:
        file = default_weights_path(cache_dir)
        if not file.is_file():
            if not download:
                raise CyclekitError(
                    f"FID Inception weights not found at {file}: download {FID_WEIGHTS_URL} and save it "
                    "there, or pass --inception PATH"
                )
            _fetch_weights(file, progress)
    model = FIDInceptionV3()
    state = _check_keys(file, _load_state_dict(file), model.state_dict())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype oddities the key/shape checks above cannot see
        raise CyclekitError(f"{file}: cannot load the FID Inception weights ({_first_line(exc)})") from None
    model.eval()
    model.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _as_batch(item: Tensor | np.ndarray, index: int) -> Tensor:
    x = torch.as_tensor(item)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise CyclekitError(f"image {index}: expected a CxHxW or NxCxHxW tensor, got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] != 3:
        raise CyclekitError(f"image {index}: expected 1 or 3 channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    return x


def preprocess(x: Tensor) -> Tensor:
    """N x 3 x H x W in [-1, 1] -> N x 3 x 299 x 299 as pytorch-fid feeds the network: to [0, 1],
    bilinear resize (``align_corners=False``), then ``2 * x - 1``."""
    x = (x.float() + 1) / 2
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x - 1


def inception_features(
    model: nn.Module,
    images: Iterable[Tensor | np.ndarray],
    batch_size: int = 50,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Pool3 features, float64 array of shape (N, 2048), of ``images`` in order.

    ``images``: tensors (or arrays) in [-1, 1], each CxHxW or NxCxHxW with 1 or 3 channels, any
    size (each is resized to 299x299, see :func:`preprocess`). They are run through ``model`` in
    batches of ``batch_size`` on ``device`` (default: where the model is; the model is moved there).
    """
    if batch_size < 1:
        raise CyclekitError(f"batch size must be at least 1, got {batch_size}")
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    model = model.to(device).eval()
    out: list[np.ndarray] = []
    pending: list[Tensor] = []
    count = 0

    def run(batch: Tensor) -> None:
        with torch.inference_mode():
            out.append(model(batch).double().cpu().numpy())

    for index, item in enumerate(images):
        with torch.inference_mode():
            x = preprocess(_as_batch(item, index).to(device))
        pending.append(x)
        count += x.shape[0]
        while count >= batch_size:
            joined = torch.cat(pending) if len(pending) > 1 else pending[0]
            run(joined[:batch_size])
            rest = joined[batch_size:]
            pending = [rest] if rest.shape[0] else []
            count = rest.shape[0]
    if count:
        run(torch.cat(pending))
    if not out:
        return np.empty((0, FEATURE_DIM), dtype=np.float64)
    return np.concatenate(out).astype(np.float64, copy=False)


# ---------------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------------


def _clip_null(w: np.ndarray) -> np.ndarray:
    """Eigenvalues below rounding level (``d * eps * max|w|``, negative ones included) set to 0."""
    tol = len(w) * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), np.finfo(np.float64).tiny)
    return np.where(w > tol, w, 0.0)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr(sqrt(S1 S2)) for symmetric PSD S1, S2, without scipy.

    S1 S2 = R (R S2) with R = sqrt(S1), and A B has the eigenvalues of B A, so S1 S2 has the same
    eigenvalues as M = R S2 R, which is symmetric PSD: tr(sqrt(S1 S2)) = sum_i sqrt(lambda_i(M)).
    R and the eigenvalues come from symmetric eigendecompositions (``eigh``/``eigvalsh``: real and
    stable, also for the singular covariances of fewer samples than dimensions). Eigenvalues at
    rounding level (below ``d * eps * largest``, negative ones included) are taken as 0: their
    square roots (about 1e-8 of the scale each) would otherwise add up to noise over thousands of
    null directions. Unlike ``scipy.linalg.sqrtm(S1 @ S2)`` this never returns complex values or
    needs an epsilon added to the diagonals.
    """
    s1 = (sigma1 + sigma1.T) / 2
    s2 = (sigma2 + sigma2.T) / 2
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(_clip_null(w))) @ v.T
    m = root @ s2 @ root
    eigenvalues = _clip_null(np.linalg.eigvalsh((m + m.T) / 2))
    return float(np.sqrt(eigenvalues).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, S1) and N(mu2, S2), in float64:

        d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2))

    (the FID when the moments are those of Inception features). The trace term is computed by
    :func:`trace_sqrt_product`. The result is >= 0 in exact arithmetic; a rounding-level negative
    value is returned as 0.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise CyclekitError(
            f"Fréchet distance: mismatched shapes mu1 {mu1.shape}, sigma1 {s1.shape}, "
            f"mu2 {mu2.shape}, sigma2 {s2.shape}"
        )
    for name, a in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise CyclekitError(f"Fréchet distance: {name} contains NaN or infinite values")
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(value, 0.0)


def _check_features(f1: np.ndarray, f2: np.ndarray, what: str, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise CyclekitError(f"{what}: expected two (N, D) feature arrays with the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise CyclekitError(f"{what} needs at least {minimum} images in each set, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CyclekitError(f"{what}: the features contain NaN or infinite values")
    return a, b


def feature_moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples, ``ddof=1`` as in pytorch-fid) of (N, D) features."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two (N, D) feature sets (each needs at least 2 rows)."""
    a, b = _check_features(f1, f2, "FID", 2)
    return frechet_distance(*feature_moments(a), *feature_moments(b))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x . y / d + 1)^3 for all row pairs (d: feature dimension)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with :func:`polynomial_kernel`:

        1/(m(m-1)) sum_{i!=j} k(x_i, x_j) + 1/(n(n-1)) sum_{i!=j} k(y_i, y_j) - 2/(mn) sum_{i,j} k(x_i, y_j)

    It can be slightly negative when the two samples come from the same distribution.
    """
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float(sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * kxy.sum() / (m * n))


def kid(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): (mean, std) of :func:`mmd2_unbiased`
    over ``subsets`` random subsets, as torch-fidelity and clean-fid compute it.

    Each subset draws ``m`` rows without replacement from each set, ``m = min(subset_size, N1, N2)``
    (clean-fid's cap; torch-fidelity instead refuses a subset size above the sample counts). The
    draws come from ``numpy.random.default_rng(seed)``, so the result is reproducible. The std
    (``ddof=0``) measures the spread over subsets, not an error bar of the mean. KID is often
    reported x1000.
    """
    a, b = _check_features(f1, f2, "KID", 2)
    if subsets < 1 or subset_size < 2:
        raise CyclekitError(f"KID needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        values[i] = mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())
