"""`cyclekit translate` and `cyclekit export`.

`translate --model x.onnx` must run where torch is not installed: nothing here imports torch at
module level (the library imports happen inside the commands)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cyclekit.cli.common import EXIT_ERROR, app, friendly
from cyclekit.errors import CyclekitError


@app.command()
@friendly
def translate(
    inputs: List[str] = typer.Argument(..., help="Image files, folders or glob patterns."),
    to: Optional[str] = typer.Option(
        None, "--to", help="Target domain: A, B or a domain name (default: B, or the .onnx file's target)."
    ),
    model: Optional[Path] = typer.Option(
        None, "--model", "-m", help="Run dir, bundle dir or exported .onnx (default: the only run in ./runs)."
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Output folder (default: results/<model>_to_<domain>/)."
    ),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Also translate images in sub-folders."),
    side_by_side: bool = typer.Option(False, "--side-by-side", help="Write input | output in one PNG."),
    batch_size: int = typer.Option(4, "--batch-size", help="Equal-size images translated together."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    tile: Optional[int] = typer.Option(
        None, "--tile", help="Translate in tiles of SIZE px (bounded memory for very large images; not for .onnx)."
    ),
    overlap: int = typer.Option(64, "--overlap", help="Overlap of neighbouring tiles in px (blended)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace output files that already exist."),
    no_dropout: bool = typer.Option(False, "--no-dropout", help="Pix2Pix: no test-time dropout (deterministic)."),
    train_scale: bool = typer.Option(
        False,
        "--train-scale",
        help="Translate images larger than the training scale at that scale, then resize back to their size.",
    ),
) -> None:
    """Translate images to the other domain; keeps each image's size, writes PNGs named after the inputs."""
    from cyclekit.inference.files import check_output_dir, collect_inputs, find_default_model, translate_files
    from cyclekit.inference.translator import Translator

    if batch_size < 1:
        raise CyclekitError(f"--batch-size: must be >= 1, got {batch_size}")
    found = collect_inputs(inputs, recursive=recursive)
    for problem in found.problems:
        typer.echo(f"error: {problem}", err=True)
    if not found.jobs:
        raise CyclekitError("no images to translate")
    translator = Translator.load(model if model is not None else find_default_model(), device=device)
    target = translator.target(to)
    out_dir = output if output is not None else Path("results") / f"{translator.name}_to_{translator.target_label(to)}"
    check_output_dir(out_dir, found.jobs, overwrite=overwrite)
    translator.prepare(target, dropout=False if no_dropout else None)  # a bad model file: one error, not one per image
    if tile is not None:
        translator.check_tiling(tile, overlap)  # before any work, not once per file
    if train_scale and not translator.train_scale:
        fix = "re-export it from a bundle that records it"
        if translator.source.suffix.lower() != ".onnx":
            from cyclekit.inference.bundle import read_bundle
            from cyclekit.inference.provenance import train_size_fix

            fix = train_size_fix(read_bundle(translator.source))
        raise CyclekitError(f"--train-scale: {translator.source} does not record the scale it was trained at; {fix}")
    if train_scale and tile is not None:
        raise CyclekitError("--train-scale and --tile do not go together: at the training scale an image fits one pass")

    def report(_src: Path, message: str) -> None:
        typer.echo(f"error: {message}", err=True)

    summary = translate_files(
        translator,
        found.jobs,
        out_dir,
        target,
        batch_size=batch_size,
        side_by_side_output=side_by_side,
        tile=tile,
        overlap=overlap,
        on_error=report,
        at_train_scale=train_scale,
    )
    n_failed = len(summary.failed) + len(found.problems)
    typer.echo(
        f"translated {len(summary.written)} image(s) to {translator.domains[target]}, {n_failed} failed, "
        f"output: {out_dir} ({summary.images_per_second:.3g} images/s)"
    )
    if n_failed:
        raise typer.Exit(EXIT_ERROR)


