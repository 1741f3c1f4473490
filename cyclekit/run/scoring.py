"""A run's scores: at the end of training (results.json, the run's one score record), during it
(`train.eval_every`: the loop's epoch-end work), and `cyclekit eval RUN` for a recipe that samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cyclekit.config import Config
from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.recipe import Recipe
from cyclekit.run.data import build_recipe
from cyclekit.run.folder import load_run_config
from cyclekit.train.loop import checkpoint_path


def score_run(config: Config, recipe: Recipe, run_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The end-of-training scores, as the run's one score record, results.json (what `cyclekit eval`
    writes too): a translating bundle scored on the run's test split by `cyclekit eval`'s code (FID
    when the Inception weights are already cached), a sampling recipe by its own measures. ({}, why)
    when there is nothing to score (no test split, unpaired test images without the FID weights, a
    recipe or data with no measure); then no results.json is written."""
    from cyclekit.errors import DataError
    from cyclekit.evaluation.evaluate import (
        EvalData,
        cached_fid_network,
        evaluate,
        has_scores,
        why_not_scored,
        write_results,
    )

    root = recipe.data.root
    if not recipe.translates or root is None:
        scores = recipe.evaluate(run_dir)
        if not scores:
            return {}, no_sampling_scores_reason(config, recipe)
        results = {"step": recipe_step(run_dir), "bundle": str(run_dir / "bundle"), "sampling": scores}
    else:
        try:
            results = evaluate(
                run_dir / "bundle",
                EvalData.of(config.data, root),
                inception=cached_fid_network(),
                device=str(recipe.device),
            )
        except DataError as exc:
            return {}, str(exc).replace(" (pass --data DIR with testA/ and testB/)", "")
        if not has_scores(results):
            return {}, why_not_scored(results)
    write_results(results, run_dir / "results.json")
    return results, None


def no_sampling_scores_reason(config: Config, recipe: Recipe) -> str:
    """Why a recipe that samples (or a translation run without a data folder) has no scores."""
    from cyclekit.evaluation.evaluate import sampling_unscored_reason

    known = recipe.unscored_reason()  # known before training, e.g. which test files the data lacks
    if known:
        return known
    if recipe.translates:
        return "the run has no data folder with a test split"
    reason = sampling_unscored_reason(config.recipe, config.data.kind)
    return reason or f"nothing to score: the {config.data.kind} data has no test split for the {config.recipe} scores"


def score_sampling_run(run_dir: Path, device: str = "auto", output: Path | None = None) -> dict[str, Any]:
    """`cyclekit eval RUN` for a recipe that samples: its bundle's generator scored by the recipe's
    own measures (the classifier yardstick), written to ``output`` (default: the run's results.json)."""
    from cyclekit.evaluation.evaluate import write_results
    from cyclekit.inference.bundle import read_bundle

    config = load_run_config(run_dir, [f"train.device={device}"])
    recipe = build_recipe(config)
    bundle = read_bundle(run_dir / "bundle")
    if bundle.samples is None:
        raise CyclekitError(f"{run_dir / 'bundle'} translates; score it with `cyclekit eval` on its test split")
    recipe.load_bundle(run_dir / "bundle", bundle)
    scores = recipe.evaluate(run_dir)
    if not scores:
        raise CyclekitError(f"{run_dir}: {no_sampling_scores_reason(config, recipe)}")
    results = {"step": bundle.step, "epoch": bundle.epoch, "bundle": str(run_dir / "bundle"), "sampling": scores}
    write_results(results, output or run_dir / "results.json")
    return results


def recipe_step(run_dir: Path) -> int | None:
    from cyclekit.inference.bundle import read_bundle

    try:
        return read_bundle(run_dir / "bundle").step
    except CyclekitError:
        return None


def epoch_end(config: Config, recipe: Recipe, run_dir: Path, resuming: bool) -> Any:
    """Rank 0's epoch-end work (evaluation, best bundle, timing, report); see cyclekit.evaluation.tracking."""
    from cyclekit.evaluation.evaluate import EvalData
    from cyclekit.evaluation.tracking import EpochEnd

    t = config.train
    data = None
    sampler_scores = None
    if t.eval_every and recipe.translates:
        if recipe.data.root is None:
            raise ConfigError(f"train.eval_every: the {config.recipe} run has no data folder with a test split")
        data = EvalData.of(config.data, recipe.data.root)
    elif t.eval_every:

        def sampler_scores() -> dict[str, Any]:
            return recipe.evaluate(run_dir)

    return EpochEnd(
        run_dir,
        data,
        t.eval_every,
        t.best_metric,
        str(recipe.device),
        0 if resuming else None,
        checkpoint=checkpoint_path(run_dir),
        sampler_scores=sampler_scores,
    )
