"""The `cyclekit` command. The only module that knows typer and argv: it turns arguments into
library calls and library errors into one line on stderr with a non-zero exit."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, List, Optional

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from cyclekit.errors import CyclekitError  # noqa: E402

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="cyclekit: unpaired image-to-image translation (CycleGAN) and classic GANs.",
)
data_app = typer.Typer(no_args_is_help=True, help="List, download and check datasets.")
app.add_typer(data_app, name="data")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_ERROR) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one line on stderr, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from cyclekit.train.loop import TrainingInterrupted

        try:
            return fn(*args, **kwargs)
        except TrainingInterrupted as exc:
            fail(str(exc), EXIT_INTERRUPTED)
        except CyclekitError as exc:
            fail(_one_line(str(exc)))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail("out of memory (try a smaller data.crop_size, data.batch_size or --tile)")
        except OSError as exc:  # disk full, permission denied, ...
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            fail(f"{exc.strerror or exc}{where}")

    return wrapper


def _one_line(message: str) -> str:
    """Errors raised in DataLoader workers come back wrapped in the worker's traceback text;
    keep only the original message (the last line, without its exception class)."""
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    return message


# --------------------------------------------------------------------------------------------
# train / sample


@app.command()
@friendly
def train(
    config: str = typer.Argument(..., help="Preset name (see `cyclekit presets`) or path to a YAML config."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset folder (trainA/trainB, or images)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set train.epochs=5"),
    resume: Optional[str] = typer.Option(None, "--resume", help="'auto' (the run's last checkpoint) or a path."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: the config's name)."),
    out: Path = typer.Option(Path("runs"), "--out", help="Folder for run directories."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over even if the run has a checkpoint."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a GAN or CycleGAN from a preset or config file."""
    from cyclekit.config import load_config
    from cyclekit.recipes.run import train_run

    extra = list(overrides or [])
    if name:
        extra.append(f"name={name}")
    if device:
        extra.append(f"train.device={device}")
    if quiet:
        extra.append("train.progress=false")
    cfg = load_config(config, extra)
    report = train_run(cfg, out, resume=resume, overwrite=overwrite, data_root=data_root)
    fit = report.fit
    resumed = f" (resumed at step {fit.resumed_from})" if fit.resumed_from is not None else ""
    typer.echo(f"trained {cfg.name}: {fit.step} steps, {fit.epoch} epochs, {fit.seconds:.1f} s{resumed}")
    for key, value in report.evaluation.items():
        if not isinstance(value, (dict, list)):
            typer.echo(f"  {key}: {value}")
    typer.echo(f"results: {report.run_dir}  (samples/, metrics.jsonl, loss.png, bundle/, checkpoints/last.pt)")


@app.command()
def presets() -> None:
    """List the preset configs `cyclekit train NAME` accepts."""
    from cyclekit.config import CONFIG_DIR, list_presets, read_yaml

    for preset in list_presets():
        data = read_yaml(CONFIG_DIR / f"{preset}.yaml")
        typer.echo(f"{preset:24s} {data.get('description', '')}")


@app.command()
@friendly
def sample(
    run: Path = typer.Argument(..., help="Run dir or bundle dir of a trained GAN."),
    n: int = typer.Option(64, "-n", help="Number of samples."),
    output: Path = typer.Option(Path("samples.png"), "-o", "--output", help="PNG to write."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Write samples from a trained (DC)GAN generator as one PNG."""
    from cyclekit.data.ring import save_samples
    from cyclekit.inference import sample_gan

    if n <= 0:
        raise CyclekitError(f"-n: must be > 0, got {n}")
    samples = sample_gan(run, n, seed=seed, device=device)
    save_samples(samples, output)
    typer.echo(f"wrote {n} samples to {output}")


# --------------------------------------------------------------------------------------------
# data


@data_app.command("list")
def data_list() -> None:
    """The dataset catalogue (canonical CycleGAN datasets)."""
    from cyclekit.data.catalogue import CATALOGUE, default_cache_dir

    cache = default_cache_dir()
    for name, info in CATALOGUE.items():
        here = "cached" if (cache / name / "trainA").is_dir() else ""
        typer.echo(f"{name:24s} {info.description}  {here}")


@data_app.command("download")
@friendly
def data_download(
    name: str = typer.Argument(..., help="Dataset name from `cyclekit data list`."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Default: $CYCLEKIT_CACHE or ~/.cache/cyclekit"),
) -> None:
    """Download and unpack a catalogue dataset into the cache."""
    from cyclekit.data.catalogue import fetch_dataset

    path = fetch_dataset(name, cache_dir)
    typer.echo(f"{name}: {path}")


@data_app.command("check")
@friendly
def data_check(folder: Path = typer.Argument(..., help="A dataset folder (trainA/trainB/...) or an image folder.")) -> None:
    """Report counts, sizes, modes, unreadable and duplicate files per folder."""
    from cyclekit.data.check import check_folder, format_report

    report = check_folder(folder)
    typer.echo(format_report(report))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # outside a command (e.g. during imports)
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
