"""The run layer: from a config to a finished run folder. It sits above the recipes, the loop,
evaluation and the report, and wires them into one run:

- `cyclekit.run.folder`: the run folder (what cyclekit writes there), which run a command means
  and whether it starts afresh, continues or starts over (`RunIdentity`, decided there alone), and
  the settings that make it the same run (`fingerprint`);
- `cyclekit.run.data`: the run's data, located and opened once (`open_data`), and the recipe on it;
- `cyclekit.run.scoring`: the end-of-run scores (results.json) and the epoch-end evaluation;
- `cyclekit.run.bundle`: a bundle rebuilt from a checkpoint (`cyclekit bundle`);
- here: `train_run`, the train entry.

Recipes never import this layer.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclekit.config import Config, dump_config
from cyclekit.errors import CyclekitError
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import seed_everything
from cyclekit.run.bundle import rebuild_bundle
from cyclekit.run.data import build_recipe, open_data
from cyclekit.run.folder import (
    RunIdentity,
    adopt_run_settings,
    check_own_config,
    clear_run,
    fingerprint,
    identify_run,
    load_run_config,
    replace_train,
    resolve_resume,
    run_dir_of,
    same_file,
    upgrade_fingerprint,
)
from cyclekit.run.scoring import epoch_end, score_run, score_sampling_run
from cyclekit.train.loop import FitResult, fit


@dataclass
class RunReport:
    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]
    not_scored: str | None = None  # why there is no score record ({} evaluation), in one line


def train_run(
    config: Config,
    out_dir: Path,
    resume: str | None = None,
    overwrite: bool = False,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
    config_source: Path | None = None,
    on_start: Callable[[str], None] | None = None,
) -> RunReport:
    """Train `config` into `out_dir/config.name`, returning where it went and how it did.

    ``on_start(line)``: the start lines (run folder, data, schedule, device), on rank 0.

    ``config_source``: the YAML file the config was read from. When it is the run's own
    config.yaml (`cyclekit train runs/x/config.yaml --name x`), that file is never rewritten, and a
    run whose settings would differ from it is refused.

    Started by torchrun (WORLD_SIZE > 1), this process joins the job first: rank 0 decides
    whether and from where to resume, every rank builds the recipe on its own data shard, and
    only rank 0 writes files and evaluates."""
    from cyclekit.data.folders import derive_seed
    from cyclekit.train import distributed

    ctx = distributed.setup(config.train.device)
    built: list[Any] = []
    try:
        config = replace_train(config, device=distributed.device_for(config.train.device, ctx))
        identity = RunIdentity(resume=resume, overwrite=overwrite, out=out_dir, name=config.name)
        run_dir = identity.run_dir
        if same_file(config_source, run_dir / "config.yaml"):
            ctx.on_main(lambda: check_own_config(config, run_dir / "config.yaml"))
        resume_path = ctx.on_main(identity.start)
        seed_everything(config.seed)
        # validates data and models on every rank
        recipe = ctx.everywhere(lambda: build_recipe(config, data_root=data_root, cache_dir=cache_dir))
        built.append(recipe)
        # What the config left to the data (a class folder's image size, channels, classes) is
        # filled in now: the run records, fingerprints and resumes that config.
        config = recipe.config
        if ctx.enabled:
            # Identical weights everywhere (DDP also broadcasts rank 0's), then each rank its own noise.
            seed_everything(derive_seed(config.seed, 1_000_003, ctx.rank))

        # Rank 0's epoch-end work; its errors (e.g. no FID weights for best_metric fid) stop every rank.
        after_epoch = None

        def make_epoch_end() -> None:
            nonlocal after_epoch
            after_epoch = epoch_end(config, recipe, run_dir, resume_path is not None)

        ctx.on_main(make_epoch_end)

        def start(resumed_from: int | None) -> None:
            """Only once every check (including the resume's) has passed: a refused command changes nothing."""
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume_path is None:
                clear_run(run_dir)  # cyclekit's files of an earlier run (--overwrite), never anyone else's
            dumped = config
            root = recipe.data.root
            if root is not None:
                # Record the data folder the run trains on (--data-root, data.root, the cache, the
                # generated demo set), so a resume by name, `cyclekit eval RUN` and `cyclekit train
                # RUN/config.yaml` use exactly it. Sources that read no folder have no root to record.
                dumped = dataclasses.replace(config, data=config.data.with_root(str(Path(root).resolve())))
            if not same_file(config_source, run_dir / "config.yaml"):
                dump_config(dumped, run_dir / "config.yaml")
            if after_epoch is not None:
                after_epoch.prepare(resumed_from)

        result = fit(
            recipe,
            run_dir,
            config.train,
            resume=resume_path,
            fingerprint=fingerprint(config),
            upgrade_fingerprint=upgrade_fingerprint,
            before_start=start,
            after_epoch=after_epoch,
            plot_losses=_plot_losses,
            announce=None
            if on_start is None
            else lambda schedule: on_start(_start_lines(config, recipe, run_dir, schedule)),
        )

        def final_scores() -> tuple[dict[str, Any], str | None]:
            with distributed.solo_batch_norm(recipe.state.nets, ctx):
                return score_run(config, recipe, run_dir)

        evaluation, not_scored = ctx.on_main(final_scores)
        # Now with the end-of-training scores. (Every rank takes part in on_main; only rank 0 has the hook.)
        ctx.on_main(lambda: after_epoch.refresh_report() if after_epoch is not None else None)
        return RunReport(run_dir, result, evaluation, not_scored)
    finally:
        if ctx.enabled:
            for recipe in built:
                recipe.state.forward = dict(recipe.state.nets)  # drop the DDP wrappers first
            built.clear()
            # All ranks end together (finished, or a stop/error they agreed on) unless something
            # else is propagating, e.g. a lost peer: then no rank is waiting to meet this one.
            failing = sys.exc_info()[1]
            agreed = failing is None or isinstance(failing, CyclekitError)
            distributed.teardown(wait_s=60 if agreed else 0)


def _plot_losses(rows: list[dict[str, Any]], path: Path) -> Any:
    from cyclekit.report.plots import plot_losses

    return plot_losses(rows, path)


def _start_lines(config: Config, recipe: Recipe, run_dir: Path, schedule: str) -> str:
    return (
        f"training {config.name} ({config.recipe}) into {run_dir}\n"
        f"  data: {recipe.data_summary()}\n"
        f"  schedule: {schedule}"
        + (f"\n  warning: no scores: {why}; training goes on without them" if (why := recipe.unscored_reason()) else "")
    )


__all__ = [
    "RunIdentity",
    "RunReport",
    "adopt_run_settings",
    "build_recipe",
    "fingerprint",
    "identify_run",
    "load_run_config",
    "open_data",
    "rebuild_bundle",
    "replace_train",
    "resolve_resume",
    "run_dir_of",
    "score_sampling_run",
    "train_run",
    "upgrade_fingerprint",
]
