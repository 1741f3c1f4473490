"""Evaluation metrics against known answers: FID/KID maths, the FID Inception plumbing (random
weights in the real file's format), SSIM/L1/PSNR, and palette-based label-map scores."""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit import fetch as download
from cyclekit.errors import CyclekitError
from cyclekit.evaluation import fid as fidmod
from cyclekit.evaluation.fid import (
    FID_WEIGHTS_NAME,
    FID_WEIGHTS_URL,
    FIDInceptionV3,
    fid_from_features,
    frechet_distance,
    inception_features,
    kid,
    load_inception,
    mmd2_unbiased,
)
from cyclekit.evaluation.scores import (
    PSNR_CAP_DB,
    find_palette,
    l1,
    label_scores,
    looks_like_label_map,
    psnr,
    snap_to_palette,
    ssim,
)
from tests.helpers import import_or_skip


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


# --------------------------------------------------------------------------------------------- FID


def test_frechet_distance_one_dimensional_closed_form() -> None:
    # N(0, 1) vs N(1, 4): (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == pytest.approx(
        2.0, abs=1e-12
    )


def test_frechet_distance_commuting_covariances_closed_form() -> None:
    # Covariances sharing eigenvectors: tr sqrt(S1 S2) = sum sqrt(a_i b_i), so
    # FID = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(0)
    d = 6
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # same spectra in a rotated basis
    assert frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    linalg = import_or_skip("scipy.linalg", "pip install -e '.[dev]'")
    rng = np.random.default_rng(1)
    for d in (3, 16, 40):
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        covmean = linalg.sqrtm(s1 @ s2)
        expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)
        got = frechet_distance(mu1, s1, mu2, s2)
        assert got == pytest.approx(expected, rel=1e-8, abs=1e-8)
        assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-10)


def test_fid_from_features_self_zero_symmetric_and_singular() -> None:
    rng = np.random.default_rng(2)
    f1 = rng.normal(size=(12, 32))  # fewer samples than dimensions: singular covariance
    f2 = rng.normal(loc=0.5, size=(15, 32))
    assert fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-9)
    assert fid_from_features(f1, f2) == pytest.approx(fid_from_features(f2, f1), rel=1e-9)
    assert fid_from_features(f1, f2) > 5.0  # mean shift alone contributes 32 * 0.25 = 8 (minus sampling noise)


