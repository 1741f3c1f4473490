"""The generic training loop. It knows steps, epochs, checkpoints and logs, not architectures.

A recipe (the contract: `cyclekit.recipe.Recipe`) owns the networks and the data and says how one step goes; this loop
decides when to log, sample and checkpoint, and how to come back after a kill. What follows a step
are named steps of `fit`: `write_checkpoint` (with `write_bundle`), `write_samples`, `plot` and
`evaluate` (the run's epoch-end work). The logs are `cyclekit.train.logs`, what a person watching
sees of the progress `cyclekit.train.progress`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cyclekit.atomic import atomic_write, clean_stale_temps, recover_folder
from cyclekit.config import TrainConfig
from cyclekit.errors import CyclekitError, ReportedElsewhere, TrainingInterrupted
from cyclekit.recipe import Recipe
from cyclekit.records import read_metrics
from cyclekit.train import distributed
from cyclekit.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from cyclekit.train.logs import RunLogs, check_loggers, numbers
from cyclekit.train.precision import resolve_precision
from cyclekit.train.progress import progress_bar, schedule_line
from cyclekit.train.state import TrainingState

CHECKPOINT_NAME = "last.pt"
PLOT_EVERY_S = 20.0  # at most one loss.png redraw per this many seconds (plus the last)
OUTPUTS_NAME = "outputs.json"
logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    step: int
    epoch: int
    seconds: float
    last: dict[str, float]
    resumed_from: int | None


def checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / CHECKPOINT_NAME


def outputs_marker(run_dir: Path) -> Path:
    """Records the step whose outputs (bundle, samples, epoch-end work) are all written: the files
    that follow a checkpoint are only complete once it names the checkpoint's step."""
    return run_dir / "checkpoints" / OUTPUTS_NAME


def _outputs_step(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) else None


