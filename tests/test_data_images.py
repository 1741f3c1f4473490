"""Image decoding (every PIL mode, EXIF, broken files), listing, tensors and grids."""

from __future__ import annotations

import io
import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit.data.images import (
    IMAGE_EXTENSIONS,
    image_to_tensor,
    list_images,
    load_image,
    load_image_with_alpha,
    make_grid,
    probe_image,
    save_grid,
    tensor_to_image,
)
from cyclekit.errors import DataError


def _rgb(w: int = 40, h: int = 32, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), mode="RGB")


def _px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    v = img.getpixel(xy)
    return v if isinstance(v, tuple) else (v,)


# ---------------------------------------------------------------------------------------------
# modes


def test_mode_1(tmp_path: Path) -> None:
    img = Image.new("1", (40, 30), 0)
    img.paste(1, (0, 0, 20, 30))
    path = tmp_path / "bilevel.png"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 30)
    assert _px(out, (5, 5)) == (255, 255, 255) and _px(out, (30, 5)) == (0, 0, 0)
    assert load_image(path, channels=1).mode == "L"


def test_mode_l_to_rgb_and_l(tmp_path: Path) -> None:
    arr = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (16, 1))
    path = tmp_path / "grey.png"
    Image.fromarray(arr, mode="L").save(path)
    rgb = np.asarray(load_image(path))
    assert rgb.shape == (16, 32, 3)
    assert (rgb[:, :, 0] == arr).all() and (rgb[:, :, 1] == arr).all() and (rgb[:, :, 2] == arr).all()
    grey = load_image(path, channels=1)
    assert grey.mode == "L" and (np.asarray(grey) == arr).all()


def test_mode_la_composited_over_white(tmp_path: Path) -> None:
    lum = np.zeros((20, 40), np.uint8)  # black everywhere ...
    alpha = np.zeros((20, 40), np.uint8)
    alpha[:, 20:] = 255  # ... but only the right half is opaque
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(lum), Image.fromarray(alpha)]).save(path)
    out = load_image(path, channels=1)
    assert out.mode == "L"
    assert _px(out, (5, 5)) == (255,) and _px(out, (30, 5)) == (0,)


def test_trns_colour_key_on_l_and_rgb(tmp_path: Path) -> None:
    grey = np.zeros((8, 8), np.uint8)
    grey[:, 4:] = 100
    Image.fromarray(grey).save(tmp_path / "l.png", transparency=0)  # black = transparent
    assert np.asarray(load_image(tmp_path / "l.png", channels=1))[0].tolist() == [255] * 4 + [100] * 4
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "rgb.png", transparency=(0, 0, 0))
    assert np.asarray(load_image(tmp_path / "rgb.png"))[0].tolist() == [[255] * 3] * 4 + [[10, 20, 30]] * 4


def test_mode_p_without_transparency(tmp_path: Path) -> None:
    src = Image.new("RGB", (32, 16), (200, 30, 40))
    src.paste((10, 20, 250), (16, 0, 32, 16))
    pal = src.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    path = tmp_path / "palette.png"
    pal.save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert _px(out, (2, 2)) == (200, 30, 40) and _px(out, (20, 2)) == (10, 20, 250)


def test_mode_p_with_transparency_hides_palette_colour(tmp_path: Path) -> None:
    pal = Image.new("P", (32, 16), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))  # index 0 red, index 1 blue
    pal.paste(1, (16, 0, 32, 16))
    path = tmp_path / "palette_t.png"
    pal.save(path, transparency=0)  # red is the transparent colour
    assert Image.open(path).info.get("transparency") == 0
    out = load_image(path)
    assert _px(out, (2, 2)) == (255, 255, 255)  # not red
    assert _px(out, (20, 2)) == (0, 0, 255)
    colour, alpha = load_image_with_alpha(path)
    assert alpha is not None and _px(alpha, (2, 2)) == (0,) and _px(alpha, (20, 2)) == (255,)