@app.command()
@friendly
def export(
    run: Path = typer.Argument(..., help="Run dir or bundle dir of a model that translates (CycleGAN, Pix2Pix)."),
    direction: str = typer.Option("all", "--direction", help="AtoB, BtoA or all (every direction the model has)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset (>= 17; 18+ uses torch's default exporter)."),
    fp16: bool = typer.Option(False, "--fp16", help="fp16 weights and maths (half the file), float32 input/output."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Folder for the .onnx files (default: the bundle dir)."
    ),
    web: Optional[Path] = typer.Option(
        None, "--web", help="Also write a web page that translates in the browser (onnxruntime-web) to this folder."
    ),
    ort_dir: Optional[Path] = typer.Option(
        None,
        "--ort-dir",
        help="--web: copy onnxruntime-web from this dist folder (default: fetched once into the cache).",
    ),
    cdn: bool = typer.Option(
        False, "--cdn", help="--web: the page loads onnxruntime-web from the jsDelivr CDN instead of a copy next to it."
    ),
    web_max_side: Optional[int] = typer.Option(
        None, "--web-max-side", help="--web: scale larger images down to this long side in px (default 1024)."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Also write G_<dir>.int8.onnx: static int8 (QDQ), PSNR vs fp32 reported."
    ),
    calibrate: Optional[Path] = typer.Option(
        None, "--calibrate", help="--int8: folder of source-domain images to calibrate with (and hold out some)."
    ),
    holdout: Optional[float] = typer.Option(
        None, "--holdout", help="--int8: fraction of --calibrate images kept out, to measure PSNR (default 0.2)."
    ),
) -> None:
    """Export generators to self-contained ONNX files, checked against PyTorch with onnxruntime.
    --web DIR: also a web page that translates with them in the browser."""
    from cyclekit.export.onnx import export_bundle

    plan = None
    if web is not None:
        from cyclekit.export.web import DEFAULT_MAX_SIDE, plan_web_page

        if output is not None and output.resolve() != web.resolve():
            raise CyclekitError("-o and --web both name the folder for the .onnx files; --web DIR puts them in DIR")
        max_side = DEFAULT_MAX_SIDE if web_max_side is None else web_max_side
        plan = plan_web_page(
            run, web, ort_dir=ort_dir, cdn=cdn, max_side=max_side, note=lambda line: typer.echo(line, err=True)
        )
        output = plan.folder
    elif ort_dir is not None or web_max_side is not None or cdn:
        raise CyclekitError("--ort-dir, --cdn and --web-max-side go with --web DIR")
    calibration = None
    if int8 or calibrate is not None or holdout is not None:
        from cyclekit.export.quantize import DEFAULT_HOLDOUT, format_int8, load_calibration, quantize_export

        if not int8:
            raise CyclekitError("--calibrate and --holdout go with --int8")
        if calibrate is None:
            raise CyclekitError("--int8 needs --calibrate DIR: images like those the model will translate")
        if fp16:
            raise CyclekitError("--int8 quantizes the fp32 model; leave out --fp16 (export twice for both files)")
        calibration = load_calibration(run, calibrate, DEFAULT_HOLDOUT if holdout is None else holdout, direction)
    results, written = [], []
    for r in export_bundle(run, direction, opset=opset, fp16=fp16, out_dir=output):
        results.append(r)
        diffs = ", ".join(f"{c.max_abs_diff:.1e} at {c.height}x{c.width}" for c in r.checks)
        typer.echo(
            f"wrote {r.path} ({r.bytes / 1e6:.1f} MB, {r.precision}, opset {r.opset}); "
            f"max abs diff vs PyTorch: {diffs} (batch {r.checks[0].batch}, tolerance {r.tolerance:g})"
        )
        if calibration is not None:
            quantized = quantize_export(r.path, calibration)
            written.append(quantized.path)
            typer.echo("\n".join(format_int8(quantized, calibration)))
    _warn_stale_exports(run, results[0].path.parent if results else output, [r.path for r in results] + written)
    if plan is not None:
        from cyclekit.export.web import write_web_page

        page = write_web_page(plan, results)
        where = f"copied from {page.ort.source}" if page.ort.source else "from the jsDelivr CDN"
        typer.echo(
            f"wrote {page.page} ({', '.join(page.directions)}; onnxruntime-web {page.ort.version} {where}; "
            f"images over {page.max_side} px are scaled down)"
        )
        typer.echo(
            f"serve it with `{page.serve_command}` and open http://localhost:8000/ "
            "(opened as a file, the page cannot load the model)"
        )


def _warn_stale_exports(run: Path, folder: Optional[Path], written: List[Path]) -> None:
    """One warning line per ONNX file in ``folder`` (not just written) that an older step of the bundle exported."""
    from cyclekit.inference.provenance import stale_exports_after

    for note in stale_exports_after(run, folder, written):
        typer.echo(f"warning: {note}", err=True)
