"""From a config to a finished run directory: pick the recipe, set up the folder, train, evaluate."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cyclekit.config import Config, dump_config
from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.recipes import RECIPES, config_from_dict, get_recipe
from cyclekit.recipes.common import seed_everything
from cyclekit.train.loop import FitResult, checkpoint_path, fit

FINGERPRINT_VERSION = 2


@dataclass
class RunReport:
    run_dir: Path
    fit: FitResult
    evaluation: dict[str, Any]


def build_recipe(config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> Any:
    return get_recipe(config.recipe)(config, data_root=data_root, cache_dir=cache_dir)


def fingerprint(config: Config) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes it."""
    d = config.to_dict()
    return {
        "version": FINGERPRINT_VERSION,
        "recipe": d["recipe"],
        "seed": d["seed"],
        "model": d["model"],
        "data": {k: v for k, v in d["data"].items() if k not in ("root", "workers", "strict")},
        "loss": d["loss"],
        "optim": d["optim"],
        "train": {k: d["train"][k] for k in ("epochs", "decay_epochs")},
        "options": d.get(config.recipe, {}),
    }


def upgrade_fingerprint(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of cyclekit 0.1 stored its config sections before recipe sections existed:
    rebuild that config in today's layout and fingerprint it, so such a run still resumes."""
    if stored.get("version") == FINGERPRINT_VERSION:
        return stored
    try:
        return fingerprint(config_from_dict({k: v for k, v in stored.items() if k != "version"}))
    except (ConfigError, TypeError, AttributeError):
        return stored  # compared as it is: reported as a different config


def resolve_resume(run_dir: Path, resume: str | None, overwrite: bool) -> Path | None:
    """`None`: a fresh run (refusing to clobber an existing checkpoint unless `overwrite`);
    `auto`: the run dir's checkpoint if there is one; otherwise a path to a checkpoint."""
    ckpt = checkpoint_path(run_dir)
    if resume is None:
        if ckpt.exists() and not overwrite:
            raise CyclekitError(
                f"{run_dir} already has a checkpoint: continue it with --resume auto, "
                "start over with --overwrite, or pick another --name"
            )
        return None
    if resume == "auto":
        return ckpt if ckpt.exists() else None
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
) -> RunReport:
    """Train `config` into `out_dir/config.name`, returning where it went and how it did.

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
        resume_path = ctx.on_main(lambda: resolve_resume(run_dir, resume, overwrite))
        seed_everything(config.seed)
        # validates data and models on every rank
        recipe = ctx.everywhere(lambda: build_recipe(config, data_root=data_root, cache_dir=cache_dir))
        built.append(recipe)
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
            if resume_path is None and overwrite:
                for stale in ("samples", "bundle"):
                    for f in (run_dir / stale).glob("*"):
                        if f.is_file():
                            f.unlink()
            dumped = config
            root = getattr(recipe, "root", None)
            if data_root is not None and root is not None and config.data.kind != "demo":
                # Record --data-root, so `cyclekit eval RUN` and `cyclekit train RUN/config.yaml` find the data.
                dumped = dataclasses.replace(
                    config, data=dataclasses.replace(config.data, root=str(Path(root).resolve()))
                )
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
        )
        evaluation: dict[str, Any] = {}
        if hasattr(recipe, "evaluate"):

            def evaluate() -> dict[str, Any]:
                with distributed.solo_batch_norm(recipe.state.nets, ctx):
                    return recipe.evaluate(run_dir)

            evaluation = ctx.on_main(evaluate)
        return RunReport(run_dir, result, evaluation)
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


def _epoch_end(config: Config, recipe: Any, run_dir: Path, resuming: bool) -> Any:
    """Rank 0's epoch-end work (evaluation, best bundle, timing, report); see cyclekit.evaluation.tracking."""
    from cyclekit.evaluation.evaluate import EvalData
    from cyclekit.evaluation.tracking import EpochEnd

    t = config.train
    data = None
    if t.eval_every:
        root = getattr(recipe, "root", None)
        if root is None:
            raise ConfigError(
                f"train.eval_every: the {config.recipe} recipe samples images; evaluation scores translations"
            )
        data = EvalData.of(config.data, root)
    return EpochEnd(run_dir, data, t.eval_every, t.best_metric, str(recipe.device), 0 if resuming else None)


def replace_train(config: Config, **changes: Any) -> Config:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


__all__ = ["RECIPES", "RunReport", "build_recipe", "fingerprint", "replace_train", "resolve_resume", "train_run"]