def test_mode_rgba_composited_over_white(tmp_path: Path) -> None:
    arr = np.zeros((16, 48, 4), np.uint8)
    arr[:, :, :3] = (0, 255, 0)  # garbage green under transparent pixels
    arr[:, 16:32] = (200, 10, 10, 255)
    arr[:, 32:] = (0, 0, 0, 128)
    path = tmp_path / "rgba.png"
    Image.fromarray(arr, mode="RGBA").save(path)
    out = load_image(path)
    assert out.mode == "RGB"
    assert _px(out, (2, 2)) == (255, 255, 255)
    assert _px(out, (20, 2)) == (200, 10, 10)
    half = _px(out, (40, 2))
    assert all(abs(c - 127) <= 2 for c in half)  # 50% black over white

    colour, alpha = load_image_with_alpha(path)
    assert colour.mode == "RGB" and alpha is not None and alpha.mode == "L"
    assert _px(alpha, (2, 2)) == (0,) and _px(alpha, (20, 2)) == (255,) and _px(alpha, (40, 2)) == (128,)
    assert _px(colour, (2, 2)) == (255, 255, 255)  # garbage under alpha=0 replaced
    assert _px(colour, (40, 2)) == (0, 0, 0)  # semi-transparent colour kept as stored


def test_load_with_alpha_opaque_image_has_no_alpha(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    _rgb().save(path)
    colour, alpha = load_image_with_alpha(path)
    assert alpha is None and colour.mode == "RGB"


def test_mode_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    r, g, b = _px(load_image(path), (10, 10))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_mode_16bit_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    arr = np.linspace(0, 65535, 64 * 32).round().astype(np.uint16).reshape(32, 64)
    path = tmp_path / f"deep.{fmt}"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode == "I;16"
    out = np.asarray(load_image(path, channels=1)).astype(int)
    expected = np.rint(arr.astype(np.float64) * 255 / 65535).astype(int)
    assert np.abs(out - expected).max() <= 1
    assert out.min() == 0 and out.max() == 255
    assert (out == 255).mean() < 0.02  # clipping would make ~99% of pixels white
    assert load_image(path).mode == "RGB"


def test_mode_16bit_big_endian(tmp_path: Path) -> None:
    arr = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    img = Image.frombytes("I;16B", (32, 32), arr.astype(">u2").tobytes())
    path = tmp_path / "deep_be.tif"
    img.save(path)
    assert Image.open(path).mode == "I;16B"
    out = np.asarray(load_image(path, channels=1)).astype(int)
    assert np.abs(out - np.rint(arr.astype(np.float64) * 255 / 65535)).max() <= 1


def test_mode_32bit_int(tmp_path: Path) -> None:
    arr = np.linspace(0, 65535, 32 * 32).round().astype(np.int32).reshape(32, 32)
    path = tmp_path / "int32.tif"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode == "I"
    out = np.asarray(load_image(path, channels=1)).astype(int)
    assert out.min() == 0 and out.max() == 255 and abs(int(out[16, 0]) - 127) <= 2


def test_mode_float(tmp_path: Path) -> None:
    arr = np.linspace(0.0, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    path = tmp_path / "float.tif"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode == "F"
    out = np.asarray(load_image(path, channels=1)).astype(int)
    assert out.min() == 0 and out.max() == 255 and abs(int(out[16, 0]) - 127) <= 2


def test_mode_ycbcr(tmp_path: Path) -> None:
    path = tmp_path / "ycbcr.tif"
    Image.new("RGB", (16, 16), (10, 200, 30)).convert("YCbCr").save(path)
    assert Image.open(path).mode == "YCbCr"
    r, g, b = _px(load_image(path), (4, 4))
    assert abs(r - 10) <= 3 and abs(g - 200) <= 3 and abs(b - 30) <= 3


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def test_exif_orientation_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    _rgb(40, 20).save(path, exif=_exif(6))
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_exif_orientation_applied_to_alpha_too(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 4), np.uint8)
    arr[:, :, 3] = 255
    arr[:5, :, 3] = 0  # transparent top rows
    path = tmp_path / "rotated.png"
    Image.fromarray(arr, mode="RGBA").save(path, exif=_exif(6))
    colour, alpha = load_image_with_alpha(path)
    assert colour.size == (20, 40) and alpha is not None and alpha.size == (20, 40)
    # Orientation 6 = rotate 90 degrees clockwise: the top rows become the right columns.
    assert _px(alpha, (19, 20)) == (0,) and _px(alpha, (0, 20)) == (255,)


# ---------------------------------------------------------------------------------------------
# broken files


def _truncated_jpeg(path: Path) -> None:
    buf = io.BytesIO()
    _rgb(64, 64).save(buf, format="JPEG")
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty"),
        ("notes.jpg", lambda p: p.write_text("this is not an image\n"), "not a recognised image"),
        ("cut off.jpg", _truncated_jpeg, "truncated"),
    ],
)
def test_broken_files(tmp_path: Path, name: str, make, reason: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(DataError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and reason in message and "\n" not in message
    with pytest.raises(DataError, match="truncated|empty|not a recognised"):
        load_image_with_alpha(path)
    probed = probe_image(path)
    assert probed is not None and reason in probed and "\n" not in probed


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "nope.png")
    assert probe_image(tmp_path / "nope.png") is not None


def test_probe_good_files(tmp_path: Path) -> None:
    for ext in ("jpg", "png", "webp"):
        path = tmp_path / f"ok.{ext}"
        _rgb().save(path)
        assert probe_image(path) is None


# ---------------------------------------------------------------------------------------------
# listing


def test_list_images_extensions_spaces_and_sorting(tmp_path: Path) -> None:
    expected = []
    for i, ext in enumerate(IMAGE_EXTENSIONS):
        path = tmp_path / f"img {i} with space{ext}"
        _rgb(8, 8).save(path)
        expected.append(path)
    upper = tmp_path / "UPPER.PNG"
    _rgb(8, 8).save(upper, format="PNG")
    expected.append(upper)
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    (tmp_path / ".checkpoints").mkdir()
    _rgb(8, 8).save(tmp_path / ".checkpoints" / "hidden.png")
    nested = tmp_path / "sub" / "deep.png"
    nested.parent.mkdir()
    _rgb(8, 8).save(nested)

    found = list_images(tmp_path)
    assert found == sorted(expected)
    for path in found:
        assert load_image(path).size == (8, 8)
    assert list_images(tmp_path, recursive=True) == sorted([*expected, nested])


def test_list_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"folder not found: .*missing"):
        list_images(tmp_path / "missing")
    file = tmp_path / "file.png"
    _rgb(8, 8).save(file)
    with pytest.raises(DataError, match="file.png"):
        list_images(file)


