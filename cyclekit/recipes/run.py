"""From a config to a finished run directory: pick the recipe, set up the folder, train, evaluate."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclekit.config import Config, dump_config
from cyclekit.data.protocol import RunData
from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.recipe import Recipe
from cyclekit.recipes import RECIPES, config_from_dict, get_recipe
from cyclekit.recipes.common import seed_everything
from cyclekit.train.loop import CHECKPOINT_NAME, FitResult, checkpoint_path, fit

# 5: optim keys the players' optimizer does not read are null (and alpha is recorded); 4: loss options in the
# recipe section; 3: data.<kind>: sections; 2: flat data keys
FINGERPRINT_VERSION = 5


@dataclass
class RunReport:
    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]
    not_scored: str | None = None  # why there is no score record ({} evaluation), in one line


def open_data(config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> tuple[Config, RunData]:
    """The run's data, located once (``data_root`` as given, else data.root, the catalogue's cache
    or a download, the generated demo set) and opened through its Source: the config with what it
    leaves to the data filled in (the recipe's `fit_to_data`), and the train and test splits."""
    from cyclekit.data.sources import locate_data

    root = locate_data(config.data, data_root, cache_dir, config.seed)
    config = get_recipe(config.recipe).fit_to_data(config, root)
    return config, RunData.open(config.data, root, config.seed)


def build_recipe(config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> Recipe:
    """The recipe of ``config``, given its data (`open_data`)."""
    config, data = open_data(config, data_root, cache_dir)
    return get_recipe(config.recipe)(config, data)


def fingerprint(config: Config) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes it."""
    d = config.to_dict()
    return {
        "version": FINGERPRINT_VERSION,
        "recipe": d["recipe"],
        "seed": d["seed"],
        "model": d["model"],
        "data": {k: v for k, v in config.data.flat().items() if k not in ("root", "workers", "strict")},
        "optim": d["optim"],
        "train": {k: d["train"][k] for k in ("epochs", "decay_epochs")},
        "options": d.get(config.recipe, {}),
    }


def upgrade_fingerprint(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of an earlier cyclekit stored its settings in an earlier layout (0.1: before
    recipe sections existed; version 2: before data sources had their own options; version 3:
    before loss options moved into the recipe's section; version 4: before the optim keys were
    read per player, when RMSprop runs recorded Adam's betas): rebuild that config in today's
    layout and fingerprint it, so such a run still resumes."""
    if stored.get("version") == FINGERPRINT_VERSION:
        return stored
    raw = {k: v for k, v in stored.items() if k not in ("version", "options")}
    if stored.get("version") in (2, 3, 4) and isinstance(stored.get("recipe"), str):
        raw[stored["recipe"]] = stored.get("options") or {}
    config_logger = logging.getLogger("cyclekit.config")
    level = config_logger.level
    config_logger.setLevel(logging.ERROR)  # the moved keys are ours, not the user's: no warnings
    try:
        return fingerprint(config_from_dict(raw))
    except (ConfigError, TypeError, AttributeError):
        return stored  # compared as it is: reported as a different config
    finally:
        config_logger.setLevel(level)


# What a run leaves in its folder (see README "train"); anything else there is not cyclekit's.
RUN_FILES = (
    "config.yaml",
    "checkpoints",
    "metrics.jsonl",
    "loss.png",
    "samples",
    "bundle",
    "bundle-best",
    "best.json",
    "eval.json",
    "evals.jsonl",
    "results.json",
    "report.html",
    "timing.json",
    "tensorboard",
)
# What a run writes before its first checkpoint: a run killed that early is started over by --resume auto.
EARLY_FILES = ("config.yaml", "checkpoints", "metrics.jsonl", "loss.png", "samples", "tensorboard")


def run_contents(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` (sorted; temporary files of interrupted writes left out)."""
    from cyclekit.atomic import OLD_SUFFIX, TEMP_SUFFIX

    if not run_dir.is_dir():
        return []
    return sorted(
        p.name for p in run_dir.iterdir() if not p.name.endswith((TEMP_SUFFIX, OLD_SUFFIX, ".tmp", ".tmp.png"))
    )


def _listing(names: list[str], limit: int = 4) -> str:
    shown = [f"{n}/" if n in ("checkpoints", "samples", "bundle", "bundle-best", "tensorboard") else n for n in names]
    return ", ".join(shown[:limit]) + (f" and {len(shown) - limit} more" if len(shown) > limit else "")


def resolve_resume(run_dir: Path, resume: str | None, overwrite: bool) -> Path | None:
    """Where a run starts: `None` = afresh, else the checkpoint to continue.

    ``resume`` None: a fresh run, into a folder that is missing or empty, unless ``overwrite``
    (then cyclekit's own files there are replaced, anyone else's left alone). `auto`: the run
    dir's checkpoint; without one, a fresh run if the folder holds at most what a run writes
    before its first checkpoint. Otherwise a path to a checkpoint (or a run dir)."""
    ckpt = checkpoint_path(run_dir)
    if resume is None:
        contents = run_contents(run_dir)
        if contents and not overwrite:
            if ckpt.exists():
                raise CyclekitError(
                    f"{run_dir} already has a checkpoint: continue it with --resume auto, "
                    "start over with --overwrite, or pick another --name"
                )
            ours = [n for n in contents if n in RUN_FILES]
            others = [n for n in contents if n not in RUN_FILES]
            held = [f"a run ({_listing(ours)})"] if ours else []
            held += [f"files cyclekit did not write ({_listing(others)})"] if others else []
            raise CyclekitError(
                f"{run_dir} already holds {' and '.join(held)}: pick another --name (or --out), or start over "
                "there with --overwrite (cyclekit's own files are replaced, any others left alone)"
            )
        return None
    if resume == "auto":
        if ckpt.exists():
            return ckpt
        later = [n for n in run_contents(run_dir) if n in RUN_FILES and n not in EARLY_FILES]
        if later and not overwrite:
            raise CyclekitError(
                f"{run_dir} has no checkpoint to continue ({ckpt} is missing) but holds a trained run "
                f"({_listing(later)}): start over with --overwrite, or pick another --name"
            )
        return None
    path = Path(resume)
    if path.is_dir():
        path = checkpoint_path(path) if checkpoint_path(path).exists() else path / "last.pt"
    if not path.is_file():
        raise CyclekitError(f"checkpoint not found: {resume}")
    return path


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
        run_dir = out_dir / config.name
        if _same_file(config_source, run_dir / "config.yaml"):
            ctx.on_main(lambda: _check_own_config(config, run_dir / "config.yaml"))
        resume_path = ctx.on_main(lambda: resolve_resume(run_dir, resume, overwrite))
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
        epoch_end = None

        def make_epoch_end() -> None:
            nonlocal epoch_end
            epoch_end = _epoch_end(config, recipe, run_dir, resume_path is not None)

        ctx.on_main(make_epoch_end)

        def start(resumed_from: int | None) -> None:
            """Only once every check (including the resume's) has passed: a refused command changes nothing."""
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume_path is None:
                _clear_run(run_dir)  # cyclekit's files of an earlier run (--overwrite), never anyone else's
            dumped = config
            root = recipe.data.root
            if root is not None:
                # Record the data folder the run trains on (--data-root, data.root, the cache, the
                # generated demo set), so a resume by name, `cyclekit eval RUN` and `cyclekit train
                # RUN/config.yaml` use exactly it. Sources that read no folder have no root to record.
                dumped = dataclasses.replace(config, data=config.data.with_root(str(Path(root).resolve())))
            if not _same_file(config_source, run_dir / "config.yaml"):
                dump_config(dumped, run_dir / "config.yaml")
            if epoch_end is not None:
                epoch_end.prepare(resumed_from)

        result = fit(
            recipe,
            run_dir,
            config.train,
            resume=resume_path,
            fingerprint=fingerprint(config),
            upgrade_fingerprint=upgrade_fingerprint,
            before_start=start,
            after_epoch=epoch_end,
            plot_losses=_plot_losses,
            announce=None
            if on_start is None
            else lambda schedule: on_start(_start_lines(config, recipe, run_dir, schedule)),
        )

        def final_scores() -> tuple[dict[str, Any], str | None]:
            with distributed.solo_batch_norm(recipe.state.nets, ctx):
                return _score_run(config, recipe, run_dir)

        evaluation, not_scored = ctx.on_main(final_scores)
        # Now with the end-of-training scores. (Every rank takes part in on_main; only rank 0 has the hook.)
        ctx.on_main(lambda: epoch_end.refresh_report() if epoch_end is not None else None)
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


def _score_run(config: Config, recipe: Recipe, run_dir: Path) -> tuple[dict[str, Any], str | None]:
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


def _plot_losses(rows: list[dict[str, Any]], path: Path) -> Any:
    from cyclekit.report.plots import plot_losses

    return plot_losses(rows, path)


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


def _start_lines(config: Config, recipe: Recipe, run_dir: Path, schedule: str) -> str:
    return (
        f"training {config.name} ({config.recipe}) into {run_dir}\n"
        f"  data: {recipe.data_summary()}\n"
        f"  schedule: {schedule}"
        + (f"\n  warning: no scores: {why}; training goes on without them" if (why := recipe.unscored_reason()) else "")
    )


def _clear_run(run_dir: Path) -> None:
    """Before a fresh run in ``run_dir`` (empty, or --overwrite): remove what an earlier run of
    cyclekit left (the fixed names a run writes, and the sample grids), nothing else."""

    for name in (
        "metrics.jsonl",
        "loss.png",
        "eval.json",
        "evals.jsonl",
        "results.json",
        "report.html",
        "best.json",
        "timing.json",
    ):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("last.pt", "best.pt", "outputs.json"):
        (run_dir / "checkpoints" / name).unlink(missing_ok=True)
    for grid in (run_dir / "samples").glob("step_*.png"):
        grid.unlink()
    for folder in ("bundle", "bundle-best", "tensorboard"):
        target = run_dir / folder
        if target.is_dir() and not target.is_symlink():
            # Only the bundle's own files; exports and other files stay where they are.
            owned = [p for p in target.iterdir() if p.name == "config.json" or p.suffix == ".safetensors"]
            if folder == "tensorboard":
                owned = [p for p in target.iterdir() if p.name.startswith("events.out.tfevents.")]
            for f in owned:
                f.unlink()


def _same_file(a: Path | None, b: Path) -> bool:
    try:
        return a is not None and b.exists() and a.resolve() == b.resolve()
    except OSError:
        return False


def _check_own_config(config: Config, path: Path) -> None:
    """A run started from its own config.yaml must not drift from it (the file is never rewritten)."""
    from cyclekit.config import read_yaml

    raw = read_yaml(path)
    raw.setdefault("name", config.name)
    written = fingerprint(config_from_dict(raw))
    wanted = fingerprint(config)
    if written != wanted:
        diff = [f"{k}" for k in wanted if written.get(k) != wanted[k]]
        raise CyclekitError(
            f"{path} is the config this run was started from and is never rewritten, but the settings given "
            f"differ from it ({', '.join(diff)}); drop the --set overrides, or train under another --name"
        )


def _epoch_end(config: Config, recipe: Recipe, run_dir: Path, resuming: bool) -> Any:
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


def load_run_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A run folder's config.yaml, ready for this machine: ``train.device`` auto (a run trained
    on a GPU is evaluated or rebuilt on a CPU just as well) unless ``overrides`` say otherwise."""
    from cyclekit.recipes import load_config

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise CyclekitError(f"{run_dir} is not a run folder: it has no config.yaml")
    return load_config(str(path), ["train.device=auto", *overrides])


def run_dir_of(resume: str) -> Path | None:
    """The run folder a ``--resume`` value names: the folder itself, or the one holding the
    checkpoint file (RUN/checkpoints/last.pt); None for `auto` or a file outside a run."""
    if resume == "auto":
        return None
    path = Path(resume)
    if path.is_dir():
        return path
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def adopt_run_settings(config: Config, run_dir: Path, source: Path | None = None) -> Config:
    """Resuming ``run_dir``: ``config`` (the preset or file given, with --set) must describe the run
    (else one error naming every setting that differs, with both values); the data folder the run
    recorded is used unless another is given, so a resume never looks for the data elsewhere."""
    from cyclekit.train.loop import describe_differences

    if _same_file(source, run_dir / "config.yaml"):
        _check_own_config(config, run_dir / "config.yaml")
    stored = load_run_config(run_dir)
    if fingerprint(stored) != fingerprint(config):
        differences = describe_differences(fingerprint(stored), fingerprint(config))
        raise CyclekitError(
            f"{run_dir} was trained with other settings: {differences}; "
            f"continue it as it was with `cyclekit train --resume {run_dir}`, or start a new run (--name)"
        )
    if config.data.root is None and stored.data.root is not None:
        config = dataclasses.replace(config, data=config.data.with_root(stored.data.root))
    return config


def rebuild_bundle(
    run_dir: Path,
    checkpoint: Path | None = None,
    best: bool = False,
    output: Path | None = None,
    overwrite: bool = False,
) -> tuple[Path, int]:
    """Write the inference bundle of a checkpoint (default: the run's last.pt, or with ``best`` its
    best.pt) into ``output`` (default: RUN/bundle, or RUN/bundle-best), replacing the bundle there
    as a whole. Needs the run's config.yaml, not its data. Returns (bundle folder, step).

    Only the run's own bundle/ and bundle-best/ are replaced as a matter of course; a bundle
    elsewhere (another run's, an import) only with ``overwrite``, and never a file or a folder of
    other files."""
    from cyclekit.atomic import recover_folder
    from cyclekit.inference.bundle import BUNDLE_FORMAT, with_class_names, write_bundle
    from cyclekit.inference.provenance import check_bundle_target
    from cyclekit.nn.weights import load_weights
    from cyclekit.train.checkpoint import load_checkpoint

    config = load_run_config(run_dir)
    ckpt = checkpoint or run_dir / "checkpoints" / ("best.pt" if best else CHECKPOINT_NAME)
    if not ckpt.is_file():
        why = "the run never had a best epoch (train.eval_every)" if best and checkpoint is None else "it is missing"
        raise CyclekitError(f"no checkpoint to rebuild the bundle from: {ckpt} ({why})")
    state = load_checkpoint(ckpt)
    stored = state.get("fingerprint") or None
    if stored is not None and upgrade_fingerprint(stored) != fingerprint(config):
        raise CyclekitError(f"{ckpt} was not written by the run of {run_dir / 'config.yaml'} (its settings differ)")
    out = output or run_dir / ("bundle-best" if best else "bundle")
    recover_folder(out)
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise CyclekitError(f"{out} exists and is not a bundle folder; pick another -o")
    if (out / "config.json").is_file() and BUNDLE_FORMAT not in (out / "config.json").read_text(errors="replace"):
        raise CyclekitError(f"{out}/config.json is not a cyclekit bundle's; pick another -o")
    own = {(run_dir / name).resolve() for name in ("bundle", "bundle-best")}
    check_bundle_target(out, "bundle", ours=lambda _: out.resolve() in own, overwrite=overwrite)
    recipe = get_recipe(config.recipe)
    nets = recipe.build_networks(config)
    weights = state["recipe"]
    for key, net in nets.items():
        if key not in weights:
            raise CyclekitError(f"{ckpt} has no {key}; it was written by another recipe or configuration")
        load_weights(net, weights[key], f"{ckpt} ({key})")
    bundle, modules = recipe.make_bundle(config, nets, int(state["step"]), int(state["epoch"]))
    write_bundle(out, with_class_names(bundle, _recorded_class_names(out, run_dir)), modules)
    return out, int(state["step"])


def _recorded_class_names(*folders: Path) -> list[str]:
    """The class names a bundle of the run recorded from its data (the config alone does not know
    them): from the first of ``folders`` (or its bundle/ and bundle-best/) that names classes."""
    from cyclekit.inference.bundle import read_bundle

    for folder in folders:
        for candidate in (folder, folder / "bundle", folder / "bundle-best"):
            if not (candidate / "config.json").is_file():
                continue
            try:
                samples = read_bundle(candidate).samples
            except CyclekitError:
                continue
            if samples is not None and samples.classes:
                return list(samples.classes)
    return []


def replace_train(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


__all__ = [
    "RECIPES",
    "RunReport",
    "build_recipe",
    "fingerprint",
    "load_run_config",
    "rebuild_bundle",
    "replace_train",
    "resolve_resume",
    "train_run",
]
