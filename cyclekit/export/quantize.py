"""fp32 ONNX export -> int8 ONNX with onnxruntime's own quantization tools, quality measured.

Static quantization (QDQ format, ``onnxruntime.quantization.quantize_static``): weights are stored
as int8, and every activation a quantized op reads gets a fixed uint8 scale and zero point, taken
from the ranges it showed on calibration images. The calibration images are the user's, prepared
exactly as ``cyclekit translate --train-scale`` prepares an image (`Translator.model_input`: EXIF,
alpha, grey, the shorter side brought down to the training scale) and centre-cropped to the
training size, so the ranges are those translation meets.

The quality report is the PSNR of the int8 model's output against the fp32 model's output (the
reference, not the ground truth) on held-out images: images of the same folder that calibration
did not see. The measured speed, sizes and the choice of the default are in docs/benchmarks.md
("int8 ONNX on a CPU"); ``scripts/bench_int8.py`` re-measures them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cyclekit.atomic import atomic_path
from cyclekit.data.images import list_images
from cyclekit.errors import CyclekitError, DataError
from cyclekit.inference.bundle import bundle_dir, read_bundle
from cyclekit.inference.translator import reflect_pad

INT8_MODES = ("static", "dynamic")
DEFAULT_HOLDOUT = 0.2
# Below this PSNR against fp32 the int8 output differs visibly (about 2 grey levels RMS and more).
GOOD_PSNR_DB = 30.0
HOLDOUT_SEED = 0


@dataclass(frozen=True)
class Int8Settings:
    """How a float graph is quantized; the defaults are the measured best (docs/benchmarks.md).

    Only convolutions are quantized by default: their uint8 inputs and outputs are fused into
    QLinearConv, where nearly all the time goes. Everything between them stays float, above all
    the residual Adds: quantizing those (onnxruntime's default, every op type it can) rounds the
    residual stream to 8 bits in every block and costs 8 dB of PSNR for no speed. ConvTranspose
    has no int8 kernel in onnxruntime's CPU provider, so it stays float either way. The first and
    last convolutions (3 channels in, 3 out: 2-3% of the work) stay float too: the output
    convolution's rounding reaches the image directly.
    """

    mode: str = "static"  # static: calibrated QDQ; dynamic: int8 weights, activation ranges per run
    op_types: tuple[str, ...] = ("Conv",)  # () = every op type onnxruntime can quantize
    float_ends: bool = True  # keep the first and the last Conv in float
    per_channel: bool = False  # one weight scale per output channel instead of per tensor

    def describe(self) -> str:
        ops = "+".join(self.op_types) if self.op_types else "all op types"
        if self.mode == "dynamic":
            return f"dynamic: int8 weights, activation ranges measured per run; {ops}"
        weights = "per-channel" if self.per_channel else "per-tensor"
        ends = ", first/last Conv float" if self.float_ends else ""
        return f"static QDQ: uint8 activations, {weights} int8 weights; {ops}{ends}"


@dataclass
class CalibrationSet:
    """Images prepared for one bundle: ``calibration`` feeds the calibrator, ``holdout`` the PSNR."""

    folder: Path
    files: list[Path]
    calibration: list[np.ndarray]  # float32 CxHxW, network range, padded to the size multiple
    holdout: list[np.ndarray]
    holdout_fraction: float
    size: int  # the training size the images were brought to


@dataclass
class Int8Result:
    """One quantized generator and how close it stays to the fp32 model."""

    direction: str
    path: Path
    bytes: int
    fp32_path: Path
    fp32_bytes: int
    settings: Int8Settings
    calibration_images: int
    holdout_images: int
    psnr: list[float] = field(default_factory=list)  # per held-out image, dB against fp32

    @property
    def psnr_mean(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def psnr_min(self) -> float:
        return float(np.min(self.psnr))


def int8_name(direction: str) -> str:
    """``G_AtoB.int8.onnx``: next to the fp32 ``G_AtoB.onnx`` it was quantized from."""
    return f"G_{direction}.int8.onnx"


def load_calibration(
    run: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    holdout: float = DEFAULT_HOLDOUT,
    direction: str = "all",
) -> CalibrationSet:
    """Read and prepare every image of ``folder`` for the model in ``run`` (run or bundle dir),
    which is to be exported in ``direction``; the images belong to that direction's source domain,
    so a model that translates both ways needs one direction named.

    A ``holdout`` fraction of the images (at least one, drawn with a fixed seed) is kept out of
    calibration and only used to measure the int8 output against fp32. Raises CyclekitError for
    a bundle that samples or that does not record its training size, and DataError for a missing
    or empty folder, too few images or an unreadable one: all before any export work.
    """
    from cyclekit.inference.files import load_for_translation
    from cyclekit.inference.translator import Translator

    bundle_folder = bundle_dir(Path(run))
    bundle = read_bundle(bundle_folder)
    if bundle.samples is not None:
        raise CyclekitError(
            f"--int8: {bundle_folder} holds a generator that samples; int8 export is for models that translate"
        )
    if not bundle.train_size:
        from cyclekit.inference.provenance import train_size_fix

        raise CyclekitError(
            f"--int8: {bundle_folder} does not record its training size (an older cyclekit), which calibration "
            f"needs; {train_size_fix(bundle)}"
        )
    if direction in ("all", "both") and len(bundle.translates) > 1:
        d = bundle.domains
        raise CyclekitError(
            f"--int8 calibrates with images of the source domain, so name one --direction: "
            f"AtoB ({d['A']} images in --calibrate) or BtoA ({d['B']} images)"
        )
    if not 0 < holdout < 1:
        raise CyclekitError(f"--holdout must be between 0 and 1 (a fraction of the images), got {holdout:g}")
    folder = Path(folder)
    files = list_images(folder)
    if len(files) < 2:
        found = "no images" if not files else "only one image"
        raise DataError(
            f"--calibrate {folder}: {found} (.jpg, .png, ...); it needs at least two, "
            "some to calibrate with and at least one held out to measure the int8 model"
        )
    n_hold = min(len(files) - 1, max(1, round(len(files) * holdout)))
    held = set(np.random.default_rng(HOLDOUT_SEED).permutation(len(files))[:n_hold].tolist())

    translator = Translator.load(bundle_folder, device="cpu")
    size = int(bundle.train_size)
    calibration, holdout_arrays = [], []
    for i, path in enumerate(files):
        x = translator.model_input(load_for_translation(path), scale=translator.train_scale)
        x = reflect_pad(_centre_crop(x, size), translator.size_multiple, translator.min_size)
        (holdout_arrays if i in held else calibration).append(np.ascontiguousarray(x, dtype=np.float32))
    return CalibrationSet(folder, files, calibration, holdout_arrays, holdout, size)


def _centre_crop(x: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` window of a CxHxW array (a side shorter than ``size`` is kept)."""
    h, w = x.shape[-2:]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x[:, top : top + size, left : left + size]


def quantize_export(
    fp32_path: Path, data: CalibrationSet, settings: Int8Settings | None = None, target: Path | None = None
) -> Int8Result:
    """Quantize the cyclekit fp32 export ``fp32_path`` into ``G_<direction>.int8.onnx`` beside it.

    The file keeps the fp32 file's metadata_props, with ``precision`` saying int8 and how, plus
    the calibration set's size and the measured PSNR against fp32. It is put in place only once
    it loads and runs in onnxruntime; a file there that cyclekit did not write is refused.
    """
    import onnx

    from cyclekit.export.onnx import refuse_foreign_file
    from cyclekit.inference.onnx_backend import parse_metadata

    settings = settings or Int8Settings()
    if settings.mode not in INT8_MODES:
        raise CyclekitError(f"--int8-mode: unknown mode {settings.mode!r}; valid: {', '.join(INT8_MODES)}")
    fp32_path = Path(fp32_path)
    source = onnx.load(str(fp32_path))
    props = {p.key: p.value for p in source.metadata_props}
    meta = parse_metadata(props, fp32_path)
    if props.get("precision") != "fp32":
        raise CyclekitError(f"{fp32_path} is not an fp32 export (precision {props.get('precision')!r}); int8 needs one")
    target = Path(target) if target is not None else fp32_path.with_name(int8_name(meta["direction"]))
    refuse_foreign_file(target)

    with atomic_path(target) as tmp:
        try:
            quantize_model(source, tmp, data.calibration, settings)
        except CyclekitError:
            raise
        except Exception as exc:  # onnxruntime's quantizer raises ValueError, RuntimeError, its own types
            first = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise CyclekitError(f"int8 quantization of {fp32_path} failed: {first}; nothing was written") from None
        psnr = compare_outputs(fp32_path, tmp, data.holdout)
        model = onnx.load(str(tmp))
        precision = f"int8 ({settings.describe()}; float32 input/output)"
        extra = {
            "precision": precision,
            "int8_mode": settings.mode,
            "calibration_images": str(len(data.calibration) if settings.mode == "static" else 0),
            "calibration_size": f"{data.size}x{data.size}",
            "int8_holdout_images": str(len(data.holdout)),
            "int8_psnr_vs_fp32_db": f"{np.mean(psnr):.2f}",
            "source_fp32_file": fp32_path.name,
        }
        onnx.helper.set_model_props(model, {**props, **extra})
        model.doc_string = source.doc_string + f"; int8 ({settings.mode}) from {fp32_path.name}"
        onnx.save_model(model, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))
    return Int8Result(
        meta["direction"],
        target,
        target.stat().st_size,
        fp32_path,
        fp32_path.stat().st_size,
        settings,
        len(data.calibration) if settings.mode == "static" else 0,
        len(data.holdout),
        psnr,
    )


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs advice (pre-processing, opset) to the root logger and its
    sessions warn in C++; a CLI prints its own lines only."""
    import onnxruntime as ort

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        logging.disable(previous)
        ort.set_default_logger_severity(2)


class _Reader:
    """onnxruntime's CalibrationDataReader over prepared images, one per batch."""

    def __init__(self, inputs: Sequence[np.ndarray], name: str):
        self.inputs, self.name, self.index = inputs, name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.inputs):
            return None
        self.index += 1
        return {self.name: self.inputs[self.index - 1][None]}


