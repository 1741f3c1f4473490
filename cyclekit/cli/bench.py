"""`cyclekit bench`: a config's speed and memory on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cyclekit.cli.common import app, friendly
from cyclekit.errors import CyclekitError


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