def fit(
    recipe: Recipe,
    run_dir: Path,
    cfg: TrainConfig,
    resume: Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    upgrade_fingerprint: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    before_start: Callable[[int | None], None] | None = None,
    after_epoch: Callable[[int, int, bool], None] | None = None,
    announce: Callable[[str], None] | None = None,
    plot_losses: Callable[[list[dict[str, Any]], Path], Any] | None = None,
) -> FitResult:
    """Train `recipe` to the configured number of epochs (or `cfg.max_steps`), resuming from
    `resume` if given. Writes checkpoints/last.pt, metrics.jsonl, samples/ and bundle/.

    `fingerprint` is stored in the checkpoint and compared on resume, so that a checkpoint is
    not silently continued with a different model or data setup; `upgrade_fingerprint` turns a
    stored fingerprint of an older layout into the current one first.

    `plot_losses(rows, path)` draws the loss curves into loss.png at each checkpoint (the run passes
    `cyclekit.report.plots.plot_losses`; the loop itself knows no plotting).

    `announce(line)` gets the schedule (steps per epoch, epochs, total steps, device, precision,
    processes) once, on rank 0, before the first step.

    `before_start(resumed_step)` runs once every check has passed, before anything is written: a
    refused resume changes nothing on disk. `after_epoch(step, epochs_done, epoch_end)` runs on
    rank 0 after each epoch's checkpoint (evaluation, the report), and with ``epoch_end`` False
    after the last step of a run that train.max_steps stops mid-epoch; it never moves an RNG.
    "Epoch" means epochs completed, everywhere (logs, bundles, evaluations, timing).

    Losses stay tensors between logged steps: they become numbers (one device sync) only when
    they are logged or a checkpoint is about to be written. Then they must be finite and at most
    `cfg.divergence_limit` in magnitude, and the weights finite, or training stops with the last
    good checkpoint untouched (see `check_healthy`).

    In a multi-process run (torchrun; see `cyclekit.train.distributed`) every rank runs this loop
    in lockstep on its shard of the data: rank 0 reads the checkpoint to resume from and hands it
    out, logs the mean of the ranks' losses, and alone writes files; a stop request on any rank
    stops all of them after the same step.
    """
    ctx = distributed.current()
    spe = recipe.steps_per_epoch()
    n_epochs = cfg.epochs + cfg.decay_epochs
    total = n_epochs * spe if cfg.max_steps is None else min(cfg.max_steps, n_epochs * spe)
    step, epoch, pos = 0, 0, 0
    resumed_from = None
    precision = resolve_precision(cfg.precision, recipe.device)
    recipe.state.scaler = precision.scaler
    if resume is not None:
        state = ctx.on_main(lambda: _read_resume(resume, fingerprint, upgrade_fingerprint, ctx))
        parts, rng = dict(state["recipe"]), state["rng"]
        if ctx.enabled:  # this rank's own random state and pools
            parts.update(state["ranks"][ctx.rank]["extras"])
            rng = state["ranks"][ctx.rank]["rng"]
        ctx.everywhere(lambda: recipe.state.load_state_dict(parts, source=str(resume)))
        set_rng_state(rng)
        step, epoch, pos = state["step"], state["epoch"], state["pos"]
        resumed_from = step
        threads = state.get("threads")
        if threads is not None and threads != torch.get_num_threads() and ctx.is_main:
            logger.warning(
                "checkpoint written with %d torch threads, resuming with %d: the run continues, but "
                "bit-exact reproduction of an uninterrupted run needs the same thread count",
                threads,
                torch.get_num_threads(),
            )
        del state, parts
    if ctx.is_main:
        check_loggers(cfg.loggers)  # a missing package is reported before anything is written
    logs: RunLogs | None = None  # rank 0 writes every file

    def start() -> None:
        nonlocal logs
        if before_start is not None:
            before_start(resumed_from)
        for folder in (run_dir, run_dir / "checkpoints", run_dir / "bundle", run_dir / "samples"):
            for stale in clean_stale_temps(folder):
                logger.info("removed %s, left by an interrupted write", stale)
        for folder in ("bundle", "bundle-best"):
            recover_folder(run_dir / folder)  # a bundle swap a kill interrupted
        logs = RunLogs(run_dir, cfg.loggers, resumed_step=step if resume else None)

    ctx.on_main(start)
    # The passes a step trains go through DDP in a multi-process run (the nets themselves otherwise).
    recipe.state.forward = distributed.wrap_for_ddp(recipe.state.nets, recipe.device, ctx)
    if cfg.compile:
        recipe.state.compile_forward()
    if recipe.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick the fastest kernels
    ckpt = checkpoint_path(run_dir)
    saved_step = resumed_from  # the step of the checkpoint on disk from this run (None: none yet)

    def write_checkpoint() -> None:
        """checkpoints/last.pt (every rank's random state and pools gathered) and the bundle."""
        nonlocal saved_step
        healthy(weights=True)
        # Nets, optimizers and schedules are the same on every rank; random states and pools are not.
        mine = {"rng": rng_state(), "extras": {k: v.state_dict() for k, v in recipe.state.extras.items()}}
        ranks = ctx.gather(mine)
        spread = ctx.weight_spread(list(recipe.state.nets.values()))
        if spread > 0:
            logger.warning("the ranks' weights differ by up to %.3g at step %d", spread, step)

        def write() -> None:
            record = {
                "step": step,
                "epoch": epoch,
                "pos": pos,
                "recipe": recipe.state.state_dict(),
                "rng": mine["rng"],
                "fingerprint": fingerprint or {},
                "threads": torch.get_num_threads(),
                "world_size": ctx.world,
            }
            if ctx.enabled:
                record.update(ranks=ranks, rank_weight_spread=spread)
            save_checkpoint(record, ckpt)
            write_bundle()

        ctx.on_main(write)
        saved_step = step

    def write_bundle() -> None:
        with _outputs_quiet(recipe, ctx):
            recipe.write_bundle(run_dir / "bundle", step, epoch)

    def healthy(weights: bool = False) -> None:
        try:
            check_healthy(recipe.state, last, step, cfg.divergence_limit, ckpt, saved_step, weights=weights)
        except CyclekitError as exc:
            if ctx.is_main:
                raise
            raise ReportedElsewhere(str(exc)) from None

    plotted = [-math.inf]  # when loss.png was last drawn (time.monotonic)

    # The outputs that follow steps (samples, the loss plot, the epoch-end work): rank 0 only,
    # never moving an RNG, never syncing batch norm.

    def write_samples() -> None:
        """The recipe's sample grids of this step (and to TensorBoard)."""
        if not ctx.is_main:
            return
        with _outputs_quiet(recipe, ctx):
            paths = recipe.write_samples(run_dir / "samples", step, epoch)
            if logs is not None:
                logs.images(paths, step)

    def plot(force: bool = False) -> None:
        """loss.png, redrawn at most every PLOT_EVERY_S seconds (drawing takes ~1 s, an epoch of a
        small data set less), and always at the end of the run (``force``)."""
        if not ctx.is_main:
            return
        if not force and step < total and time.monotonic() - plotted[0] < PLOT_EVERY_S:
            return
        plotted[0] = time.monotonic()
        with _outputs_quiet(recipe, ctx):
            if plot_losses is not None:
                plot_losses(read_metrics(run_dir / "metrics.jsonl"), run_dir / "loss.png")

    def evaluate(epoch_end: bool) -> None:
        """The run's epoch-end work (``after_epoch``: evaluation, best bundle, timing, report), at an
        epoch end or (``epoch_end`` False) the last step of a run train.max_steps stops mid-epoch."""
        if not ctx.is_main:
            return
        with _outputs_quiet(recipe, ctx):
            if after_epoch is not None:
                after_epoch(step, epoch, epoch_end)

    def mark_outputs() -> None:
        atomic_write(outputs_marker(run_dir), json.dumps({"step": step}) + "\n")

    if resume is not None:
        # A kill after the checkpoint but before the files that follow it (the bundle, samples, the
        # epoch-end work) left them older than the checkpoint: write them before going on, so that
        # even a finished run's `--resume auto` leaves a complete run folder.
        catch_up = _Outputs(write_bundle, write_samples, plot, evaluate)
        ctx.on_main(lambda: _catch_up_outputs(run_dir, step, pos, step >= total, cfg, catch_up))

    if announce is not None and ctx.is_main:
        announce(schedule_line(cfg, spe, total, resumed_from, precision.name, recipe.device, ctx.world))
    stop = _StopFlag()
    progress = progress_bar(cfg.progress and ctx.is_main, total, step)
    started, last = time.perf_counter(), {}
    # A step's logged "sec" runs from the end of the previous step (its outputs included) to its
    # losses: waiting for the batch counts, as it does for the user watching the run.
    ready = time.perf_counter()
    try:
        with stop:
            while step < total and epoch < n_epochs:
                for batch in recipe.batches(epoch, pos):
                    t0 = ready
                    with precision.autocast():
                        losses = recipe.train_step(batch, step)
                    step, pos = step + 1, pos + 1
                    if ctx.enabled:  # any rank's Ctrl-C stops every rank after this same step
                        stop.requested = ctx.any_flag(stop.requested)
                    end_of_epoch = pos >= spe
                    log_now = step % cfg.log_every == 0 or step == total
                    save_now = step % cfg.checkpoint_every == 0 or end_of_epoch or step >= total or stop.requested
                    if log_now or save_now:
                        last = numbers(losses, ctx)
                        healthy()
                    if log_now and logs is not None:
                        logs.write(
                            {
                                "step": step,
                                "epoch": epoch + end_of_epoch,  # epochs completed with this step, as everywhere
                                "lr": recipe.state.lr(),
                                "sec": round(time.perf_counter() - t0, 4),
                                **last,
                            }
                        )
                        if progress is not None:
                            progress.set_postfix({k: f"{v:.3f}" for k, v in last.items()}, refresh=False)
                    if progress is not None:
                        progress.update(1)
                    if cfg.sample_every and step % cfg.sample_every == 0:
                        write_samples()
                    if end_of_epoch:
                        epoch, pos = epoch + 1, 0
                    if save_now:
                        write_checkpoint()
                    if end_of_epoch or step >= total:
                        # An epoch end, or the last step of a run stopped mid-epoch by train.max_steps:
                        # samples, plot, timing and report then show that step too.
                        if not cfg.sample_every or (step >= total and step % cfg.sample_every):
                            write_samples()
                        plot()
                        evaluate(end_of_epoch)
                    if save_now:
                        ctx.on_main(mark_outputs)
                    if stop.requested:
                        raise TrainingInterrupted(
                            f"interrupted at step {step}; checkpoint saved to {ckpt} (continue with --resume auto)"
                        )
                    ready = time.perf_counter()
                    if step >= total or end_of_epoch:
                        break
    finally:
        if progress is not None:
            progress.close()
        if logs is not None:
            logs.close()
    plot(force=True)
    return FitResult(step, epoch, time.perf_counter() - started, last, resumed_from)


