"""Bundle -> ONNX: one self-contained file per direction the bundle translates, checked against
PyTorch with onnxruntime.

Each file has dynamic batch, height and width axes, embeds its weights (no external data file)
and carries cyclekit metadata (`metadata_props`) describing the pre/post-processing, so any
program with onnxruntime can use it (see scripts/onnx_translate.py) and `cyclekit translate`
can load it without torch.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cyclekit import __version__
from cyclekit.atomic import atomic_path, check_output_folder
from cyclekit.choices import DIRECTIONS
from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import (
    Bundle,
    NetworkEntry,
    Signature,
    bundle_dir,
    file_sha256,
    load_network,
    read_bundle,
)
from cyclekit.inference.onnx_backend import ONNX_FORMAT_KEY, ONNX_FORMAT_VERSION
from cyclekit.inference.provenance import bundle_name, safe_name

# torch 2.13's default (torch.export-based) exporter writes opset 18 and up; it cannot convert
# down to 17 (no Pad adapter), so 17 goes through the older TorchScript exporter.
DEFAULT_OPSET = 18
MIN_OPSET = 17
# fp32: ONNX Runtime and PyTorch run the same float32 maths in a different order; measured
# differences are ~2e-6 on tanh outputs in [-1, 1], so 1e-4 leaves 50x margin and still catches
# any real mistake (a wrong op, padding mode or weight), which shows up as >= 1e-2.
FP32_TOLERANCE = 1e-4
# fp16: half precision keeps 11 significant bits (unit roundoff 2^-11 = 4.9e-4). Through ~30
# layers, with instance norm re-scaling activations to O(1) after every conv, the measured
# worst-case output error is 2e-3 (ngf 8, 64 px) to 5.3e-3 (ngf 64, 9 blocks, 256x256 and 256x320)
# in [-1, 1] units. 2e-2 (~4x margin) is 2.5 grey levels of an 8-bit image: larger errors mean an
# overflow or a broken graph, not rounding.
FP16_TOLERANCE = 2e-2
PARITY_BATCH = 2


@dataclass
class ParityCheck:
    """ONNX Runtime vs PyTorch (float32) on one batch."""

    height: int
    width: int
    batch: int
    max_abs_diff: float


@dataclass
class ExportResult:
    """One exported generator."""

    direction: str
    path: Path
    bytes: int
    precision: str
    opset: int
    tolerance: float
    checks: list[ParityCheck]


class _HalfPrecision(nn.Module):
    """fp16 weights and arithmetic inside, float32 input and output outside.

    Consumers feed and read float32 exactly as with the fp32 file; only the Cast nodes at both
    ends differ, so switching files needs no code change.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.half()).float()


