"""Translator API, tiling, the `translate` command, the torch-free ONNX path and the standalone script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cyclekit.errors import CyclekitError
from cyclekit.export.onnx import export_bundle, parity_inputs
from cyclekit.inference import Translator
from cyclekit.inference.tiling import translate_tiled
from tests.bundles import REPO, env_without_torch, make_bundle, photo, torch_blocker
from tests.helpers import cli


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("run") / "bundle")


@pytest.fixture(scope="module")
def translator(bundle: Path) -> Translator:
    return Translator.load(bundle, device="cpu")


@pytest.fixture(scope="module")
def onnx_model(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    (result,) = export_bundle(bundle, "AtoB", out_dir=tmp_path_factory.mktemp("onnx"))
    return result.path


@pytest.fixture(scope="module")
def blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_blocker(tmp_path_factory.mktemp("blocker"))


def reference(translator: Translator, x: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
    """Translate a (1, C, H, W) tensor by hand: reflect-pad bottom/right to a multiple of 4, run, crop."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    with torch.no_grad():
        return translator.backend.network(direction)(padded)[:, :, :h, :w]


def to_uint8(y: torch.Tensor) -> np.ndarray:
    return ((y[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------
# API


def test_pil_array_tensor_keep_size_mode_and_values(translator: Translator) -> None:
    img = photo(37, 50)  # neither side a multiple of 4
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = to_uint8(reference(translator, x))

    out = translator(img, to="B")
    assert out.mode == "RGB" and out.size == (50, 37)
    # Same maths as the hand-made reference; only float32 rounding may move a value by one level.
    assert np.abs(np.asarray(out).astype(int) - expected).max() <= 1

    arr = translator(np.asarray(img), to="zebra")  # domain names work like letters
    assert arr.shape == (37, 50, 3) and arr.dtype == np.uint8
    assert np.array_equal(arr, np.asarray(out))

    t = translator(x[0], to="B")
    assert t.shape == (3, 37, 50) and t.dtype == torch.float32 and float(t.abs().max()) <= 1
    assert torch.allclose(t, reference(translator, x)[0], atol=1e-5)
    assert translator(x, to="B").shape == (1, 3, 37, 50)


def test_grey_rgba_and_arrays_come_back_in_kind(translator: Translator) -> None:
    grey = photo(30, 41, seed=1, mode="L")
    out = translator(grey)
    assert out.mode == "L" and out.size == (41, 30)
    # Grey into an RGB model: translated as RGB (L replicated), brought back to grey by luma.
    rgb_out = np.asarray(translator(grey.convert("RGB"))).astype(np.float32)
    luma = rgb_out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert np.abs(np.asarray(out) - luma).max() <= 1.0

    rgba = photo(33, 29, seed=2).convert("RGBA")
    alpha = Image.fromarray(np.random.default_rng(0).integers(1, 256, (33, 29), dtype=np.uint8))
    rgba.putalpha(alpha)
    out = translator(rgba)
    assert out.mode == "RGBA" and out.size == (29, 33)
    assert np.array_equal(np.asarray(out)[:, :, 3], np.asarray(alpha))  # alpha carried over unchanged

    assert translator(np.asarray(grey)).shape == (30, 41)
    assert translator(np.asarray(grey)[:, :, None]).shape == (30, 41, 1)
    rgba_arr = translator(np.asarray(rgba))
    assert rgba_arr.shape == (33, 29, 4) and np.array_equal(rgba_arr[:, :, 3], np.asarray(alpha))
    assert translator(x := torch.zeros(2, 1, 20, 24)).shape == x.shape  # grey tensors stay grey


def test_batches_match_single_images(translator: Translator) -> None:
    images = [photo(36, 40, seed=s) for s in range(3)] + [photo(21, 17, seed=9)]
    many = translator.translate_many(images, "B", batch_size=2)
    for img, out in zip(images, many, strict=True):
        assert out.size == img.size
        # Instance norm is per sample: batching must not change the result beyond float rounding.
        assert np.abs(np.asarray(out).astype(int) - np.asarray(translator(img)).astype(int)).max() <= 1
    batch = np.stack([np.asarray(i) for i in images[:3]])
    assert translator(batch).shape == batch.shape


def test_directions_and_bad_target(translator: Translator) -> None:
    x = torch.from_numpy(parity_inputs(2, 3, 32, 32)[1:])
    assert torch.allclose(translator(x, to="horse"), reference(translator, x, "BtoA"), atol=1e-5)
    assert not torch.allclose(translator(x, to="A"), translator(x, to="B"), atol=1e-2)
    with pytest.raises(CyclekitError, match=r"'C'.*A \(horse\), B \(zebra\)"):
        translator(x, to="C")


def test_one_channel_model_takes_rgb(tmp_path: Path) -> None:
    gray = Translator.load(make_bundle(tmp_path / "gray", channels=1), device="cpu")
    out = gray(photo(26, 31))
    assert out.mode == "L" and out.size == (31, 26)


def test_onnx_translator_matches_torch(translator: Translator, onnx_model: Path) -> None:
    onnx_t = Translator.load(onnx_model, device="cpu")
    assert onnx_t.name == "tiny" and onnx_t.targets == ["B"]
    img = photo(45, 38, seed=3)
    assert np.abs(np.asarray(onnx_t(img)).astype(int) - np.asarray(translator(img)).astype(int)).max() <= 1
    with pytest.raises(
        CyclekitError, match=r"translates AtoB only \(horse -> zebra\); it cannot translate to A: use --to B"
    ):
        onnx_t(img, to="A")
    with pytest.raises(CyclekitError, match="PyTorch backend"):
        onnx_t(img, tile=64, overlap=16)


# --------------------------------------------------------------------------------------------
# Tiling


def test_tiled_matches_untiled_and_shared_stats_matter(translator: Translator) -> None:
    net = translator.backend.network("AtoB")
    x = torch.from_numpy(parity_inputs(2, 3, 160, 160, seed=1)[1:])
    # Tiles of 96 overlapping by 32: starts 0 and 64 on both axes, overlap band [64, 96).
    seam = torch.zeros(160, 160, dtype=torch.bool)
    seam[64:96] = True
    seam[:, 64:96] = True
    with torch.no_grad():
        full = net(x)
        shared = (translate_tiled(net, x, 96, 32, 4, stats_size=160) - full).abs()[0].amax(0)
        own = (translate_tiled(net, x, 96, 32, 4, shared_stats=False) - full).abs()[0].amax(0)
    # With statistics from the full-size image, a pixel more than the receptive field (~26 px for
    # this net, measured) inside its tile sees exactly the full-image computation: outside the
    # overlap bands (>= 32 px from any inner tile edge) only float32 rounding remains (measured 3e-6).
    assert shared[~seam].max() < 1e-4
    # In the bands the truncated receptive field remains, weighted down by the linear blend.
    # Measured over 4 images: band mean 0.027-0.041 and max 0.28-0.34 (tanh units, [-1, 1]);
    # bounds with ~2x margin. A random-init net reacts strongly to borders; a 9-block ngf-64 net
    # measured 0.01 at 32 px from a tile edge, i.e. ~1 grey level with the default overlap 64.
    assert shared[seam].mean() < 0.08 and shared[seam].max() < 0.6
    # Each tile with its own statistics: wrong everywhere, not only at seams (measured 18x worse).
    assert own[~seam].mean() > 0.1
    assert own.mean() > 5 * shared.mean()


def test_tiled_api_keeps_size(translator: Translator) -> None:
    img = photo(130, 101, seed=4)  # odd sizes: padded to 132x104, tiled, cropped back
    out = translator(img, tile=64, overlap=16)
    assert out.size == img.size and out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - np.asarray(translator(img)).astype(int)).mean() < 40
    with pytest.raises(CyclekitError, match="multiple of 4"):
        translator(img, tile=66)
    with pytest.raises(CyclekitError, match="overlap"):
        translator(img, tile=64, overlap=40)


MEMORY_SCRIPT = r"""
import json, sys
import numpy as np
from PIL import Image
from cyclekit.inference import Translator

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

t = Translator.load(sys.argv[1], device="cpu")
t(Image.new("RGB", (64, 64)), tile=64, overlap=16)  # load the weights, warm up the allocator
h, w = 1600, 2400
arr = np.empty((h, w, 3), np.uint8)
arr[..., 0] = (np.arange(w) * 255 // w).astype(np.uint8)[None, :]
arr[..., 1] = (np.arange(h) * 255 // h).astype(np.uint8)[:, None]
arr[..., 2] = np.random.default_rng(0).integers(0, 256, (h, w), dtype=np.uint8)
img = Image.fromarray(arr)
del arr
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
out = t(img, tile=256, overlap=32)
print(json.dumps({"growth": status("VmHWM") - before, "size": list(out.size)}))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc peak-RSS reset")
def test_tiled_peak_memory_is_bounded(tmp_path: Path) -> None:
    ngf = 16
    folder = make_bundle(tmp_path / "b16", ngf=ngf, n_blocks=1)
    # One thread: the test machine has 2 cores shared with other work, where OpenMP threads
    # spin-waiting on each other make small tiles ~7x slower.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(folder)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["size"] == [2400, 1600]
    # One pass holds several full-resolution ngf-channel float32 maps at once (a conv's input
    # and output, plus norm/ReLU outputs): at least 3 x 246 MB here (measured: 908 MB).
    one_pass = 3 * ngf * 1600 * 2400 * 4
    # Tiled: float32 input and output canvases (46 MB each), the blend weights (15 MB), uint8
    # copies, and one 256 px tile's activations; measured 170 MB.
    assert result["growth"] < one_pass / 2, f"peak grew {result['growth'] / 2**20:.0f} MB"


# --------------------------------------------------------------------------------------------
# CLI


def write_inputs(folder: Path) -> dict[str, Path]:
    """Odd sizes, an EXIF-rotated JPEG, grey and RGBA images, and a non-image with an image name."""
    (folder / "sub").mkdir(parents=True)
    paths = {
        "odd": folder / "odd.png",
        "exif": folder / "sub" / "phone.jpg",
        "grey": folder / "grey.png",
        "rgba": folder / "rgba.png",
        "bad": folder / "broken.jpg",
    }
    photo(37, 50).save(paths["odd"])
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: stored 40 wide x 24 high, shown rotated to 24 x 40
    photo(24, 40, seed=5).save(paths["exif"], exif=exif, quality=95)
    photo(30, 22, seed=6, mode="L").save(paths["grey"])
    rgba = photo(28, 36, seed=7).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.arange(36, dtype=np.uint8) * 7, (28, 1))))
    rgba.save(paths["rgba"])
    paths["bad"].write_text("this is not a JPEG")
    return paths


def test_cli_translate_folder(tmp_path: Path, bundle: Path) -> None:
    paths = write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, stderr = cli(
        "translate", str(tmp_path / "in"), "--recursive", "--model", str(bundle), "-o", str(out), "--batch-size", "2"
    )
    assert code == 1  # one file failed ...
    assert "broken.jpg" in stderr and stderr.count("\n") == 1
    assert "translated 4 image(s)" in stdout and "1 failed" in stdout and "images/s" in stdout
    # ... and every good one was still written, sub-folders kept, at its original (displayed) size.
    assert Image.open(out / "odd.png").size == (50, 37)
    exif_out = Image.open(out / "sub" / "phone.png")
    assert exif_out.size == (24, 40) and exif_out.mode == "RGB"
    assert Image.open(out / "grey.png").mode == "L" and Image.open(out / "grey.png").size == (22, 30)
    rgba_out = Image.open(out / "rgba.png")
    assert rgba_out.mode == "RGBA" and rgba_out.size == (36, 28)
    assert np.array_equal(np.asarray(rgba_out)[:, :, 3], np.asarray(Image.open(paths["rgba"]))[:, :, 3])
    assert not (out / "broken.png").exists()


def test_cli_translate_glob_side_by_side_and_default_output(
    tmp_path: Path, bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    make_bundle(tmp_path / "runs" / "tiny" / "bundle")
    photo(20, 28).save(tmp_path / "a.png")
    photo(20, 28, seed=1).save(tmp_path / "b.png")
    # The pattern reaches the program unexpanded (as from a shell that does not glob), no --model.
    code, stdout, stderr = cli("translate", "*.png", "--side-by-side")
    assert code == 0, stderr
    out = Path("results/tiny_to_zebra")
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert Image.open(out / "a.png").size == (56, 20)  # input | output

    (tmp_path / "runs" / "other" / "bundle").mkdir(parents=True)
    make_bundle(tmp_path / "runs" / "other" / "bundle")
    code, _, stderr = cli("translate", "a.png")
    assert code == 1 and "2 runs have a bundle" in stderr and "runs/other" in stderr and "runs/tiny" in stderr


def test_cli_bad_model_and_output(tmp_path: Path, bundle: Path) -> None:
    photo(20, 20).save(tmp_path / "x.png")
    code, _, stderr = cli("translate", str(tmp_path / "x.png"), "--model", str(tmp_path / "nope"))
    assert code == 1 and stderr.strip() == f"error: model path not found: {tmp_path / 'nope'}"

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    code, _, stderr = cli("translate", str(tmp_path / "x.png"), "--model", str(tmp_path / "plain.onnx"))
    assert code == 1
    plain = tmp_path / "plain.onnx"
    assert stderr.strip() == f"error: {plain} has no cyclekit metadata; export it with `cyclekit export`"

    (tmp_path / "file").write_text("a regular file")
    code, _, stderr = cli(
        "translate", str(tmp_path / "x.png"), "--model", str(bundle), "-o", str(tmp_path / "file" / "out")
    )
    assert code == 1 and stderr.count("\n") == 1 and "file is a file, not a folder" in stderr

    code, _, stderr = cli("translate", str(tmp_path / "x.png"), "--model", str(bundle), "-o", str(tmp_path))
    assert code == 1 and "would overwrite the input" in stderr
    assert Image.open(tmp_path / "x.png").size == (20, 20)

    code, _, stderr = cli("translate", str(tmp_path / "missing.png"), "--model", str(bundle))
    assert code == 1 and "missing.png: no such file or folder" in stderr


def test_cli_onnx_runs_without_torch(tmp_path: Path, bundle: Path, onnx_model: Path, blocker: Path) -> None:
    paths = write_inputs(tmp_path / "in")
    paths["bad"].unlink()
    env = env_without_torch(blocker)
    assert subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode != 0
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cyclekit.cli",
            "translate",
            str(tmp_path / "in"),
            "-r",
            "--model",
            str(onnx_model),
            "-o",
            str(tmp_path / "onnx_out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "translated 4 image(s)" in proc.stdout
    code, _, stderr = cli("translate", str(tmp_path / "in"), "-r", "--model", str(bundle), "-o", str(tmp_path / "pt"))
    assert code == 0, stderr
    for rel in ("odd.png", "sub/phone.png", "grey.png", "rgba.png"):
        a = np.asarray(Image.open(tmp_path / "onnx_out" / rel)).astype(int)
        b = np.asarray(Image.open(tmp_path / "pt" / rel)).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, rel


def test_standalone_script_matches_cli(tmp_path: Path, bundle: Path, onnx_model: Path, blocker: Path) -> None:
    paths = write_inputs(tmp_path / "in")
    # A palette image whose transparency is a tRNS entry (no alpha band in PIL's "P" mode).
    paths["palette"] = tmp_path / "in" / "palette.png"
    photo(26, 34, seed=8).quantize(16).save(paths["palette"], transparency=3)
    for name in ("odd", "exif", "grey", "rgba", "palette"):
        out = tmp_path / f"script_{name}.png"
        proc = subprocess.run(
            [sys.executable, str(REPO / "scripts" / "onnx_translate.py"), str(onnx_model), str(paths[name]), str(out)],
            capture_output=True,
            text=True,
            env=env_without_torch(blocker),
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        code, _, stderr = cli("translate", str(paths[name]), "--model", str(bundle), "-o", str(tmp_path / "cli"))
        assert code == 0, stderr
        a = np.asarray(Image.open(out)).astype(int)
        b = np.asarray(Image.open(tmp_path / "cli" / (paths[name].stem + ".png"))).astype(int)
        # Script (onnxruntime) vs cyclekit (PyTorch): same pre/post-processing, EXIF, grey and alpha included.
        assert Image.open(out).mode == Image.open(tmp_path / "cli" / (paths[name].stem + ".png")).mode, name
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name


def _edited(onnx_model: Path, folder: Path, **meta: str | None) -> Path:
    """A copy of ``onnx_model`` with metadata keys set (None: removed)."""
    import onnx

    model = onnx.load(str(onnx_model))
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in meta.items():
        props.pop(key, None) if value is None else props.__setitem__(key, value)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    path = folder / f"edited-{len(list(folder.glob('edited-*')))}.onnx"
    onnx.save(model, str(path))
    return path


def _one_dim_model(onnx_model: Path, folder: Path) -> Path:
    """A valid ONNX file with cyclekit's metadata whose input is 1-D."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "flat",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.helper.set_model_props(model, {p.key: p.value for p in onnx.load(str(onnx_model)).metadata_props})
    path = folder / "flat.onnx"
    onnx.save(model, str(path))
    return path


SCRIPT_CASES = {
    "garbage model": ("garbage", "not a loadable ONNX model"),
    "empty model": ("empty", "not a loadable ONNX model"),
    "size_multiple 0": ({"size_multiple": "0"}, "size_multiple and min_size must be whole numbers >= 1"),
    "non-numeric mean": ({"mean": "abc"}, "non-number where a number belongs"),
    "2 channels": ({"channels": "2"}, "channels must be 1 or 3"),
    "missing key": ({"std": None}, "its cyclekit metadata has no 'std'"),
    "std 0": ({"std": "0"}, "std non-zero"),
    "1-D input": ("flat", "expected one image input (N, C, H, W)"),
    "missing input": ("no-input", "no such file"),
    "not an image": ("text-input", "not a readable image"),
    "missing output folder": ("no-folder", "does not exist"),
    "unknown output extension": ("bad-ext", "unknown image extension '.xyz'"),
}


@pytest.mark.parametrize("case", sorted(SCRIPT_CASES))
def test_standalone_script_refuses_bad_input_in_one_line(
    case: str, tmp_path: Path, onnx_model: Path, blocker: Path
) -> None:
    what, expected = SCRIPT_CASES[case]
    model, image, out = onnx_model, tmp_path / "in.png", tmp_path / "out.png"
    photo(20, 24).save(image)
    if isinstance(what, dict):
        model = _edited(onnx_model, tmp_path, **what)
    elif what in ("garbage", "empty"):
        model = tmp_path / "model.onnx"
        model.write_bytes(b"" if what == "empty" else b"\x08\x07not a protobuf at all")
    elif what == "flat":
        model = _one_dim_model(onnx_model, tmp_path)
    elif what == "no-input":
        image = tmp_path / "missing.png"
    elif what == "text-input":
        image = tmp_path / "notes.png"
        image.write_text("not an image")
    elif what == "no-folder":
        out = tmp_path / "nowhere" / "out.png"
    else:
        out = tmp_path / "out.xyz"
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "onnx_translate.py"), str(model), str(image), str(out)],
        capture_output=True,
        text=True,
        env=env_without_torch(blocker),
        timeout=120,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert not out.exists()
