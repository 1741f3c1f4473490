"""`cyclekit export`: self-contained ONNX files with metadata, checked against PyTorch (fp32 and fp16)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import cyclekit.export.onnx as export_mod
from cyclekit import __version__
from cyclekit.errors import CyclekitError
from cyclekit.export.onnx import FP16_TOLERANCE, FP32_TOLERANCE, export_bundle, parity_inputs
from cyclekit.inference.bundle import file_sha256, load_network, read_bundle
from tests.bundles import make_bundle
from tests.helpers import cli

SIZES = [(64, 64), (96, 128)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("run") / "bundle")


@pytest.fixture(scope="module")
def exported(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """G_AtoB exported through the CLI (fp32, default opset); returns (file, stdout)."""
    out = tmp_path_factory.mktemp("onnx")
    code, stdout, stderr = cli("export", str(bundle.parent), "--direction", "AtoB", "-o", str(out))
    assert code == 0, stderr
    return out / "G_AtoB.onnx", stdout


def max_diff_vs_torch(model: Path, bundle: Path, key: str = "G_AtoB") -> list[float]:
    """Independent parity check: onnxruntime vs the bundle's PyTorch net, batch 3, two sizes."""
    net = load_network(bundle, read_bundle(bundle), key)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    diffs = []
    for i, (h, w) in enumerate(SIZES):
        x = parity_inputs(3, 3, h, w, seed=10 + i)
        with torch.no_grad():
            expected = net(torch.from_numpy(x)).numpy()
        got = session.run(None, {"input": x})[0]
        assert got.shape == expected.shape == (3, 3, h, w) and got.dtype == np.float32
        diffs.append(float(np.abs(got - expected).max()))
    return diffs


def test_fp32_export_is_self_contained_with_metadata(exported: tuple[Path, str], bundle: Path) -> None:
    path, stdout = exported
    # One file, weights embedded: no external data or temporary file beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["G_AtoB.onnx"]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert model.opset_import[0].version >= 17
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]

    meta = {p.key: p.value for p in model.metadata_props}
    config = read_bundle(bundle)
    assert meta["cyclekit_format"] == "1" and meta["cyclekit_version"] == __version__
    assert (meta["direction"], meta["source_domain"], meta["target_domain"]) == ("AtoB", "horse", "zebra")
    assert json.loads(meta["domains"]) == {"A": "horse", "B": "zebra"}
    assert (meta["input_layout"], meta["input_range"], meta["channels"], meta["size_multiple"]) == (
        "NCHW",
        "[-1, 1]",
        "3",
        "4",
    )
    assert json.loads(meta["mean"]) == 0.5 and json.loads(meta["std"]) == 0.5
    sha = file_sha256(bundle / "G_AtoB.safetensors")
    assert meta["source_weights_sha256"] == sha == config.networks["G_AtoB"].sha256

    # The command printed its own parity figures, one per size, within the fp32 tolerance.
    assert "max abs diff vs PyTorch" in stdout and "at 64x64" in stdout and "at 64x80" in stdout
    assert all(d <= FP32_TOLERANCE for d in max_diff_vs_torch(path, bundle))


def test_fp16_export_halves_weights_and_stays_close(exported: tuple[Path, str], bundle: Path, tmp_path: Path) -> None:
    (result,) = export_bundle(bundle, "AtoB", fp16=True, out_dir=tmp_path)
    assert result.path.name == "G_AtoB.fp16.onnx" and result.precision == "fp16"
    fp16, fp32 = onnx.load(str(result.path)), onnx.load(str(exported[0]))

    def weight_bytes(model: onnx.ModelProto, dtype: int) -> int:
        return sum(len(t.raw_data) for t in model.graph.initializer if t.data_type == dtype)

    assert weight_bytes(fp16, onnx.TensorProto.FLOAT) == 0
    assert weight_bytes(fp16, onnx.TensorProto.FLOAT16) * 2 == weight_bytes(fp32, onnx.TensorProto.FLOAT)
    assert result.bytes < 0.7 * exported[0].stat().st_size  # 0.5 for big nets; graph overhead on tiny ones
    # Consumers keep float32 input and output.
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT

    diffs = max_diff_vs_torch(result.path, bundle)
    # Rounding to 11 significant bits shows (so the maths really is fp16: measured ~2e-3) but stays
    # within the tolerance justified in cyclekit.export (2e-2 = 2.5 grey levels).
    assert all(1e-5 < d <= FP16_TOLERANCE for d in diffs), diffs
    assert all(c.batch > 1 and c.max_abs_diff <= FP16_TOLERANCE for c in result.checks)


def test_opset17_both_directions_into_the_bundle(tmp_path: Path) -> None:
    folder = make_bundle(tmp_path / "run" / "bundle", seed=3)
    results = export_bundle(tmp_path / "run", opset=17)  # the TorchScript exporter path
    assert [r.path for r in results] == [folder / "G_AtoB.onnx", folder / "G_BtoA.onnx"]
    for r in results:
        assert onnx.load(str(r.path)).opset_import[0].version == 17
        assert len(r.checks) == 2 and all(c.batch > 1 and c.max_abs_diff <= FP32_TOLERANCE for c in r.checks)
    assert all(d <= FP32_TOLERANCE for d in max_diff_vs_torch(folder / "G_BtoA.onnx", folder, "G_BtoA"))
    assert not list(folder.glob("*cyclekit-tmp")) and not list(folder.glob("*.data"))


def test_failed_parity_check_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_bundle(tmp_path / "bundle")
    monkeypatch.setattr(export_mod, "FP32_TOLERANCE", 1e-12)  # stands in for a broken export
    with pytest.raises(CyclekitError, match=r"parity check of G_AtoB.onnx failed: max abs diff .* exceeds 1e-12"):
        export_bundle(folder, "AtoB", opset=17)
    assert sorted(p.name for p in folder.iterdir()) == ["G_AtoB.safetensors", "G_BtoA.safetensors", "config.json"]


def test_bad_export_arguments(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(CyclekitError, match="unknown direction 'AtoC'; valid: AtoB, BtoA, all"):
        export_bundle(bundle, "AtoC")
    with pytest.raises(CyclekitError, match="opset 16 is too old"):
        export_bundle(bundle, opset=16)
    code, _, stderr = cli("export", str(tmp_path / "missing"))
    assert code == 1 and stderr.strip() == f"error: model path not found: {tmp_path / 'missing'}"