def export_bundle(
    path: str | os.PathLike[str],
    direction: str = "all",
    *,
    opset: int = DEFAULT_OPSET,
    fp16: bool = False,
    out_dir: Path | None = None,
    check_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[ExportResult]:
    """Export the networks a run/bundle translates with to ONNX and check each against PyTorch.

    ``direction``: "AtoB", "BtoA" or "all" (every direction the bundle translates; "both" is the
    same). Files are written to ``out_dir`` (default: the bundle dir) as ``G_<direction>.onnx``
    (``G_<direction>.fp16.onnx`` with ``fp16``); a file there that cyclekit did not write is
    refused. A file is only put in place after the parity check
    passed; on failure nothing is left behind and CyclekitError gives the measured difference.
    ``check_sizes``: (height, width) pairs, default two sizes around the training size.
    Test-time dropout (pix2pix) is left out of the graph: an exported model is deterministic.
    """
    folder = bundle_dir(Path(path))
    bundle = read_bundle(folder)
    if bundle.samples is not None:
        if direction not in ("all", "both"):
            raise CyclekitError(f"--direction {direction}: {folder} holds a generator that samples, not translates")
        return [export_sampler(folder, bundle, opset=opset, fp16=fp16, out_dir=out_dir)]
    if direction in ("all", "both"):
        directions = list(bundle.translates)
    elif direction in DIRECTIONS:
        bundle.network_for(direction)  # says which directions the bundle has
        directions = [direction]
    else:
        raise CyclekitError(f"unknown direction {direction!r}; valid: {', '.join(DIRECTIONS)}, all")
    if opset < MIN_OPSET:
        raise CyclekitError(f"opset {opset} is too old; use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    sizes = (
        list(check_sizes)
        if check_sizes
        else default_check_sizes(bundle.train_size, bundle.size_multiple, bundle.min_size)
    )
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise CyclekitError(
            f"opset {opset} is newer than this onnx package knows ({newest}); use {MIN_OPSET}..{newest}"
        )
    out_dir = check_output_folder(Path(out_dir) if out_dir is not None else folder)

    results = []
    for d in directions:
        key = bundle.network_for(d)
        entry = bundle.networks[key]
        sha = file_sha256(folder / entry.file) if (folder / entry.file).is_file() else ""
        if entry.sha256 and sha != entry.sha256:
            raise CyclekitError(
                f"{folder / entry.file} does not match the sha256 in {folder / 'config.json'}; "
                "the bundle is damaged or was edited"
            )
        net = load_network(folder, bundle, key, "cpu", dropout=False)
        target = out_dir / export_name(d, fp16)
        refuse_foreign_file(target)
        metadata = onnx_metadata(bundle, d, entry, sha, fp16, name=bundle_name(bundle, folder))
        results.append(
            _export_one(net, target, metadata, opset, fp16, sizes, bundle.channels or 3, bundle.size_multiple)
        )
    return results


def export_name(direction: str, fp16: bool = False) -> str:
    """The file an export of ``direction`` goes to: ``G_AtoB.onnx`` (``G_AtoB.fp16.onnx``), named by
    direction whatever the network is called, so a one-direction model says which way it goes."""
    return f"G_{direction}.fp16.onnx" if fp16 else f"G_{direction}.onnx"


def refuse_foreign_file(target: Path) -> None:
    """An existing ``target`` is replaced only if it is an earlier cyclekit export; a file cyclekit
    did not write is never overwritten."""
    if not target.exists():
        return
    if target.is_dir():
        raise CyclekitError(f"cannot write {target}: it is a folder")
    import onnx

    try:
        props = {p.key for p in onnx.load(str(target), load_external_data=False).metadata_props}
    except Exception:  # noqa: BLE001 (protobuf and onnx raise their own types for a foreign file)
        props = set()
    if ONNX_FORMAT_KEY not in props:
        raise CyclekitError(
            f"{target} already exists and was not written by `cyclekit export`; move it, or pass -o another folder"
        )


def default_check_sizes(train_size: Any, multiple: int = 4, min_size: int = 8) -> list[tuple[int, int]]:
    """A square and a wider size around the training size (capped at 256 px to stay quick), both
    multiples of ``multiple`` and at least ``min_size``: the wider one is at least one multiple
    wider, so the width axis is really exercised."""
    t = min(256, max(32, int(train_size or 256)))
    t = max(min_size, multiple, t - t % multiple)
    wide = max(t + multiple, (t * 5 // 4) // multiple * multiple)
    return [(t, t), (t, wide)]


def onnx_metadata(
    bundle: Bundle, direction: str, entry: NetworkEntry, sha: str, fp16: bool, name: str = ""
) -> dict[str, str]:
    """The metadata_props that make an exported file self-describing (all values are strings).
    ``name``: the bundle's short safe name (`cyclekit.inference.provenance.bundle_name`), as ``run``."""
    domains = bundle.domains
    source, target = ("A", "B") if direction == "AtoB" else ("B", "A")
    channels = bundle.channels or 3
    return {
        ONNX_FORMAT_KEY: str(ONNX_FORMAT_VERSION),
        "cyclekit_version": __version__,
        "recipe": bundle.recipe,
        "direction": direction,
        "source_domain": domains[source],
        "target_domain": domains[target],
        "domains": json.dumps(domains),
        "input_layout": "NCHW",
        "input_range": "[-1, 1]",
        "output_range": "[-1, 1]",
        # x = (pixel / 255 - mean) / std; pixel = (y * std + mean) * 255
        "mean": json.dumps(bundle.mean),
        "std": json.dumps(bundle.std),
        "channels": str(channels),
        "color_mode": "RGB" if channels == 3 else "L",
        "size_multiple": str(bundle.size_multiple),
        "min_size": str(bundle.min_size),
        "padding": "reflect the bottom/right edges up to a multiple of size_multiple (at least min_size); "
        "crop the output back",
        "precision": "fp16 (float32 input/output)" if fp16 else "fp32",
        "test_time": "deterministic: no dropout"
        + ("; batch norm with per-image statistics" if bundle.test_time.batch_norm == "sample" else ""),
        "arch": entry.arch,
        "arch_options": json.dumps(entry.options, sort_keys=True),
        "source_weights": entry.file,
        "source_weights_sha256": sha,
        "run": name or safe_name(bundle.run),
        "step": str(bundle.step),
        # The scale the model was trained at: images resized to load_size, then cropped to train_size.
        "train_size": "" if bundle.train_size is None else str(bundle.train_size),
        "load_size": "" if bundle.load_size is None else str(bundle.load_size),
        "preprocess": bundle.preprocess or "",
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters print progress lines and warn about optional torchvision ops; a CLI should not."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _to_proto(module: nn.Module, example: torch.Tensor, opset: int, multiple: int = 1) -> Any:
    """Trace ``module`` into an ONNX ModelProto with dynamic batch/height/width.

    Height and width are declared as multiples of ``multiple``: a U-Net concatenates each
    decoder level with its encoder level, which only lines up for such sizes, and torch.export
    insists on knowing that."""
    import onnx

    with _quiet_exporter():
        if opset >= 18:
            batch = torch.export.Dim("batch")
            if multiple > 1:
                height, width = torch.export.Dim("height_units") * multiple, torch.export.Dim("width_units") * multiple
            else:
                height, width = torch.export.Dim("height"), torch.export.Dim("width")
            program = torch.onnx.export(
                module,
                (example,),
                None,
                dynamo=True,
                opset_version=opset,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=({0: batch, 2: height, 3: width},),
                verbose=False,
            )
            return program.model_proto
        buffer = io.BytesIO()
        axes = {0: "batch", 2: "height", 3: "width"}
        torch.onnx.export(
            module,
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": axes, "output": axes},
        )
        return onnx.load_from_string(buffer.getvalue())


def _name_dynamic_axes(proto: Any) -> None:
    """Call the symbolic axes batch, height and width everywhere in the graph (the exporter names
    the declared multiples "4*height_units"), so a consumer reads input [batch, C, height, width]."""
    graph = proto.graph
    for value in [*graph.input, *graph.output, *graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if "height" in dim.dim_param:
                dim.dim_param = "height" if dim.dim_param.endswith(("height", "height_units")) else dim.dim_param
            elif "width" in dim.dim_param:
                dim.dim_param = "width" if dim.dim_param.endswith(("width", "width_units")) else dim.dim_param


def _export_one(
    net: nn.Module,
    target: Path,
    metadata: dict[str, str],
    opset: int,
    fp16: bool,
    sizes: Sequence[tuple[int, int]],
    channels: int,
    multiple: int = 1,
) -> ExportResult:
    import onnx
    import onnxruntime as ort
    from onnx.external_data_helper import uses_external_data

    module = _HalfPrecision(net).eval() if fp16 else net
    # The first check size, at least two multiples: small to trace, and no axis of 0/1 (units)
    # so the exporter does not specialise the dynamic axes.
    example = torch.zeros(PARITY_BATCH, channels, *(max(side, 2 * multiple) for side in sizes[0]))
    try:
        proto = _to_proto(module, example, opset, multiple)
    except Exception as exc:  # the exporters raise many types; the first line is what helps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CyclekitError(f"ONNX export of {target.stem} at opset {opset} failed: {first}") from None
    written = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if written != opset:
        raise CyclekitError(
            f"ONNX export of {target.stem}: the exporter wrote opset {written}, not the requested {opset}; "
            f"choose another --opset (default {DEFAULT_OPSET})"
        )
    _name_dynamic_axes(proto)
    for node in proto.graph.node:
        # Per-node exporter notes hold Python stack traces with local paths: noise for consumers.
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = (
        f"cyclekit {metadata['direction']} generator ({metadata['source_domain']} -> "
        f"{metadata['target_domain']}); see metadata_props for pre/post-processing"
    )
    if any(uses_external_data(t) for t in proto.graph.initializer):
        raise CyclekitError(f"ONNX export of {target.stem} produced external weight data; cannot embed it")

    before = set(target.parent.iterdir())
    with atomic_path(target) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))
        extra = set(target.parent.iterdir()) - before - {tmp}
        if extra:  # e.g. a .data file: the model would not be self-contained
            raise CyclekitError(f"ONNX export of {target.stem} left extra files: {', '.join(map(str, extra))}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        checks = []
        for i, (h, w) in enumerate(sizes):
            x = parity_inputs(PARITY_BATCH, channels, h, w, seed=i)
            with torch.no_grad():
                expected = net(torch.from_numpy(x)).numpy()
            got = session.run(None, {session.get_inputs()[0].name: x})[0]
            if got.shape != expected.shape:
                raise CyclekitError(
                    f"ONNX parity check of {target.name} failed: output shape {got.shape} at "
                    f"{h}x{w}, PyTorch gives {expected.shape}; the file was not written"
                )
            checks.append(ParityCheck(h, w, PARITY_BATCH, float(np.abs(got - expected).max())))
        worst = max(checks, key=lambda c: c.max_abs_diff)
        if not worst.max_abs_diff <= tolerance:  # also catches NaN
            raise CyclekitError(
                f"ONNX parity check of {target.name} failed: max abs diff {worst.max_abs_diff:.3g} at "
                f"{worst.height}x{worst.width} exceeds {tolerance:g}; the file was not written"
            )
    return ExportResult(
        metadata["direction"], target, target.stat().st_size, "fp16" if fp16 else "fp32", opset, tolerance, checks
    )


SAMPLER_NAME = "G.onnx"


class _Sampler(nn.Module):
    """The generator called through its signature (`cyclekit.inference.sampling.SignatureNet`), its
    outputs in G.onnx's order: the final image first, then the lower stages."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.net(*inputs)
        return (outs[-1], *outs[:-1])


def export_sampler(
    folder: Path, bundle: Bundle, *, opset: int = DEFAULT_OPSET, fp16: bool = False, out_dir: Path | None = None
) -> ExportResult:
    """A sampling bundle's generator to ``G.onnx``, with the inputs and outputs its signature declares
    (`cyclekit.inference.bundle.Sampling.signature`, also in the metadata as ``signature``): ``z``
    (float32, batch x latent_dim), then ``label`` (int64, batch: a class index; the class names are in
    the metadata) and/or ``embedding`` (float32, batch x dim); outputs ``output`` (the final images,
    batch x C x H x W in [-1, 1]) and, for a stacked generator, ``stage1``, ``stage2``, ... (the lower
    stages). Checked against PyTorch for every class (or three sets of embeddings) on every output."""
    import onnx
    import onnxruntime as ort

    from cyclekit.inference.sampling import SignatureNet

    samples = bundle.samples
    assert samples is not None
    if fp16:
        raise CyclekitError("--fp16: a sampling generator is exported in fp32 only (it is small)")
    if samples.output != "image":
        raise CyclekitError(f"{folder} samples 2-D points; export handles image generators")
    if opset < MIN_OPSET:
        raise CyclekitError(f"opset {opset} is too old; use {MIN_OPSET} or newer (default {DEFAULT_OPSET})")
    out_dir = check_output_folder(Path(out_dir) if out_dir is not None else folder)
    target = out_dir / SAMPLER_NAME
    refuse_foreign_file(target)
    entry = bundle.networks[samples.network]
    sha = file_sha256(folder / entry.file) if (folder / entry.file).is_file() else ""
    if entry.sha256 and sha != entry.sha256:
        raise CyclekitError(f"{folder / entry.file} does not match the sha256 in {folder / 'config.json'}")
    signature = samples.signature
    module = _Sampler(SignatureNet(load_network(folder, bundle, samples.network, "cpu"), samples)).eval()
    inputs = tuple(_signature_inputs(signature, PARITY_BATCH, 0))
    try:
        with _quiet_exporter():
            batch = torch.export.Dim("batch")  # the inputs are one *inputs argument: one tuple of shapes
            proto = torch.onnx.export(
                module, inputs, None, dynamo=True, opset_version=opset,
                input_names=[i.name for i in signature.inputs], output_names=signature.output_names(),
                dynamic_shapes=(tuple({0: batch} for _ in inputs),), verbose=False,
            ).model_proto  # fmt: skip
    except Exception as exc:  # the exporters raise many types; the first line is what helps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CyclekitError(f"ONNX export of {folder} at opset {opset} failed: {first}") from None
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    channels = bundle.channels or 3
    metadata = {
        ONNX_FORMAT_KEY: str(ONNX_FORMAT_VERSION),
        "cyclekit_version": __version__,
        "recipe": bundle.recipe,
        "kind": "sampler",
        **signature.to_metadata(),
        **sampler_metadata(signature),
        "output_layout": "NCHW",
        "output_range": "[-1, 1]",
        "channels": str(channels),
        "color_mode": "RGB" if channels == 3 else "L",
        "image_size": "" if bundle.train_size is None else str(bundle.train_size),
        "arch": entry.arch,
        "arch_options": json.dumps(entry.options, sort_keys=True),
        "source_weights_sha256": sha,
        "run": bundle_name(bundle, folder),
        "step": str(bundle.step),
    }
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"cyclekit {bundle.recipe} sampler; see metadata_props"
    with atomic_path(target) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        checks = []
        klass = signature.input("class")
        rounds = klass.size if klass is not None else 3 if signature.input("embedding") is not None else 1
        for k in range(rounds):
            feed = _signature_inputs(signature, 4, k)
            with torch.no_grad():
                want = module(*feed)
            got = session.run(None, {spec.name: x.numpy() for spec, x in zip(signature.inputs, feed, strict=True)})
            for expected, out in zip(want, got, strict=True):
                expected = expected.numpy()
                size = expected.shape[-1]
                diff = float(np.abs(out - expected).max()) if out.shape == expected.shape else float("inf")
                checks.append(ParityCheck(size, size, 4, diff))
        worst = max(checks, key=lambda c: c.max_abs_diff)
        if not worst.max_abs_diff <= FP32_TOLERANCE:
            raise CyclekitError(
                f"ONNX parity check of {target.name} failed: max abs diff {worst.max_abs_diff:.3g} exceeds "
                f"{FP32_TOLERANCE:g}; the file was not written"
            )
    return ExportResult("sample", target, target.stat().st_size, "fp32", opset, FP32_TOLERANCE, checks)


def _signature_inputs(signature: Signature, n: int, k: int) -> list[torch.Tensor]:
    """``n`` of each input the signature declares, for tracing and round ``k`` of the parity check:
    seeded noise, class k (modulo the classes), seeded random unit embeddings."""
    out = []
    for spec in signature.inputs:
        if spec.kind == "noise":
            out.append(torch.randn(n, spec.size, generator=torch.Generator().manual_seed(k)))
        elif spec.kind == "class":
            out.append(torch.full((n,), k % spec.size, dtype=torch.long))
        else:
            y = torch.randn(n, spec.size, generator=torch.Generator().manual_seed(1000 + k))
            out.append(y / y.norm(dim=1, keepdim=True))
    return out


def sampler_metadata(signature: Signature) -> dict[str, str]:
    """The signature in words (and the keys earlier exports had), for a program using G.onnx."""
    noise = signature.inputs[0]
    meta = {"latent_dim": str(noise.size), "classes": json.dumps(list(signature.classes))}
    said = []
    for spec in signature.inputs[1:]:
        if spec.kind == "class":
            said.append(f"{spec.name}: int64 class index, shape [batch]")
            continue
        what = (
            f"a caption embedded by {spec.model}"
            if spec.source == "text"
            else f"a precomputed embedding ({spec.model})"
        )
        said.append(f"{spec.name}: float32, shape [batch, {spec.size}]: {what}")
        meta |= {"condition_kind": spec.source, "condition_model": spec.model, "condition_dim": str(spec.size)}
    meta["condition"] = "; ".join(said) or "none"
    meta["noise"] = f"{noise.name} ~ N(0, 1), float32, shape [batch, latent_dim]"
    meta["stages"] = json.dumps([o.size for o in signature.outputs])
    by_name = {o.name: (k, o) for k, o in enumerate(signature.outputs)}
    meta["outputs"] = "; ".join(
        f"{name}: the {'final' if k == len(by_name) - 1 else f'stage-{k + 1}'} image"
        + (f" ({o.size} px)" if o.size else "")
        for name in signature.output_names()
        for k, o in [by_name[name]]
    )
    return meta


def parity_inputs(n: int, channels: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 test images in [-1, 1]: even ones uniform noise (every pixel value and edge
    the network can see), odd ones photo-like (smooth gradients, a few flat shapes, mild noise),
    whose activation statistics resemble real inputs."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, channels, height, width), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(n):
        if i % 2 == 0:
            out[i] = rng.uniform(-1, 1, size=(channels, height, width))
            continue
        img = np.empty((channels, height, width), dtype=np.float32)
        for c in range(channels):
            a, b = rng.uniform(-1, 1, size=2)
            img[c] = 0.6 * (a * yy / height + b * xx / width) + rng.uniform(-0.3, 0.3)
        for _ in range(4):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            img[:, inside] = rng.uniform(-0.9, 0.9, size=(channels, 1))
        img += rng.normal(0, 0.03, size=img.shape).astype(np.float32)
        out[i] = np.clip(img, -1, 1)
    return out
