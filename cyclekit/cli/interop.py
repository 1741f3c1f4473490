"""`cyclekit import` and `cyclekit pretrained list | download`: the reference code's generators as bundles."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cyclekit.cli.common import app, fail, friendly

pretrained_app = typer.Typer(help="The reference code's published pretrained generators (CycleGAN, Pix2Pix).")
app.add_typer(pretrained_app, name="pretrained")


@app.command("import")
@friendly
def import_cmd(
    files: List[Path] = typer.Argument(
        ..., help="Reference generator weights: one .pth (G, or a pretrained model), or the G_A and G_B pair."
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Bundle folder (default: imported/<name>)."),
    domains: Optional[str] = typer.Option(
        None, "--domains", help="Names of domains A and B, e.g. horse,zebra (default: from a NAME2NAME file name)."
    ),
    direction: Optional[str] = typer.Option(
        None, "--direction", help="A single file's direction: AtoB (default) or BtoA. A pair: G_A is AtoB."
    ),
    train_size: Optional[int] = typer.Option(
        None, "--train-size", help="The crop size it was trained at (not in the weights; the reference's is 256)."
    ),
    dropout: Optional[float] = typer.Option(
        None, "--dropout", help="A U-Net's dropout rate (not in the weights; default 0.5, the reference pix2pix's)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="-o: replace a bundle there that an import did not write (a run's trained bundle)."
    ),
) -> None:
    """Turn generator weights of the reference CycleGAN/pix2pix code into a cyclekit bundle."""
    from cyclekit.interop.reference import REFERENCE_TRAIN_SIZE, import_files

    if direction is not None and direction not in ("AtoB", "BtoA"):
        fail(f"--direction: expected AtoB or BtoA, got {direction!r}")
    names = None
    if domains is not None:
        parts = [p.strip() for p in domains.split(",")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            fail(f"--domains: expected two different names, e.g. horse,zebra; got {domains!r}")
        names = {"A": parts[0], "B": parts[1]}
    if train_size is not None and train_size <= 0:
        fail(f"--train-size: must be > 0, got {train_size}")
    if dropout is not None and not 0 <= dropout < 1:
        fail(f"--dropout: must be in [0, 1), got {dropout}")
    first = files[0]
    name = first.parent.name if first.stem.startswith(("latest_net_", "best_net_")) else first.stem
    target = output or Path("imported") / (name or "model")
    bundle, imported = import_files(
        files,
        target,
        domains=names,
        direction=direction,
        train_size=REFERENCE_TRAIN_SIZE if train_size is None else train_size,
        dropout=dropout,
        overwrite=overwrite,
    )
    for item in imported:
        arch = item.architecture
        opts = ", ".join(f"{k} {v}" for k, v in arch.options.items() if k not in ("in_channels", "out_channels"))
        source, dest = (bundle.domains["A"], bundle.domains["B"])[:: 1 if item.direction == "AtoB" else -1]
        typer.echo(f"{item.path}: {item.direction} ({source} -> {dest}), {arch.arch} generator: {opts}")
        if item.dropped:
            typer.echo(f"  dropped {len(item.dropped)} instance-norm running statistics (old PyTorch saves)")
        for what in arch.assumed:
            typer.echo(f"  assumed: {what}")
    if train_size is None:
        typer.echo(
            f"  assumed: training size {REFERENCE_TRAIN_SIZE} px (not in the weights; the reference trains at "
            f"{REFERENCE_TRAIN_SIZE}; --train-scale and --int8 use it: pass --train-size N if it was another)"
        )
    typer.echo(f"wrote bundle {target}; try: cyclekit translate IMAGE --model {target}")


@pretrained_app.command("list")
def pretrained_list(
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Default: $CYCLEKIT_CACHE or ~/.cache/cyclekit"),
) -> None:
    """The published pretrained generators, and which are downloaded."""
    from cyclekit.data.catalogue import default_cache_dir
    from cyclekit.interop.pretrained import PRETRAINED, is_downloaded

    cache = cache_dir or default_cache_dir()
    for key, model in PRETRAINED.items():
        here = "downloaded" if is_downloaded(model, cache) else ""
        what = f"{model.source} -> {model.target}" + (f" ({model.note})" if model.note else "")
        typer.echo(f"{key:38s} {what:44s} {here}")


@pretrained_app.command("download")
@friendly
def pretrained_download(
    name: str = typer.Argument(..., help="A name from `cyclekit pretrained list` (cyclegan/NAME, pix2pix/NAME, NAME)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Bundle folder (default: in the cache)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Default: $CYCLEKIT_CACHE or ~/.cache/cyclekit"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="-o: replace a bundle there that an import did not write (a run's trained bundle)."
    ),
) -> None:
    """Download a pretrained generator (once) and import it into a bundle."""
    from cyclekit.interop.pretrained import download_pretrained

    path, bundle = download_pretrained(name, cache_dir, output, overwrite=overwrite)
    entry = bundle.networks["G_AtoB"]
    typer.echo(
        f"{name}: bundle {path} translates AtoB ({bundle.domains['A']} -> {bundle.domains['B']}), "
        f"{entry.arch} generator, trained at {bundle.train_size} px; try: cyclekit translate IMAGE --model {path}"
    )
