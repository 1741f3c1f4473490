"""`cyclekit train`, `bundle`, `presets` and `recipes`: training runs and what they are made from."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cyclekit.cli.common import app, friendly, progress_line
from cyclekit.train.launch import job_rank


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
    from cyclekit.run import adopt_run_settings, identify_run, load_run_config
    from cyclekit.train.launch import launch, under_torchrun

    extra = list(overrides or [])
    if device:
        extra.append(f"train.device={device}")
    if quiet:
        extra.append("train.progress=false")
    # Which run, decided in one place (cyclekit.run.folder.RunIdentity).
    run = identify_run(config, resume=resume, name=name, out=out, overwrite=overwrite)
    assert run.config is not None
    if run.by_name:
        # Resume by name: the run's own config.yaml (and the data folder it recorded), nothing else.
        assert run.resumed_dir is not None
        cfg = load_run_config(run.resumed_dir, [*extra, f"name={run.name}"])
    else:
        # checked once, before any process
        cfg = load_config(run.config, [*extra, *([f"name={run.name}"] if run.name else [])])
    if run.name:
        extra.append(f"name={run.name}")
    run = run.settled(cfg)
    assert run.out is not None
    if run.continues():
        cfg = adopt_run_settings(cfg, run.settings_of, Path(run.config))
    if (nproc != 1 or nnodes != 1) and not under_torchrun():
        args = ["train", run.config, "--out", str(run.out)]
        for key, value in (("--data-root", data_root), ("--resume", resume)):
            if value is not None:
                args += [key, str(value)]
        for item in extra:
            args += ["--set", item]
        args += ["--overwrite"] if overwrite else []
        run_id = f"cyclekit-{cfg.name}" if nnodes > 1 else None
        code = launch(args, nproc, nnodes, rdzv_endpoint, run_id=run_id, checkpoint=run.checkpoint)
        if code:
            raise typer.Exit(code)
        where = run.run_dir if run.run_dir.is_dir() else "on the machine that ran rank 0"
        typer.echo(f"trained {cfg.name} on {nnodes * nproc} processes; results: {where}")
        return
    from cyclekit.config import resolve_config_path
    from cyclekit.run import train_run

    source = resolve_config_path(run.config)
    report = train_run(
        cfg,
        run.out,
        resume=resume,
        overwrite=overwrite,
        data_root=data_root,
        config_source=source,
        on_start=progress_line,
    )
    if job_rank() != 0:
        return  # rank 0 reports
    fit = report.fit
    resumed = f" (resumed at step {fit.resumed_from})" if fit.resumed_from is not None else ""
    typer.echo(f"trained {cfg.name}: {fit.step} steps, {fit.epoch} epochs, {fit.seconds:.1f} s{resumed}")
    scores = report.evaluation
    if scores.get("directions"):
        from cyclekit.evaluation.results import format_results

        typer.echo(f"scores at step {scores.get('step')} (results.json):")
        typer.echo(format_results(scores))
    elif scores.get("sampling"):
        from cyclekit.evaluation.results import format_sampling

        typer.echo(f"scores at step {scores.get('step')} (results.json):")
        typer.echo("  " + format_sampling(scores["sampling"]))
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
    from cyclekit.run import rebuild_bundle

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