# ---------------------------------------------------------------------------------------------
# tensors and grids


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_tensor_round_trip_exact(mode: str) -> None:
    rng = np.random.default_rng(3)
    shape = (17, 23, 3) if mode == "RGB" else (17, 23)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    arr.flat[0], arr.flat[1] = 0, 255
    img = Image.fromarray(arr, mode=mode)
    t = image_to_tensor(img)
    assert t.dtype == torch.float32
    assert t.shape == ((3 if mode == "RGB" else 1), 17, 23)
    assert float(t.min()) == -1.0 and float(t.max()) == 1.0
    back = tensor_to_image(t)
    assert back.mode == mode and (np.asarray(back) == arr).all()
    assert (np.asarray(tensor_to_image(t.unsqueeze(0))) == arr).all()


def test_tensor_to_image_clamps() -> None:
    t = torch.tensor([[[-3.0, 3.0]]]).expand(3, 1, 2)
    assert np.asarray(tensor_to_image(t))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_save_grid_rows(tmp_path: Path) -> None:
    rows = [torch.rand(2, 3, 16, 16) * 2 - 1 for _ in range(3)]
    path = save_grid(rows, tmp_path / "out" / "grid.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.size == (2 * (16 + 2) + 2, 3 * (16 + 2) + 2)


def test_save_grid_single_tensor_nrow_and_grey(tmp_path: Path) -> None:
    batch = torch.zeros(5, 1, 8, 8)
    path = save_grid(batch, tmp_path / "grid.png", nrow=4)
    with Image.open(path) as img:
        assert img.size == (4 * 10 + 2, 2 * 10 + 2)
    grid = make_grid([torch.zeros(1, 8, 8), torch.zeros(3, 8, 8)])
    assert grid.shape == (3, 12, 22)
    # Padding is black, image content (0 -> mid grey) is placed at offset 2.
    assert float(grid[0, 0, 0]) == -1.0 and float(grid[0, 2, 2]) == 0.0
