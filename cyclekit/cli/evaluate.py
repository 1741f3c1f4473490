"""`cyclekit eval`, `compare` and `report`: scores and results pages."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cyclekit.cli.common import app, friendly, stderr_line
from cyclekit.errors import CyclekitError


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
    from cyclekit.evaluation.results import check_score_output, eval_data, format_results, run_of, same_path
    from cyclekit.inference.bundle import bundle_dir, samples

    if max_images is not None and max_images < 2:
        raise CyclekitError(f"--max-images: must be >= 2, got {max_images}")
    if output is not None:
        check_score_output(output, overwrite)
    dev = str(resolve_device(device))
    if samples(model):
        from cyclekit.evaluation.results import format_sampling
        from cyclekit.run import score_sampling_run

        folder = bundle_dir(model)
        if run_of(folder) is None:
            raise CyclekitError(
                f"{folder} samples; a sampling model is scored within its run folder (cyclekit eval RUN)"
            )
        target = output or folder.parent / "results.json"
        results = score_sampling_run(folder.parent, dev, target)
        typer.echo(f"step {results['step']}: " + format_sampling(results["sampling"]))
        typer.echo(f"wrote {target}")
        if same_path(target, folder.parent / "results.json"):
            _refresh_report(folder.parent)
        return
    folder = bundle_dir(model)
    run_dir = run_of(folder)
    run_config = None
    if run_dir is not None:
        from cyclekit.run import load_run_config

        run_config = load_run_config(run_dir)
    test_data = eval_data(folder, run_config, data, size)
    # A bundle outside a run (imported, copied) is never written into: its scores go to -o FILE only.
    target = output or (run_dir / "results.json" if run_dir is not None else None)
    net = load_fid_network(inception, required=bool(fid)) if fid is not False else None
    results = evaluate(model, test_data, direction, net, dev, max_images, labels=labels)
    typer.echo(format_results(results))
    if not has_scores(results):
        where = f"; {target} not written" if target is not None else ""
        raise CyclekitError(f"nothing scored: {why_not_scored(results)}{where}")
    if target is None:
        typer.echo(f"not written: {folder} is not inside a run folder (-o FILE writes the scores)")
        return
    write_results(results, target)
    typer.echo(f"wrote {target}")
    if run_dir is not None and same_path(target, run_dir / "results.json"):
        _refresh_report(run_dir)


def _refresh_report(run_dir: Path) -> None:
    """The results page shows the run's scores: rewrite it after a new score record."""
    from cyclekit.evaluation.results import refresh_report

    try:
        page = refresh_report(run_dir)
    except CyclekitError as exc:
        stderr_line(f"warning: report.html not refreshed: {exc}")
        return
    if page is not None:
        typer.echo(f"wrote {page}")


@app.command()
@friendly
def compare(
    runs: List[Path] = typer.Argument(..., help="Run dirs (or results.json files) to put side by side."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Also write the table: .csv or .json."),
    html: Optional[Path] = typer.Option(
        None, "--html", help="Runs that sample (GANs): the comparison page to write (default: compare.html here)."
    ),
    no_html: bool = typer.Option(False, "--no-html", help="Write no comparison page, only the table."),
    device: str = typer.Option("auto", "--device", help="Where the page's samples are drawn."),
) -> None:
    """One table of several runs' scores (results.json, else the last evaluation during training). Runs
    scored by one yardstick are ranked; runs scored by different yardsticks are shown unranked. Runs that
    sample (GANs) also get one self-contained HTML page side by side: per-class sample grids, scores,
    training time and steps."""
    from cyclekit.evaluation.compare import collect, to_csv, to_text
    from cyclekit.evaluation.compare_page import DEFAULT_PAGE, check_page_target, sampling_runs, write_compare_page

    if output is not None and output.suffix not in (".csv", ".json"):
        raise CyclekitError(f"-o: {output} must end in .csv or .json")
    if html is not None and no_html:
        raise CyclekitError("--html and --no-html: give one of them")
    table = collect(runs)
    page = None
    if not no_html and sampling_runs(runs):
        from cyclekit.device import resolve_device

        page = html or DEFAULT_PAGE
        check_page_target(page)  # before any output: a foreign file is never replaced
        device = str(resolve_device(device))
    elif html is not None and not no_html:
        raise CyclekitError(f"--html {html}: none of the runs samples, so there is no comparison page to write")
    typer.echo(to_text(table))
    if output is not None:
        import json

        from cyclekit.atomic import atomic_write

        text = to_csv(table) if output.suffix == ".csv" else json.dumps(table, indent=2) + "\n"
        atomic_write(output, text)
        typer.echo(f"wrote {output}")
    if page is not None:
        write_compare_page(runs, table, page, device)
        typer.echo(f"wrote {page}")


@app.command()
@friendly
def report(run: Path = typer.Argument(..., help="Run dir.")) -> None:
    """(Re)write RUN/report.html: samples, loss curves, scores across epochs, config, timing."""
    from cyclekit.report.html import write_report

    typer.echo(f"wrote {write_report(run)}")
