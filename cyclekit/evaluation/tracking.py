"""What training does at every epoch end, on rank 0: evaluate the fresh bundle every
``train.eval_every`` epochs (evals.jsonl), keep the best epoch's bundle (bundle-best/, best.json),
record the run's timing (timing.json) and refresh report.html."""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from cyclekit.atomic import atomic_write
from cyclekit.choices import LOWER_IS_BETTER
from cyclekit.errors import CyclekitError
from cyclekit.evaluation.evaluate import EvalData, Inception, evaluate, load_fid_network
from cyclekit.train.metrics import MetricsLog

logger = logging.getLogger(__name__)


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
    ) -> None:
        self.run_dir = run_dir
        self.data = data if eval_every else None
        self.eval_every = eval_every
        self.best_metric = best_metric
        self.device = device
        self.report = report
        self.inception: Inception | None = None
        self.evals: MetricsLog | None = None  # set by `prepare`, which knows the resumed step
        self.started = time.time()
        self.prior_seconds = 0.0
        timing = _read_json(run_dir / "timing.json") if resumed_at is not None else None
        if timing:
            self.prior_seconds = float(timing.get("seconds", 0.0))
        if self.data is not None and best_metric.split(".")[-1] in ("fid", "kid"):
            # The chosen score needs the FID network: fail now, before training, if it is missing.
            self.inception = load_fid_network(None, required=True)

    def prepare(self, resumed_at: int | None) -> None:
        """Before training (after every check passed): start evals.jsonl afresh, or cut it back to
        a resumed checkpoint, as the metrics log is."""
        self.evals = MetricsLog(self.run_dir / "evals.jsonl", keep_until_step=resumed_at)
        if resumed_at is None:
            for name in ("best.json", "timing.json"):
                (self.run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(self.run_dir / "bundle-best", ignore_errors=True)

    def __call__(self, step: int, epoch: int) -> None:
        if self.data is not None and epoch % self.eval_every == 0:
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
        if self.report:
            try:
                from cyclekit.report.html import write_report

                write_report(self.run_dir)
            except CyclekitError as exc:  # a report problem must not stop training
                logger.warning("report.html not refreshed: %s", exc)

    def _evaluate(self, step: int, epoch: int) -> None:
        assert self.data is not None
        if self.inception is None:
            # Only a cached file: training never downloads (it warns once when the file is missing).
            self.inception = load_fid_network(None, required=False, download=False)
        results = evaluate(self.run_dir / "bundle", self.data, inception=self.inception, device=self.device)
        row = {"epoch": epoch, "step": step, "directions": results["directions"]}
        assert self.evals is not None, "prepare() runs before training"
        self.evals.write(row)
        self._track_best(row)

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
        if best and best.get("metric") == metric and best.get("direction") == direction:
            old = best["value"]
            better = value < old if metric in LOWER_IS_BETTER else value > old
            if not better:
                return
        _copy_bundle(self.run_dir / "bundle", self.run_dir / "bundle-best")
        record = {"metric": metric, "direction": direction, "epoch": row["epoch"], "step": row["step"], "value": value}
        atomic_write(self.run_dir / "best.json", json.dumps(record, indent=2) + "\n")


def _copy_bundle(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src``: copied beside it first, then swapped in by renames."""
    tmp = dst.with_name(f".{dst.name}.new")
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    shutil.rmtree(old, ignore_errors=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="seconds")