def quantize_model(
    model: Any,
    target: Path,
    calibration: Sequence[np.ndarray],
    settings: Int8Settings,
    cache: Path | None = None,
) -> None:
    """Write the int8 version of the float ONNX ``model`` (a ModelProto or a path) to ``target``.

    ``cache``: onnxruntime's calibration cache (a JSON file of tensor ranges): reused when it
    exists, written otherwise, so variants of one model calibrate once (scripts/bench_int8.py).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    if settings.mode not in INT8_MODES:
        raise CyclekitError(f"unknown int8 mode {settings.mode!r}; valid: {', '.join(INT8_MODES)}")
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    exclude = [convs[0], convs[-1]] if settings.float_ends and convs else []
    op_types = list(settings.op_types) or sorted(set(QDQRegistry) | set(QLinearOpsRegistry))
    with _quiet_quantizer(), tempfile.TemporaryDirectory(prefix="cyclekit-int8-") as work:
        source = Path(work) / "fp32.onnx"
        onnx.save_model(proto, str(source), save_as_external_data=False)
        if settings.mode == "dynamic":
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=op_types,
                per_channel=settings.per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=exclude,
            )
            return
        if not calibration:
            raise CyclekitError("static int8 quantization needs calibration images")

        class Reader(_Reader, CalibrationDataReader):
            pass

        quantize_static(
            source,
            target,
            Reader(calibration, proto.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=settings.per_channel,
            # uint8 activations with int8 weights: the pairing onnxruntime's x86 kernels are built for
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            # MinMax keeps two numbers per tensor and image (the percentile and entropy methods keep
            # whole activations). Not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops, not
            # merges, the ranges it flushes.
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
        )


def session(path: Path, threads: int = 0) -> Any:
    """A CPU onnxruntime session; ``threads`` 0: onnxruntime's default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types
        raise CyclekitError(f"onnxruntime cannot load {path}: {' '.join(str(exc).split())[:200]}") from None


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR of ``test`` against ``reference``, both network outputs in [-1, 1] (peak-to-peak 2,
    the same number as on 0..255 images); inf when identical."""
    mse = float(np.mean((np.asarray(reference, np.float64) - np.asarray(test, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


def compare_outputs(reference: Path, test: Path, inputs: Sequence[np.ndarray], threads: int = 0) -> list[float]:
    """PSNR (dB) of model ``test``'s output against model ``reference``'s on each input (CxHxW)."""
    ref, other = session(reference, threads), session(test, threads)
    out = []
    for x in inputs:
        a = ref.run(None, {ref.get_inputs()[0].name: x[None]})[0]
        b = other.run(None, {other.get_inputs()[0].name: x[None]})[0]
        if a.shape != b.shape:
            raise CyclekitError(f"{test} gives an output of shape {b.shape}, {reference} {a.shape}")
        out.append(psnr_db(a, b))
    return out


def format_int8(result: Int8Result, data: CalibrationSet) -> list[str]:
    """What `cyclekit export --int8` prints for one file: sizes, settings, PSNR and on what."""
    lines = [
        f"wrote {result.path} ({result.bytes / 1e6:.1f} MB, fp32 {result.fp32_bytes / 1e6:.1f} MB; "
        f"int8, {result.settings.describe()}; calibrated on {result.calibration_images} images of {data.folder} "
        f"at {data.size}x{data.size})",
        f"  PSNR vs fp32 on {result.holdout_images} held-out images of {data.folder} (not used for calibration; "
        f"--holdout {data.holdout_fraction:g}), measured at the training size ({data.size}x{data.size}): "
        f"mean {result.psnr_mean:.1f} dB, worst {result.psnr_min:.1f} dB",
    ]
    if result.psnr_mean < GOOD_PSNR_DB:
        lines.append(
            f"  warning: below {GOOD_PSNR_DB:g} dB the int8 output differs visibly from fp32; calibrate with more "
            "images like those you will translate, or use the fp32 file"
        )
    return lines
