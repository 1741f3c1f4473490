"""What training does at every epoch end, on rank 0: evaluate the fresh bundle every
``train.eval_every`` epochs (evals.jsonl), keep the best epoch's bundle (bundle-best/, best.json),
record the run's timing (timing.json) and refresh report.html."""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cyclekit.atomic import atomic_path, atomic_write, staged_folder
from cyclekit.choices import LOWER_IS_BETTER
from cyclekit.errors import CyclekitError
from cyclekit.evaluation.evaluate import EvalData, Inception, evaluate, load_fid_network
from cyclekit.records import MetricsLog, load_optional_object, number, read_metrics

logger = logging.getLogger(__name__)


REPORT_EVERY_S = 20.0  # at most one report.html refresh per this many seconds during training


class EpochEnd:
    """The ``after_epoch`` hook of the training loop (see `cyclekit.train.loop.fit`)."""

    def __init__(
        self,
        run_dir: Path,
        data: EvalData | None,
        eval_every: int,
        best_metric: str,
        device: str,
        resumed_at: int | None,
        report: bool = True,
        checkpoint: Path | None = None,
        sampler_scores: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.run_dir = run_dir
        # A recipe that samples: its own scores of the current generator (no best bundle is kept).
        self.sampler_scores = sampler_scores if eval_every else None
        self.checkpoint = checkpoint  # the run's last.pt; kept as best.pt when an epoch is the best so far
        self.data = data if eval_every else None
        self.eval_every = eval_every
        self.best_metric = best_metric
        self.device = device
        self.report = report
        self.inception: Inception | None = None
        self.evals: MetricsLog | None = None  # set by `prepare`, which knows the resumed step
        self.started = time.time()
        self.reported = -math.inf  # when report.html was last written (time.monotonic)
        self.prior_seconds = 0.0
        timing = _read_json(run_dir / "timing.json") if resumed_at is not None else None
        if timing:
            self.prior_seconds = number(timing.get("seconds")) or 0.0
        if self.data is not None and best_metric.split(".")[-1] in ("fid", "kid"):
            # The chosen score needs the FID network: fail now, before training, if it is missing.
            self.inception = load_fid_network(None, required=True)

    def prepare(self, resumed_at: int | None) -> None:
        """Before training (after every check passed): start evals.jsonl afresh, or cut it back to
        a resumed checkpoint, as the metrics log is."""
        self.evals = MetricsLog(self.run_dir / "evals.jsonl", keep_until_step=resumed_at)
        if resumed_at is None:
            for name in ("best.json", "timing.json", "checkpoints/best.pt"):
                (self.run_dir / name).unlink(missing_ok=True)

    def __call__(self, step: int, epoch: int, epoch_end: bool = True) -> None:
        """After the checkpoint of an epoch end (``epoch`` epochs done), or of the last step of a run
        stopped mid-epoch (``epoch_end`` False: no evaluation, the timing and report only)."""
        scored = self.data is not None or self.sampler_scores is not None
        due = epoch_end and scored and epoch % self.eval_every == 0
        if due and not self._evaluated(step):
            self._evaluate(step, epoch)
        now = time.time()
        atomic_write(
            self.run_dir / "timing.json",
            json.dumps(
                {
                    "seconds": round(self.prior_seconds + now - self.started, 1),
                    "steps": step,
                    "epochs": epoch,
                    "started": _iso(self.started),
                    "finished": _iso(now),
                }
            )
            + "\n",
        )
        self.refresh_report(force=not epoch_end)

    def refresh_report(self, force: bool = True) -> None:
        """Rewrite report.html (at most every REPORT_EVERY_S seconds unless ``force``: drawing its
        plots takes ~2 s, more than an epoch of a small data set); a problem with it is a warning,
        never the end of a training run."""
        if not self.report:
            return
        if not force and time.monotonic() - self.reported < REPORT_EVERY_S:
            return
        self.reported = time.monotonic()
        try:
            from cyclekit.report.html import write_report

            write_report(self.run_dir)
        except CyclekitError as exc:
            logger.warning("report.html not refreshed: %s", exc)

    def _evaluated(self, step: int) -> bool:
        """Whether evals.jsonl already has this step (a resume completing the outputs of its checkpoint)."""
        return any(row.get("step") == step for row in read_metrics(self.run_dir / "evals.jsonl"))

    def _evaluate(self, step: int, epoch: int) -> None:
        assert self.evals is not None, "prepare() runs before training"
        if self.sampler_scores is not None:
            self.evals.write({"epoch": epoch, "step": step, "sampling": self.sampler_scores()})
            return
        assert self.data is not None
        if self.inception is None:
            # Only a cached file: training never downloads (it warns once when the file is missing).
            self.inception = load_fid_network(None, required=False, download=False)
        results = evaluate(self.run_dir / "bundle", self.data, inception=self.inception, device=self.device)
        row = {"epoch": epoch, "step": step, "directions": results["directions"]}
        assert self.evals is not None, "prepare() runs before training"
        # The best bundle first, the row last: a kill in between re-evaluates this step on resume.
        self._track_best(row)
        self.evals.write(row)

    def _track_best(self, row: dict[str, Any]) -> None:
        directions = row["directions"]
        if not directions:
            return
        name = self.best_metric
        direction = name.split(".")[0] if "." in name else next(iter(directions))
        metric = name.split(".")[-1]
        values = directions.get(direction, {})
        if metric == "auto":
            metric = "fid" if values.get("fid") is not None else "l1"
        value = values.get(metric)
        if not isinstance(value, (int, float)):
            return
        best = _read_json(self.run_dir / "best.json")
        old = number(best.get("value")) if best else None
        if best and best.get("metric") == metric and best.get("direction") == direction and old is not None:
            better = value < old if metric in LOWER_IS_BETTER else value > old
            if not better:
                return
        if self.checkpoint is not None and self.checkpoint.is_file():
            # The checkpoint just written is this epoch's state: keep it as best.pt (a hard link costs
            # no space until last.pt is replaced), so `cyclekit bundle RUN --best` can rebuild bundle-best/.
            _link_or_copy(self.checkpoint, self.checkpoint.with_name("best.pt"))
        _copy_bundle(self.run_dir / "bundle", self.run_dir / "bundle-best")
        record = {"metric": metric, "direction": direction, "epoch": row["epoch"], "step": row["step"], "value": value}
        atomic_write(self.run_dir / "best.json", json.dumps(record, indent=2) + "\n")


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link of (else a copy of) ``src``, atomically."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)


def _copy_bundle(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` as a whole (`cyclekit.atomic.staged_folder`). Bundle files
    are never changed in place (a new bundle is a new folder), so hard links are safe copies."""
    with staged_folder(dst) as tmp:
        for f in src.iterdir():
            if f.is_file():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing or damaged (then it is written anew)."""
    try:
        return load_optional_object(path)
    except CyclekitError:
        return None


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")
