"""`cyclekit data list | download | check | demo`: the datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cyclekit.cli.common import app, friendly
from cyclekit.errors import CyclekitError

data_app = typer.Typer(no_args_is_help=True, help="List, download and check datasets.")
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list() -> None:
    """The dataset catalogue (canonical CycleGAN and pix2pix datasets, MNIST)."""
    from cyclekit.data.catalogue import CATALOGUE
    from cyclekit.data.download import is_cached

    for name, info in CATALOGUE.items():
        here = "cached" if is_cached(name) else ""
        typer.echo(f"{name:24s} {info.description}  {here}")


@data_app.command("download")
@friendly
def data_download(
    name: str = typer.Argument(..., help="Dataset name from `cyclekit data list`."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Default: $CYCLEKIT_CACHE or ~/.cache/cyclekit"),
) -> None:
    """Download and unpack a catalogue dataset into the cache."""
    from cyclekit.data.download import fetch_dataset

    path = fetch_dataset(name, cache_dir)
    typer.echo(f"{name}: {path}")


@data_app.command("check")
@friendly
def data_check(
    folder: Path = typer.Argument(..., help="A dataset folder (trainA/trainB/...) or an image folder."),
) -> None:
    """Report counts, sizes, modes, unreadable and duplicate files per folder, and which data
    sources (data.kind) and recipes can train on it; exit 1 when none can."""
    from cyclekit.data.check import check_folder, format_report
    from cyclekit.recipes import RECIPES

    report = check_folder(folder)
    typer.echo(format_report(report))
    typer.echo("")
    for line in report.verdict({name: recipe.needs for name, recipe in RECIPES.items()}):
        typer.echo(f"verdict: {line}")
    problems = report.blocking_problems()
    if not report.usable:
        # the likeliest fix first: a half-missing trainA/trainB pair says more than seven sources' reasons
        if problems:
            why = problems[0]
        elif not any(f.readable_count for f in report.folders):
            why = (
                f"{folder} holds no readable images (nor the files of another data kind; each source's reason is above)"
            )
        else:
            why = "each source's reason is above"
        raise CyclekitError(f"no data source can read {folder}, so training would refuse it: {why}")
    for problem in problems:
        typer.echo(f"warning: {problem}")


@data_app.command("demo")
@friendly
def data_demo(
    out: Optional[Path] = typer.Option(None, "--out", help="Folder to write (default: in the cache)."),
    config: str = typer.Option("demo", "--config", help="Config whose data.demo_* settings to use."),
) -> None:
    """Generate the built-in summer -> autumn demo dataset (offline) and print its folder."""
    from cyclekit.data.sources import locate_data
    from cyclekit.recipes import load_config

    cfg = load_config(config)
    if cfg.data.kind != "demo":
        raise CyclekitError(f"config {config} does not use the demo dataset (data.kind is {cfg.data.kind})")
    if out is not None:
        from cyclekit.data.demo import generate_demo

        d = cfg.data
        typer.echo(generate_demo(out, d.demo_train, d.demo_test, d.demo_size, cfg.seed))
        return
    typer.echo(locate_data(cfg.data, None, None, cfg.seed))