@dataclass(frozen=True)
class _Outputs:
    """The named steps of `fit` that follow a checkpoint, for `_catch_up_outputs`."""

    write_bundle: Callable[[], None]
    write_samples: Callable[[], None]
    plot: Callable[[bool], None]
    evaluate: Callable[[bool], None]


def _catch_up_outputs(run_dir: Path, step: int, pos: int, last: bool, cfg: TrainConfig, outputs: _Outputs) -> None:
    """Write what should follow the checkpoint of ``step`` unless the outputs marker says it was
    all written: the bundle; the samples of a sample step (when missing); at an epoch end, or the
    ``last`` step of the run, the loss plot and the epoch-end work (which skips an evaluation
    already on record)."""
    marker = outputs_marker(run_dir)
    if _outputs_step(marker) == step:
        return
    logger.info("completing the outputs of step %d (the run was stopped while writing them)", step)
    outputs.write_bundle()
    sample_step = last or (step % cfg.sample_every == 0 if cfg.sample_every else pos == 0)
    if sample_step and step > 0 and not any((run_dir / "samples").glob(f"step_{step:07d}*.png")):
        outputs.write_samples()
    if (pos == 0 or last) and step > 0:
        outputs.plot(True)
        outputs.evaluate(pos == 0)
    atomic_write(marker, json.dumps({"step": step}) + "\n")


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """Outputs (samples, bundles) must not move any global RNG: a resumed run, which skips them,
    would otherwise draw different noise and dropout masks from the uninterrupted one."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


@contextlib.contextmanager
def _outputs_quiet(recipe: Recipe, ctx: distributed.Distributed) -> Iterator[None]:
    """Around every output: no RNG moved (`_rng_kept`), no batch-norm statistics synced across ranks."""
    with _rng_kept(), distributed.solo_batch_norm(recipe.state.nets, ctx):
        yield


def check_healthy(
    state: TrainingState,
    losses: Mapping[str, float],
    step: int,
    limit: float,
    ckpt: Path,
    saved_step: int | None,
    weights: bool = False,
) -> None:
    """Raise CyclekitError if training has diverged: a loss that is NaN/inf or above ``limit``
    in magnitude, or (``weights``, before a checkpoint) a non-finite weight.

    Why a fixed limit cannot fire on a healthy run: every loss cyclekit logs is bounded far below
    1e6 while training works. L1 terms of [-1, 1] images are at most 2 x their weight (200 for
    pix2pix's 100); GAN losses grow only with the discriminator's logits, which a useful
    discriminator keeps at O(10) (a logit of 1e3 already has a sigmoid of exactly 1 in float32,
    so no gradient is left); a WGAN-GP critic is held near 1-Lipschitz, so its outputs differ by
    at most the inputs' diameter (2 * sqrt(C*H*W) = 222 at 64x64x3, 887 at 256 px). A diverged
    run (e.g. optim.lr=1e6) logs 1e13 and more.
    """
    bad = {k: v for k, v in losses.items() if not math.isfinite(v) or abs(v) > limit}
    what = ", ".join(f"{k} = {v:.3g}" for k, v in bad.items())
    if not bad and weights:
        broken = [name for name, net in state.nets.items() if not _finite_weights(net)]
        what = f"non-finite weights in {', '.join(broken)}" if broken else ""
    if not what:
        return
    where = (
        f"the last checkpoint, {ckpt} (step {saved_step}, saved while its losses were within the limit), "
        "was left as it was"
        if saved_step is not None and ckpt.exists()
        else "no checkpoint was written yet"
    )
    lrs = ", ".join(f"{k} {o.param_groups[0]['lr']:.3g}" for k, o in state.optimizers.items())
    raise CyclekitError(
        f"training diverged by step {step}: {what} (limit train.divergence_limit = {limit:g}); {where}. "
        f"Current learning rates: {lrs}"
    )


def _finite_weights(net: torch.nn.Module) -> bool:
    with torch.no_grad():
        flags = [torch.isfinite(p).all() for p in net.parameters()]
    return bool(torch.stack(flags).all()) if flags else True


def _read_resume(
    path: Path,
    fingerprint: dict[str, Any] | None,
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ctx: distributed.Distributed,
) -> dict[str, Any]:
    """The checkpoint to resume from, once it is known to fit this run (same config, complete,
    written by as many processes as this run has)."""
    state = load_checkpoint(path)
    stored = state.get("fingerprint") or None
    if stored is not None and upgrade is not None:
        stored = upgrade(stored)
    if fingerprint is not None and stored is not None and stored != fingerprint:
        raise CyclekitError(
            f"checkpoint {path} was made with other settings: {describe_differences(stored, fingerprint)}; "
            "resume with the run's own settings, or start a new run (--name)"
        )
    missing = [k for k in ("step", "epoch", "pos", "recipe", "rng") if k not in state]
    if missing:
        raise CyclekitError(f"checkpoint {path} has no {', '.join(missing)}; it is incomplete or not cyclekit's")
    distributed.check_world(int(state.get("world_size", 1)), ctx, path)
    if ctx.enabled and len(state.get("ranks") or []) != ctx.world:
        raise CyclekitError(f"checkpoint {path} has no per-process state for {ctx.world} processes")
    return state


def describe_differences(run: Mapping[str, Any], now: Mapping[str, Any], limit: int = 4) -> str:
    """The settings two fingerprints (or configs) disagree on, each with both values:
    "data.crop_size: 64 in the run, 128 now; optim.lr: 0.0002 in the run, 0.001 now"."""
    a, b = _flatten(run), _flatten(now)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, _MISSING) != b.get(k, _MISSING) and k != "version"]
    if not keys:
        return "the config"
    parts = [f"{k}: {_shown(a.get(k, _MISSING))} in the run, {_shown(b.get(k, _MISSING))} now" for k in keys[:limit]]
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return "; ".join(parts) + more


_MISSING = object()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        # A fingerprint keeps the recipe's own section as "options"; say it as the config does.
        name = d.get("recipe", "options") if key == "options" and not prefix else key
        path = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return "null" if value is None else str(value)


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step (and checkpoint it);
    a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
