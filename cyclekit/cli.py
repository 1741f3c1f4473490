"""The `cyclekit` command. The only module that knows typer and argv: it turns arguments into
library calls and library errors into one line on stderr with a non-zero exit."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, List, Optional

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from cyclekit.errors import CyclekitError, ReportedElsewhere, TrainingInterrupted  # noqa: E402

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="cyclekit: image-to-image translation (CycleGAN, Pix2Pix) and classic GANs.",
)
data_app = typer.Typer(no_args_is_help=True, help="List, download and check datasets.")
app.add_typer(data_app, name="data")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class _StderrHandler(logging.Handler):
    """Library warnings (skipped files, ...) as `warning: ...` lines on the *current* stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().splitlines())  # one line per warning
        _stderr_line(f"{record.levelname.lower()}: {message}")


def _warning_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Library warnings (Pillow's decompression-bomb warning, ...) as one `warning:` line."""
    _stderr_line(f"warning: {' '.join(str(message).split())}")


def _stderr_line(line: str) -> None:
    """One line on stderr; with a progress bar on screen, above it rather than inside it."""
    tqdm = sys.modules.get("tqdm")  # only when training has imported it: translate stays light
    if tqdm is not None:
        tqdm.tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


@app.callback()
def _setup() -> None:
    root = logging.getLogger("cyclekit")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        root.addHandler(_StderrHandler(logging.WARNING))
        root.propagate = False
    if _in_job():
        # A worker of a multi-process job: the launcher (or torchrun) stops the job with SIGTERM
        # and reports it; leave quietly rather than with a traceback from the interrupted collective.
        import signal

        signal.signal(signal.SIGTERM, _leave_quietly)
    if _rank() != 0:
        # In a multi-process job every rank would repeat rank 0's warnings (skipped files, ...).
        root.setLevel(logging.ERROR)
        warnings.simplefilter("ignore")
    warnings.showwarning = _warning_line


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _rank() -> int:
    """This process's rank in a torchrun job (0 otherwise)."""
    return _env_int("RANK", 0)


def _in_job() -> bool:
    """A worker of a multi-process (torchrun) job."""
    return _env_int("WORLD_SIZE", 1) > 1


def _rank_prefix() -> str:
    return f"rank {_rank()}: " if _rank() else ""


def fail(message: str, code: int = EXIT_ERROR) -> None:
    # One line, whatever a file name or a damaged file's key put into the message.
    message = " ".join(message.splitlines())
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


OUT_OF_MEMORY = "out of memory (training: a smaller data.crop_size or data.batch_size; translate: --tile 512)"


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix into one line on stderr, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ReportedElsewhere:
            raise typer.Exit(EXIT_ERROR) from None  # rank 0 of a multi-process job printed it
        except TrainingInterrupted as exc:
            if _rank() != 0:
                raise typer.Exit(EXIT_INTERRUPTED) from None
            fail(str(exc), EXIT_INTERRUPTED)
        except CyclekitError as exc:
            fail(_rank_prefix() + _one_line(str(exc)))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail(OUT_OF_MEMORY)
        except RuntimeError as exc:  # torch.OutOfMemoryError (CUDA/MPS) is a RuntimeError; torch stays unimported
            if _lost_peer(exc):
                if os.environ.get("CYCLEKIT_LAUNCHER"):
                    raise typer.Exit(EXIT_ERROR) from None  # the launcher names the process that stopped
                fail(f"{_rank_prefix()}lost the connection to another process of the job (it stopped or was killed)")
            if not _is_out_of_memory(exc):
                raise
            fail(OUT_OF_MEMORY)
        except OSError as exc:  # disk full, permission denied, ...
            if exc.errno == errno.EPIPE:  # `cyclekit presets | head`: the reader left; so do we, quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise typer.Exit(EXIT_ERROR) from None
            if exc.errno == errno.ENOMEM:
                fail(OUT_OF_MEMORY)
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            fail(f"{exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]}{where}")

    return wrapper


_OOM_SPELLINGS = ("out of memory", "can't allocate memory", "cannot allocate memory", "defaultcpuallocator")


def _leave_quietly(signum: int, frame: Any) -> None:
    """Exit at once, as an unhandled SIGTERM would (no unwinding through data-loader teardown,
    which would print tracebacks); files are written atomically, so none is left half-written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)


_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL", "is killed by signal")


def _lost_peer(exc: BaseException) -> bool:
    """In a multi-process job: a collective failed because another process went away, or this one's
    data-loading processes were stopped with the job."""
    return _in_job() and any(s in str(exc) for s in _LOST)


def _is_out_of_memory(exc: BaseException) -> bool:
    """Every way torch and the OS say "out of memory": CUDA/MPS OOM, the CPU allocator's
    "DefaultCPUAllocator: can't allocate memory", ENOMEM."""
    text = str(exc).lower()
    return any(s in text for s in _OOM_SPELLINGS)


def _one_line(message: str) -> str:
    """Errors raised in DataLoader workers come back wrapped in the worker's traceback text;
    keep only the original message (the last line, without its exception class)."""
    if "Original Traceback" in message:
        last = [line for line in message.splitlines() if line.strip()][-1]
        return last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    return message


# --------------------------------------------------------------------------------------------
# train / sample


def _progress_line(line: str) -> None:
    """A line on stderr that never lands inside a progress bar."""
    import tqdm  # noqa: F401  (so that _stderr_line goes through its lock)

    _stderr_line(line)


@app.command()
@friendly
def train(
    config: Optional[str] = typer.Argument(
        None, help="Preset name (see `cyclekit presets`) or YAML config; leave out with --resume RUN_DIR."
    ),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset folder (trainA/trainB, or images)."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set train.epochs=5"),
    resume: Optional[str] = typer.Option(
        None, "--resume", help="'auto' (the run's last checkpoint), a run dir (runs/NAME) or a checkpoint file."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: the config's name)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Folder for run directories (default: the config's train.out_dir, runs)."
    ),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start over in a run folder that is not empty (cyclekit's own files only)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    nproc: int = typer.Option(
        1, "--nproc", help="Training processes on this machine, one per GPU (or several on a CPU): starts torchrun."
    ),
    nnodes: int = typer.Option(1, "--nnodes", help="Machines in the job; run the same command on each."),
    rdzv_endpoint: Optional[str] = typer.Option(
        None, "--rdzv-endpoint", help="Multi-machine: HOST:PORT of the first machine, the same on every machine."
    ),
) -> None:
    """Train any recipe from a preset or config file, or continue a run (--resume runs/NAME)."""
    from cyclekit.recipes import load_config
    from cyclekit.recipes.run import adopt_run_settings, load_run_config, run_dir_of
    from cyclekit.train.launch import launch, under_torchrun
    from cyclekit.train.loop import checkpoint_path

    extra = list(overrides or [])
    if device:
        extra.append(f"train.device={device}")
    if quiet:
        extra.append("train.progress=false")
    resumed_dir = run_dir_of(resume) if resume is not None else None
    if config is None:
        # Resume by name: the run's own config.yaml (and the data folder it recorded), nothing else.
        if resumed_dir is None:
            raise CyclekitError(
                "train needs a preset or config file (see `cyclekit presets`), or --resume RUN_DIR to continue a run"
            )
        if name is not None and name != resumed_dir.name:
            raise CyclekitError(f"--name {name}: --resume {resume} continues the run named {resumed_dir.name}")
        config = str(resumed_dir / "config.yaml")
        out, name = resumed_dir.parent, resumed_dir.name
        cfg = load_run_config(resumed_dir, [*extra, f"name={name}"])
    else:
        cfg = load_config(config, [*extra, *([f"name={name}"] if name else [])])  # checked once, before any process
    if name:
        extra.append(f"name={name}")
    out = out if out is not None else Path(cfg.train.out_dir)
    run_dir = resumed_dir or out / cfg.name
    if resume is not None and (run_dir / "config.yaml").is_file() and checkpoint_path(run_dir).exists():
        cfg = adopt_run_settings(cfg, run_dir, Path(config))
    if (nproc != 1 or nnodes != 1) and not under_torchrun():
        args = ["train", config, "--out", str(out)]
        for key, value in (("--data-root", data_root), ("--resume", resume)):
            if value is not None:
                args += [key, str(value)]
        for item in extra:
            args += ["--set", item]
        args += ["--overwrite"] if overwrite else []
        ckpt = checkpoint_path(out / cfg.name)
        run_id = f"cyclekit-{cfg.name}" if nnodes > 1 else None
        code = launch(args, nproc, nnodes, rdzv_endpoint, run_id=run_id, checkpoint=ckpt)
        if code:
            raise typer.Exit(code)
        where = out / cfg.name if (out / cfg.name).is_dir() else "on the machine that ran rank 0"
        typer.echo(f"trained {cfg.name} on {nnodes * nproc} processes; results: {where}")
        return
    from cyclekit.config import resolve_config_path
    from cyclekit.recipes.run import train_run

    source = resolve_config_path(config)
    report = train_run(
        cfg,
        out,
        resume=resume,
        overwrite=overwrite,
        data_root=data_root,
        config_source=source,
        on_start=lambda line: _progress_line(line),
    )
    if _rank() != 0:
        return  # rank 0 reports
    fit = report.fit
    resumed = f" (resumed at step {fit.resumed_from})" if fit.resumed_from is not None else ""
    typer.echo(f"trained {cfg.name}: {fit.step} steps, {fit.epoch} epochs, {fit.seconds:.1f} s{resumed}")
    scores = report.evaluation
    if scores.get("directions"):
        typer.echo(f"scores at step {scores.get('step')} (results.json):")
        typer.echo(format_results(scores))
    elif scores.get("sampling"):
        typer.echo(f"scores at step {scores.get('step')} (results.json):")
        numbers = {k: v for k, v in scores["sampling"].items() if isinstance(v, (int, float))}
        typer.echo("  " + "  ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
    elif report.not_scored:
        typer.echo(f"no scores (no results.json): {report.not_scored}")
    # Only what is there: a run with nothing to score has no results.json.
    written = [
        f"{name}/" if name in ("samples", "bundle") else name
        for name in ("report.html", "samples", "results.json", "bundle", "checkpoints/last.pt")
        if (report.run_dir / name).exists()
    ]
    typer.echo(f"results: {report.run_dir}" + (f"  ({', '.join(written)})" if written else ""))


@app.command("bundle")
@friendly
def bundle_cmd(
    run: Path = typer.Argument(..., help="Run dir."),
    best: bool = typer.Option(False, "--best", help="Rebuild bundle-best/ from checkpoints/best.pt."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Another checkpoint of this run."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Bundle folder to write (default: in the run)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="-o: replace a bundle there that this command did not write (another run's)."
    ),
) -> None:
    """Rebuild a run's inference bundle from its checkpoint (after a crash, or a deleted bundle/)."""
    from cyclekit.recipes.run import rebuild_bundle

    folder, step = rebuild_bundle(run, checkpoint=checkpoint, best=best, output=output, overwrite=overwrite)
    typer.echo(f"wrote {folder} (step {step})")


@app.command()
@friendly
def presets() -> None:
    """List the preset configs `cyclekit train NAME` accepts (they ship inside the package)."""
    from cyclekit.config import PRESET_DIR, list_presets, read_yaml

    for preset in list_presets():
        data = read_yaml(PRESET_DIR / f"{preset}.yaml")
        typer.echo(f"{preset:16s} {str(data.get('recipe', 'cyclegan')):9s} {data.get('description', '')}")


@app.command()
def recipes() -> None:
    """List the training recipes (the `recipe:` key of a config) and the data kinds each can read."""
    from cyclekit.config import compatible_kinds
    from cyclekit.data.sources import SOURCES
    from cyclekit.recipes import RECIPES

    for name, recipe in RECIPES.items():
        kinds = ", ".join(compatible_kinds(recipe, SOURCES))
        typer.echo(f"{name:10s} {recipe.description}\n{'':10s} data: {kinds} (default {recipe.default_kind})")


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
    from cyclekit.atomic import check_output_file
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
    _refuse_existing_output(output, overwrite)
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


def _refuse_existing_output(output: Path, overwrite: bool) -> None:
    """`sample` writes one file: one that is already there (a link included) is replaced only with
    --overwrite. Checked once the arguments are known to be good, before any sampling."""
    if not overwrite and os.path.lexists(output):
        raise CyclekitError(f"{output} already exists; pass --overwrite to replace it, or choose another -o file")


# --------------------------------------------------------------------------------------------
# data


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


# --------------------------------------------------------------------------------------------
# translate / export
#
# `translate --model x.onnx` must run where torch is not installed: nothing in this module imports
# torch at module level (the library imports happen inside the commands).


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
    """One warning line per ONNX file in ``folder`` (not just written) that an older step of the
    bundle exported: after a resumed training it would otherwise be used without a word."""
    from cyclekit.inference.bundle import bundle_dir, read_bundle
    from cyclekit.inference.provenance import bundle_name, stale_exports

    source = bundle_dir(run)
    folder = folder if folder is not None else source
    if not folder.is_dir():
        return
    runs = None
    if folder.resolve() != source.resolve():  # a folder that may hold other models' exports too
        bundle = read_bundle(source)
        runs = {bundle_name(bundle, source), bundle.run}
    for note in stale_exports(folder, source, skip=written, runs=runs):
        typer.echo(f"warning: {note}", err=True)


@app.command()
@friendly
def bench(
    config: str = typer.Argument(..., help="Preset name or YAML config to measure."),
    overrides: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set data.crop_size=64"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Dataset folder."),
    steps: int = typer.Option(10, "--steps", help="Timed training steps (after warm-up)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps first."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder to time `translate` on (default: generated)."),
    output: Path = typer.Option(Path("bench.json"), "-o", "--output", help="JSON file for the numbers."),
    compare: Optional[str] = typer.Option(
        None, "--compare", help="Another checkout (path) or git commit: time its training step side by side."
    ),
    rounds: int = typer.Option(3, "--rounds", help="--compare: alternating rounds per side."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
) -> None:
    """Measure a config on this machine: s/step, memory, FLOPs, inference latency, translate rate."""
    from cyclekit.atomic import check_output_file
    from cyclekit.bench import bench as run_bench
    from cyclekit.bench import compare_train_steps, format_table, write_json
    from cyclekit.recipes import load_config

    if steps < 1 or warmup < 0 or rounds < 1:
        raise CyclekitError("--steps and --rounds must be >= 1, --warmup >= 0")
    extra = list(overrides or []) + ([f"train.device={device}"] if device else [])
    check_output_file(output, (".json",))
    cfg = load_config(config, [*extra, "train.progress=false"])
    result = run_bench(cfg, config, data_root=data_root, steps=steps, warmup=warmup, images=images)
    typer.echo(format_table(result))
    if compare is not None:
        cmp = compare_train_steps(config, extra, compare, data_root, rounds=rounds, steps=steps, warmup=warmup)
        typer.echo(
            f"  vs {compare}: {cmp['ref_s_per_step']} s/step there, {cmp['this_s_per_step']} here: "
            f"{cmp['speedup']}x (medians of {cmp['steps_each']} steps each, {rounds} alternating rounds)"
        )
        result.notes.append(f"compare: {cmp}")
    write_json(result, output)
    typer.echo(f"wrote {output}")


# --------------------------------------------------------------------------------------------
# evaluation and reports


@app.command("eval")
@friendly
def eval_cmd(
    model: Path = typer.Argument(..., help="Run dir, or bundle dir (then --data is needed)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder (default: the run's dataset)."),
    direction: Optional[List[str]] = typer.Option(None, "--direction", help="AtoB / BtoA (default: every one)."),
    inception: Optional[Path] = typer.Option(
        None, "--inception", help="pt_inception-2015-12-05-6726825d.pth (default: the cache; downloaded when online)."
    ),
    fid: Optional[bool] = typer.Option(
        None, "--fid/--no-fid", help="FID/KID: required (--fid), skipped (--no-fid); default: when the weights load."
    ),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Score at most this many test images."),
    labels: Optional[bool] = typer.Option(
        None, "--labels/--no-labels", help="Label-map scores: always / never; default: when targets look like labels."
    ),
    size: Optional[int] = typer.Option(None, "--size", help="Image size for a bundle without its run."),
    device: str = typer.Option("auto", "--device"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Write the scores to this .json file only (default: the run's results.json)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="-o: replace an existing file that is not a cyclekit score record."
    ),
) -> None:
    """Score a run: a translation model on the test split(s) (L1/PSNR/SSIM, label scores, FID and KID), a
    GAN that samples by its recipe's measures (class accuracy, classes covered, classifier Frechet distance).
    A bundle outside a run folder is scored without writing anything unless -o FILE is given."""
    from cyclekit.device import resolve_device
    from cyclekit.evaluation.evaluate import evaluate, has_scores, load_fid_network, why_not_scored, write_results

    if max_images is not None and max_images < 2:
        raise CyclekitError(f"--max-images: must be >= 2, got {max_images}")
    if output is not None:
        _check_score_output(output, overwrite)
    dev = str(resolve_device(device))
    if _samples(model):
        from cyclekit.recipes.run import score_sampling_run

        folder = _bundle_folder(model)
        if not (folder.parent / "config.yaml").is_file():
            raise CyclekitError(
                f"{folder} samples; a sampling model is scored within its run folder (cyclekit eval RUN)"
            )
        target = output or folder.parent / "results.json"
        results = score_sampling_run(folder.parent, dev, target)
        numbers = {k: v for k, v in results["sampling"].items() if isinstance(v, (int, float))}
        typer.echo(f"step {results['step']}: " + "  ".join(f"{k} {v:.4g}" for k, v in numbers.items()))
        typer.echo(f"wrote {target}")
        if _same_path(target, folder.parent / "results.json"):
            _refresh_report(folder.parent)
        return
    eval_data, run_dir = _eval_data(model, data, size)
    # A bundle outside a run (imported, copied) is never written into: its scores go to -o FILE only.
    target = output or (run_dir / "results.json" if run_dir is not None else None)
    net = load_fid_network(inception, required=bool(fid)) if fid is not False else None
    results = evaluate(model, eval_data, direction, net, dev, max_images, labels=labels)
    typer.echo(format_results(results))
    if not has_scores(results):
        where = f"; {target} not written" if target is not None else ""
        raise CyclekitError(f"nothing scored: {why_not_scored(results)}{where}")
    if target is None:
        typer.echo(f"not written: {_bundle_folder(model)} is not inside a run folder (-o FILE writes the scores)")
        return
    write_results(results, target)
    typer.echo(f"wrote {target}")
    if run_dir is not None and _same_path(target, run_dir / "results.json"):
        _refresh_report(run_dir)


def _check_score_output(path: Path, overwrite: bool) -> None:
    """`eval -o FILE`: a .json file that is new, a cyclekit score record, or --overwrite."""
    if path.suffix != ".json":
        raise CyclekitError(f"-o: {path} must end in .json")
    if path.is_dir():
        raise CyclekitError(f"-o: {path} is a folder; name a .json file")
    if path.exists() and not overwrite and not _is_score_record(path):
        raise CyclekitError(
            f"-o: {path} exists and is not a score record cyclekit wrote; "
            "pick another -o, or replace it with --overwrite"
        )


def _is_score_record(path: Path) -> bool:
    """A results.json as `cyclekit eval` and training write it (or a `compare -o` table)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and ("directions" in data or "sampling" in data or {"rows", "columns"} <= set(data))


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _refresh_report(run_dir: Path) -> None:
    """The results page shows the run's scores: rewrite it after a new score record."""
    if not (run_dir / "metrics.jsonl").is_file():
        return
    from cyclekit.report.html import write_report

    try:
        typer.echo(f"wrote {write_report(run_dir)}")
    except CyclekitError as exc:
        _stderr_line(f"warning: report.html not refreshed: {exc}")


def _samples(model: Path) -> bool:
    """Whether ``model`` (a run or bundle folder) holds a generator that samples."""
    from cyclekit.inference.bundle import read_bundle

    try:
        return read_bundle(_bundle_folder(model)).samples is not None
    except CyclekitError:
        return False  # the translation path reports what is wrong with it


def _bundle_folder(model: Path) -> Path:
    from cyclekit.inference.bundle import bundle_dir

    return bundle_dir(model)


def _eval_data(model: Path, data: Optional[Path], size: Optional[int]) -> tuple[Any, Optional[Path]]:
    """The test data of a run (its config.yaml) or, for a bare bundle, of --data at the bundle's size."""
    from cyclekit.evaluation.evaluate import EvalData
    from cyclekit.inference.bundle import read_bundle

    folder = _bundle_folder(model)
    run_dir = folder.parent if (folder.parent / "config.yaml").is_file() else None
    if run_dir is not None:
        from cyclekit.data.sources import locate_data
        from cyclekit.recipes.run import load_run_config

        cfg = load_run_config(run_dir)
        if data is not None:
            root = data
        else:
            from cyclekit.errors import DataError

            try:
                root = locate_data(cfg.data, None, None, cfg.seed)
            except DataError as exc:
                raise DataError(f"{str(exc).replace('--data-root', '--data')} (the run's data is not found)") from None
        return EvalData.of(cfg.data, root, size), run_dir
    if data is None:
        raise CyclekitError(f"{folder} is a bundle without its run: pass --data DIR (a folder with testA/ and testB/)")
    bundle = read_bundle(folder)
    crop = size or bundle.train_size
    if not crop:
        raise CyclekitError(f"{folder} does not record its training size: pass --size N")
    return EvalData(data, crop, crop, "resize_and_crop", bundle.channels or 3), None


def format_results(results: dict[str, Any]) -> str:
    """One line per direction and baseline: the scores that are there."""
    from cyclekit.evaluation.evaluate import METRICS

    lines = []
    not_scored = results.get("not_scored", {})
    for direction, row in results["directions"].items():
        counts = results.get("counts", {}).get(direction, {})
        if direction in not_scored:  # counted, not translated: nothing could score the translations
            lines.append(
                f"{direction}: {counts.get('sources', '?')} images, reference {counts.get('reference_split', '?')} "
                f"({counts.get('reference', '?')} images): not scored"
            )
            continue
        lines.append(
            f"{direction}: {counts.get('translated', '?')} images, reference {counts.get('reference_split', '?')}"
        )
        rows = [("model", row), *results.get("baselines", {}).get(direction, {}).items()]
        for label, values in rows:
            cells = [f"{m} {values[m]:.4g}" for m in METRICS if isinstance(values.get(m), (int, float))]
            if cells:
                lines.append(f"  {label:12s} " + "  ".join(cells))
    missing = results.get("reproducibility", {}).get("fid_missing")
    if missing and "not requested" not in missing and len(not_scored) < len(results["directions"]):
        lines.append(f"  (no FID/KID: {missing})")
    for direction, metrics in results.get("worse_than_mean_target", {}).items():
        lines.append(
            f"  warning: {direction} scores worse than the mean-target image on {', '.join(metrics)}: "
            "the model has not learned this mapping (yet)"
        )
    return "\n".join(lines)


@app.command()
@friendly
def compare(
    runs: List[Path] = typer.Argument(..., help="Run dirs (or results.json files) to put side by side."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Also write the table: .csv or .json."),
) -> None:
    """One table of several runs' scores (results.json, else the last evaluation during training)."""
    from cyclekit.evaluation.compare import collect, to_csv, to_text

    if output is not None and output.suffix not in (".csv", ".json"):
        raise CyclekitError(f"-o: {output} must end in .csv or .json")
    table = collect(runs)
    typer.echo(to_text(table))
    if output is not None:
        import json

        from cyclekit.atomic import atomic_write

        text = to_csv(table) if output.suffix == ".csv" else json.dumps(table, indent=2) + "\n"
        atomic_write(output, text)
        typer.echo(f"wrote {output}")


@app.command()
@friendly
def report(run: Path = typer.Argument(..., help="Run dir.")) -> None:
    """(Re)write RUN/report.html: samples, loss curves, scores across epochs, config, timing."""
    from cyclekit.report.html import write_report

    typer.echo(f"wrote {write_report(run)}")


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:  # outside a command (e.g. during imports)
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        # A command line typer cannot parse (a missing value, an unknown option): one line, as for
        # every other bad input, instead of a framed box.
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {' '.join(exc.format_message().split())}{hint}", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