def test_fid_from_features_recovers_gaussian_closed_form() -> None:
    rng = np.random.default_rng(3)
    a, b = np.array([1.0, 2.0, 0.5]), np.array([4.0, 1.0, 0.5])
    mu2 = np.array([1.0, 0.0, -1.0])
    f1 = rng.normal(size=(40000, 3)) * np.sqrt(a)
    f2 = mu2 + rng.normal(size=(40000, 3)) * np.sqrt(b)
    expected = float((mu2**2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())  # 2 + 1.1716 = 3.17
    assert fid_from_features(f1, f2) == pytest.approx(expected, abs=0.1)


def test_fid_rejects_bad_features_in_one_line() -> None:
    with pytest.raises(CyclekitError) as exc:
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    assert "at least 2" in _one_line(exc)
    with pytest.raises(CyclekitError) as exc:
        fid_from_features(np.zeros((3, 4)), np.zeros((3, 5)))
    assert "(3, 5)" in _one_line(exc)
    bad = np.zeros((3, 4))
    bad[0, 0] = np.nan
    with pytest.raises(CyclekitError) as exc:
        fid_from_features(bad, np.zeros((3, 4)))
    assert "NaN" in _one_line(exc)


# --------------------------------------------------------------------------------------------- KID


def _mmd2_loop(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(u, v) = (u.v / d + 1)^3, written out pair by pair."""
    d = x.shape[1]

    def k(u: np.ndarray, v: np.ndarray) -> float:
        return (sum(float(p) * float(q) for p, q in zip(u, v, strict=True)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j)
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n))
    return sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2.0 * sxy / (m * n)


def test_mmd2_hand_computed() -> None:
    # d = 1, x = {0, 0}, y = {1, 1}: k(0,0) = 1, k(1,1) = 8, k(0,1) = 1 -> 1 + 8 - 2 * 1 = 7
    assert mmd2_unbiased(np.zeros((2, 1)), np.ones((2, 1))) == pytest.approx(7.0)


def test_kid_matches_independent_loop() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 5)), rng.normal(loc=0.3, size=(9, 5))
    expected = _mmd2_loop(x, y)
    assert mmd2_unbiased(x, y) == pytest.approx(expected, rel=1e-12)
    # Equal sizes, subset size >= N: every subset is a permutation of the full sets, and the
    # estimator does not depend on the order, so all subsets give the loop's value.
    y7 = y[:7]
    mean, std = kid(x, y7, subsets=5, subset_size=100, seed=0)
    assert mean == pytest.approx(_mmd2_loop(x, y7), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-10)


def test_kid_near_zero_for_same_distribution_and_positive_for_shift() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    shifted = rng.normal(loc=0.5, size=(300, 16))
    same_mean, same_std = kid(a, b, subsets=20, subset_size=100, seed=1)
    diff_mean, _ = kid(a, shifted, subsets=20, subset_size=100, seed=1)
    assert abs(same_mean) < 0.05
    assert diff_mean > 0.3 and diff_mean > 10 * (abs(same_mean) + same_std)
    assert kid(a, shifted, subsets=20, subset_size=100, seed=1) == (diff_mean, _)  # reproducible


def test_kid_caps_subset_size_and_checks_counts() -> None:
    rng = np.random.default_rng(6)
    mean, _ = kid(rng.normal(size=(10, 3)), rng.normal(size=(20, 3)), subsets=3, subset_size=1000)
    assert math.isfinite(mean)
    with pytest.raises(CyclekitError) as exc:
        kid(np.zeros((1, 3)), np.zeros((4, 3)))
    assert "KID" in _one_line(exc)


# ------------------------------------------------------------------------------- Inception plumbing

_STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
# Conv branches of torchvision's InceptionA..E (pytorch-fid's FIDInception* keep them unchanged).
_A = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool"]
_B = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
_C = ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3"] + [f"branch7x7dbl_{i}" for i in range(1, 6)]
_C += ["branch_pool"]
_D = ["branch3x3_1", "branch3x3_2"] + [f"branch7x7x3_{i}" for i in range(1, 5)]
_E = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2"]
_E += ["branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
_BLOCKS = {"Mixed_5b": _A, "Mixed_5c": _A, "Mixed_5d": _A, "Mixed_6a": _B, "Mixed_6b": _C, "Mixed_6c": _C}
_BLOCKS |= {"Mixed_6d": _C, "Mixed_6e": _C, "Mixed_7a": _D, "Mixed_7b": _E, "Mixed_7c": _E}


def _upstream_keys() -> set[str]:
    convs = _STEM + [f"{block}.{branch}" for block, branches in _BLOCKS.items() for branch in branches]
    leaves = ["conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"]
    return {f"{c}.{leaf}" for c in convs for leaf in leaves} | {"fc.weight", "fc.bias"}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised FID Inception saved like the real file (a plain state dict)."""
    torch.manual_seed(0)
    model = FIDInceptionV3()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("weights") / FID_WEIGHTS_NAME
    torch.save(model.state_dict(), path)
    return path


def test_network_keys_and_parameter_count_match_upstream() -> None:
    model = FIDInceptionV3()
    state = model.state_dict()
    assert set(state) == _upstream_keys() and len(state) == 94 * 6 + 2
    assert tuple(state["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(state["Mixed_6e.branch7x7_2.conv.weight"].shape) == (192, 192, 1, 7)
    assert tuple(state["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert tuple(state["fc.weight"].shape) == (1008, 2048)
    assert model.Mixed_5b.branch1x1.bn.eps == 0.001
    # torchvision publishes 27,161,264 parameters for inception_v3 (1000 classes, with AuxLogits).
    # pytorch-fid's network drops AuxLogits and has a 1008-way fc.
    aux = (768 * 128 + 2 * 128) + (128 * 768 * 5 * 5 + 2 * 768) + (768 * 1000 + 1000)
    expected = 27_161_264 - aux + 8 * (2048 + 1)
    assert sum(p.numel() for p in model.parameters()) == expected == 23_850_960


def test_fid_blocks_pool_like_tensorflow() -> None:
    model = FIDInceptionV3()
    assert not model.Mixed_7b.max_pool and model.Mixed_7c.max_pool  # FIDInceptionE_1 / FIDInceptionE_2
    ones = torch.ones(1, 1, 4, 4)
    assert torch.equal(fidmod._tf_avg_pool(ones), ones)  # padding is not counted (count_include_pad=False)


def test_load_inception_features_shape_and_determinism(weights_file: Path) -> None:
    model = load_inception(weights_file)
    saved = torch.load(weights_file, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 75, 75, generator=g) * 2 - 1 for _ in range(2)]
    gray = torch.rand(1, 1, 60, 80, generator=g) * 2 - 1
    feats = inception_features(model, [*images, gray], batch_size=2)
    assert feats.shape == (3, 2048) and feats.dtype == np.float64 and np.isfinite(feats).all()
    again = inception_features(model, [torch.stack(images), gray], batch_size=3)
    np.testing.assert_allclose(again, feats, rtol=1e-4, atol=1e-6)
    rgb = inception_features(model, [gray.expand(1, 3, 60, 80)], batch_size=1)
    np.testing.assert_allclose(rgb[0], feats[2], rtol=1e-4, atol=1e-6)
    assert inception_features(model, [], batch_size=4).shape == (0, 2048)


def test_load_inception_accepts_file_without_num_batches_tracked(weights_file: Path, tmp_path: Path) -> None:
    state = torch.load(weights_file, weights_only=True)
    old = tmp_path / "old.pth"
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, old)
    model = load_inception(old)
    assert torch.equal(model.fc.weight, state["fc.weight"])


def test_load_inception_bad_files_give_one_line(weights_file: Path, tmp_path: Path) -> None:
    state = torch.load(weights_file, weights_only=True)
    renamed = dict(state)
    renamed["Mixed_5b.branch1x1.conv.weights"] = renamed.pop("Mixed_5b.branch1x1.conv.weight")
    bad = tmp_path / "renamed.pth"
    torch.save(renamed, bad)
    with pytest.raises(CyclekitError) as exc:
        load_inception(bad)
    text = _one_line(exc)
    assert str(bad) in text and "'Mixed_5b.branch1x1.conv.weight'" in text and "missing" in text

    extra = dict(state, **{"AuxLogits.fc.weight": torch.zeros(1)})
    torch.save(extra, bad)
    with pytest.raises(CyclekitError) as exc:
        load_inception(bad)
    assert "'AuxLogits.fc.weight'" in _one_line(exc)

    torch.save(dict(state, **{"fc.weight": torch.zeros(1000, 2048)}), bad)
    with pytest.raises(CyclekitError) as exc:
        load_inception(bad)
    text = _one_line(exc)
    assert "'fc.weight'" in text and "(1000, 2048)" in text

    text_file = tmp_path / "notes.pth"
    text_file.write_text("<html>not weights</html>\n" * 3)
    with pytest.raises(CyclekitError) as exc:
        load_inception(text_file)
    assert str(text_file) in _one_line(exc)

    with pytest.raises(CyclekitError) as exc:
        load_inception(tmp_path / "absent.pth")
    assert "absent.pth" in _one_line(exc)


def test_missing_weights_offline_names_url_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dest: os.PathLike[str], **kwargs: object) -> Path:
        raise download.DownloadError(url, Path(dest), "network is unreachable")

    monkeypatch.setattr(download, "download_file", offline)
    target = tmp_path / "cache" / "weights" / FID_WEIGHTS_NAME
    for kwargs in ({"download": True}, {"download": False}):
        with pytest.raises(CyclekitError) as exc:
            load_inception(None, cache_dir=tmp_path / "cache", **kwargs)
        text = _one_line(exc)
        assert FID_WEIGHTS_URL in text and str(target) in text and "--inception PATH" in text
    assert not target.exists()


def test_download_checks_sha256_prefix(weights_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(url: str, dest: os.PathLike[str], **kwargs: object) -> Path:
        assert url == FID_WEIGHTS_URL
        Path(dest).write_bytes(weights_file.read_bytes())
        return Path(dest)

    monkeypatch.setattr(download, "download_file", fake_download)
    target = tmp_path / "weights" / FID_WEIGHTS_NAME
    # Random weights do not hash to 6726825d...: refused and deleted.
    with pytest.raises(CyclekitError) as exc:
        load_inception(cache_dir=tmp_path)
    assert "6726825d" in _one_line(exc)
    assert not target.exists() and not list(target.parent.glob("*.download"))
    # With the prefix of this file the download is accepted, moved into the cache and loaded.
    prefix = hashlib.sha256(weights_file.read_bytes()).hexdigest()[:8]
    monkeypatch.setattr(fidmod, "FID_WEIGHTS_SHA256_PREFIX", prefix)
    model = load_inception(cache_dir=tmp_path)
    assert target.is_file() and isinstance(model, FIDInceptionV3)


# -------------------------------------------------------------------------------- SSIM / L1 / PSNR


def _const(value01: float, shape: tuple[int, ...] = (3, 16, 16)) -> torch.Tensor:
    return torch.full(shape, value01 * 2 - 1, dtype=torch.float64)


def test_l1_and_psnr_known_answers() -> None:
    black, white = _const(0.0), _const(1.0)
    assert l1(black, white) == pytest.approx(1.0)
    assert psnr(black, white) == pytest.approx(0.0)
    a = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    b = a + 0.2  # 0.1 in [0, 1] units: MSE 0.01 -> 20 dB
    assert l1(a, b) == pytest.approx(0.1, rel=1e-6)
    assert psnr(a, b) == pytest.approx(20.0, rel=1e-5)
    assert psnr(a, a) == PSNR_CAP_DB
    with pytest.raises(CyclekitError) as exc:
        l1(a, b[:, :, :4])
    assert "shape" in _one_line(exc)


def test_ssim_known_answers() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(3, 24, 24))
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # Constant images: variances and covariance are 0, so SSIM = (2 m1 m2 + C1) / (m1^2 + m2^2 + C1).
    m1, m2, c1 = 0.2, 0.7, 0.01**2
    expected = (2 * m1 * m2 + c1) / (m1**2 + m2**2 + c1)
    assert ssim(_const(m1), _const(m2)) == pytest.approx(expected, rel=1e-9)
    y = rng.uniform(-1, 1, size=(3, 24, 24))
    assert ssim(x, y) == pytest.approx(ssim(y, x))
    assert ssim(x, y) < 0.2
    with pytest.raises(CyclekitError) as exc:
        ssim(x[:, :8, :8], y[:, :8, :8])
    assert "11x11" in _one_line(exc)


def test_ssim_matches_scikit_image() -> None:
    metrics = import_or_skip("skimage.metrics", "pip install -e '.[dev]'")
    rng = np.random.default_rng(8)
    base = rng.uniform(-1, 1, size=(2, 3, 20, 27))
    noisy = np.clip(base + rng.normal(0, 0.3, size=base.shape), -1, 1)
    refs = [
        metrics.structural_similarity(
            (base[i] + 1) / 2,
            (noisy[i] + 1) / 2,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
        )
        for i in range(2)
    ]
    assert ssim(base[0], noisy[0]) == pytest.approx(refs[0], abs=1e-10)
    assert ssim(torch.from_numpy(base), torch.from_numpy(noisy)) == pytest.approx(np.mean(refs), abs=1e-10)


# ------------------------------------------------------------------------------------- label maps

_COLOURS = np.array([[200, 30, 40], [30, 160, 60], [40, 60, 210]], dtype=np.float64)


def _to_model(rgb_u8: np.ndarray) -> np.ndarray:
    return rgb_u8.transpose(2, 0, 1).astype(np.float64) / 127.5 - 1


def _jpeg(rgb_u8: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb_u8).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _label_image(seed: int, size: int = 128) -> np.ndarray:
    """Three classes (background, a disc, a slanted band), as 8-bit RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = rng.uniform(32, 96), rng.uniform(32, 96), rng.uniform(20, 30)
    labels = np.zeros((size, size), dtype=np.int64)
    labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 1
    labels[np.abs(yy - 0.6 * xx - rng.uniform(0, 40)) < 12] = 2
    return _COLOURS[labels].astype(np.uint8)


def test_find_palette_ignores_jpeg_noise() -> None:
    rng = np.random.default_rng(9)
    jpegs = [_jpeg(_label_image(seed), quality=75) for seed in range(4)]
    noisy = [_to_model(np.clip(j + rng.normal(0, 2, j.shape), 0, 255).astype(np.uint8)) for j in jpegs]
    for images in ([_to_model(j) for j in jpegs], noisy):
        palette = find_palette(images)
        assert palette.shape == (3, 3) and palette.dtype == np.uint8
        dist = np.linalg.norm(palette[:, None, :].astype(float) - _COLOURS[None], axis=2)
        assert sorted(dist.argmin(axis=1).tolist()) == [0, 1, 2] and dist.min(axis=1).max() < 8
    assert looks_like_label_map([_to_model(j) for j in jpegs])
    assert looks_like_label_map(torch.from_numpy(np.stack([_to_model(_label_image(9))])))  # lossless PNG-like
    # Every JPEG pixel snaps to the class it was drawn with, except along borders.
    clean = _label_image(0)
    snapped = palette[snap_to_palette(noisy[0], palette)]
    assert (np.linalg.norm(snapped.astype(float) - clean, axis=2) < 8).mean() > 0.95


def test_photos_do_not_look_like_label_maps() -> None:
    rng = np.random.default_rng(10)
    smooth = np.linspace(0, 255, 64)[None, :, None] * rng.uniform(0.2, 1.0, size=(1, 1, 3))
    photos = [_to_model(np.clip(smooth + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)) for _ in range(3)]
    assert not looks_like_label_map(photos)
    walk = np.clip(128 + np.cumsum(rng.normal(0, 3, (64, 64)), axis=1), 0, 255)
    gray = np.repeat(walk[..., None], 3, axis=2).astype(np.uint8)  # a smooth grayscale "photo"
    assert not looks_like_label_map([_to_model(gray)])


def test_label_scores_known_prediction() -> None:
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], dtype=np.uint8)
    target = np.zeros((4, 4), dtype=np.int64)  # class 0: 8 pixels
    target[2, :] = 1  # class 1: 4 pixels
    target[3, :] = 2  # class 2: 4 pixels; class 3 never occurs in the targets
    pred = target.copy()
    pred[2, :2] = 0  # half of class 1 predicted as class 0
    pred[3, 0] = 3  # one class-2 pixel predicted as the absent class 3
    rng = np.random.default_rng(11)
    pred_rgb = np.clip(palette[pred].astype(float) + rng.normal(0, 10, (4, 4, 3)), 0, 255).astype(np.uint8)
    scores = label_scores([_to_model(pred_rgb)], torch.from_numpy(_to_model(palette[target]))[None], palette)
    # confusion rows (target) x cols (pred): [8 0 0 0], [2 2 0 0], [0 0 3 1], [0 0 0 0]
    assert scores.pixel_accuracy == pytest.approx(13 / 16)
    assert scores.class_accuracy == pytest.approx([1.0, 0.5, 0.75, None])
    assert scores.mean_class_accuracy == pytest.approx((1.0 + 0.5 + 0.75) / 3)
    # IoU: 8 / (8 + 10 - 8), 2 / (4 + 2 - 2), 3 / (4 + 3 - 3); class 3 absent from targets: excluded
    assert scores.class_iou == pytest.approx([0.8, 0.5, 0.75, None])
    assert scores.mean_iou == pytest.approx((0.8 + 0.5 + 0.75) / 3)
    assert scores.class_pixels == [8, 4, 4, 0]
    assert scores.as_dict()["palette"][3] == [255, 255, 0]
    with pytest.raises(CyclekitError) as exc:
        label_scores([_to_model(pred_rgb)] * 2, [_to_model(palette[target])], palette)
    assert "one target per prediction" in _one_line(exc)


def test_blurred_low_quality_jpeg_label_maps_still_look_like_label_maps() -> None:
    """facades-like labels: JPEG quality 30, then shrunk 4x with the bicubic filter of the eval
    transform, so every border blurs; photos scaled the same way stay photos."""

    def shrink(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(rgb).resize((64, 64), Image.Resampling.BICUBIC))

    labels = [_to_model(shrink(_jpeg(_label_image(seed, 256), quality=30))) for seed in range(6)]
    assert looks_like_label_map(labels)
    rng = np.random.default_rng(11)
    smooth = np.linspace(0, 255, 256)[None, :, None] * rng.uniform(0.2, 1.0, size=(1, 1, 3))
    photos = [
        _to_model(shrink(_jpeg(np.clip(smooth + rng.normal(0, 25, (256, 256, 3)), 0, 255).astype(np.uint8), 30)))
        for _ in range(6)
    ]
    assert not looks_like_label_map(photos)
