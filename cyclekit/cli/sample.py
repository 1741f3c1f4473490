"""`cyclekit sample`: samples from a trained GAN generator, driven by its bundle's sampling signature."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cyclekit.cli.common import app, friendly
from cyclekit.errors import CyclekitError


@app.command()
@friendly
def sample(
    run: Path = typer.Argument(..., help="Run dir or bundle dir of a trained GAN."),
    n: Optional[int] = typer.Option(
        None, "-n", help="Number of samples (default 64); with --class all, samples per class (default 10)."
    ),
    class_: Optional[str] = typer.Option(
        None, "--class", help="Conditional GANs: a class index or name, or all (one labelled row per class)."
    ),
    text: Optional[str] = typer.Option(
        None, "--text", help='Text-conditioned GANs (StackGAN): the caption to draw, e.g. "a red circle on the left".'
    ),
    output: Path = typer.Option(Path("samples.png"), "-o", "--output", help="PNG to write."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output file if it already exists."),
) -> None:
    """Write samples from a trained GAN generator as one PNG (a conditional one: of a class, or all; a
    text-conditioned one: of a caption). A stacked generator (StackGAN) shows every stage side by side."""
    from cyclekit.atomic import check_output_file, refuse_existing
    from cyclekit.data.images import save_grid
    from cyclekit.data.ring import save_samples
    from cyclekit.inference.sampling import (
        class_labels,
        missing_embedding,
        sample_stages,
        sampling_bundle,
        save_stage_grid,
        text_condition,
    )

    if n is not None and n <= 0:
        raise CyclekitError(f"-n: must be > 0, got {n}")
    check_output_file(output, (".png",))
    folder, _, samples = sampling_bundle(run)
    signature = samples.signature  # what the generator takes and gives: this drives everything below
    classes = signature.classes
    if text is not None and class_ is not None:
        raise CyclekitError("--text and --class: give one of them")
    if class_ is None and classes and text is None:
        class_ = "all"
    stacked = len(signature.outputs) > 1  # every stage shown side by side, fewer samples by default
    embedding = signature.input("embedding")
    labels, embeddings, title = None, None, ""
    if class_ is not None:
        default = (4 if stacked else 10) if class_ == "all" else (16 if stacked else 64)
        labels = class_labels(classes, class_, n or default)
        count = len(labels)
        title = "" if class_ == "all" else f"class {classes[labels[0]]}"
    else:
        count = n or (16 if stacked or embedding is not None else 64)
    if embedding is not None and text is None:
        raise CyclekitError(missing_embedding(folder, embedding))
    if text is not None:
        embeddings = text_condition(folder, [text]).expand(count, -1)
        title = f'"{text}"'
    refuse_existing(output, overwrite)  # once the arguments are known to be good, before any sampling
    stages = sample_stages(folder, count, seed, device, labels, embeddings)
    every_class = class_ == "all"
    rows = list(classes) if every_class else None
    per_row = count // len(classes) if every_class else max(1, int(count**0.5))
    if stacked:
        save_stage_grid(stages, output, per_row, title, row_labels=rows)
        sides = " and ".join(f"{s.shape[-1]} px" for s in stages)
        typer.echo(f"wrote {count} samples ({sides}) to {output}")
        return
    if every_class:
        save_grid(stages[-1], output, nrow=per_row, row_labels=rows)
    else:
        save_samples(stages[-1], output)
    typer.echo(f"wrote {count} samples to {output}")
