"""A run's score record (results.json) as `cyclekit eval` and `cyclekit train` show and write it:
the test data a run or a bare bundle is scored on, where a record may be written, the lines a
record prints as, and the results page rewritten after a new record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cyclekit.choices import EVAL_METRICS
from cyclekit.config import Config
from cyclekit.errors import CyclekitError, DataError


def run_of(bundle_folder: Path) -> Path | None:
    """The run folder a bundle belongs to (it holds the run's config.yaml), or None for a bundle
    outside a run (imported, copied)."""
    return bundle_folder.parent if (bundle_folder.parent / "config.yaml").is_file() else None


def eval_data(bundle_folder: Path, run_config: Config | None, data: Path | None, size: int | None) -> Any:
    """The test data to score a bundle on (an `evaluate.EvalData`): its run's data (``run_config``,
    its config.yaml) unless ``data`` names another folder, or, for a bundle without its run,
    ``data`` at the bundle's training size (or ``size``)."""
    from cyclekit.evaluation.evaluate import EvalData

    if run_config is not None:
        from cyclekit.data.sources import locate_data

        if data is not None:
            root = data
        else:
            try:
                root = locate_data(run_config.data, None, None, run_config.seed)
            except DataError as exc:
                raise DataError(f"{str(exc).replace('--data-root', '--data')} (the run's data is not found)") from None
        return EvalData.of(run_config.data, root, size)
    if data is None:
        raise CyclekitError(
            f"{bundle_folder} is a bundle without its run: pass --data DIR (a folder with testA/ and testB/)"
        )
    from cyclekit.inference.bundle import read_bundle

    bundle = read_bundle(bundle_folder)
    crop = size or bundle.train_size
    if not crop:
        raise CyclekitError(f"{bundle_folder} does not record its training size: pass --size N")
    return EvalData.folder(data, crop, bundle.channels or 3)


def check_score_output(path: Path, overwrite: bool) -> None:
    """`eval -o FILE`: a .json file that is new, a cyclekit score record, or --overwrite."""
    if path.suffix != ".json":
        raise CyclekitError(f"-o: {path} must end in .json")
    if path.is_dir():
        raise CyclekitError(f"-o: {path} is a folder; name a .json file")
    if path.exists() and not overwrite and not is_score_record(path):
        raise CyclekitError(
            f"-o: {path} exists and is not a score record cyclekit wrote; "
            "pick another -o, or replace it with --overwrite"
        )


def is_score_record(path: Path) -> bool:
    """A results.json as `cyclekit eval` and training write it (or a `compare -o` table)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and ("directions" in data or "sampling" in data or {"rows", "columns"} <= set(data))


def same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def refresh_report(run_dir: Path) -> Path | None:
    """The results page shows the run's scores: rewrite it after a new score record (a run that
    logged no training has none). Raises CyclekitError when it cannot be written."""
    if not (run_dir / "metrics.jsonl").is_file():
        return None
    from cyclekit.report.html import write_report

    return write_report(run_dir)


def format_sampling(scores: dict[str, Any]) -> str:
    """A sampling model's scores (results.json's ``sampling``) on one line: its numbers."""
    numbers = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    return "  ".join(f"{k} {v:.4g}" for k, v in numbers.items())


def format_results(results: dict[str, Any]) -> str:
    """One line per direction and baseline: the scores that are there."""
    lines = []
    not_scored = results.get("not_scored", {})
    for direction, row in results["directions"].items():
        counts = results.get("counts", {}).get(direction, {})
        if direction in not_scored:  # counted, not translated: nothing could score the translations
            lines.append(
                f"{direction}: {counts.get('sources', '?')} images, reference {counts.get('reference_split', '?')} "
                f"({counts.get('reference', '?')} images): not scored"
            )
            continue
        lines.append(
            f"{direction}: {counts.get('translated', '?')} images, reference {counts.get('reference_split', '?')}"
        )
        rows = [("model", row), *results.get("baselines", {}).get(direction, {}).items()]
        for label, values in rows:
            cells = [f"{m} {values[m]:.4g}" for m in EVAL_METRICS if isinstance(values.get(m), (int, float))]
            if cells:
                lines.append(f"  {label:12s} " + "  ".join(cells))
    missing = results.get("reproducibility", {}).get("fid_missing")
    if missing and "not requested" not in missing and len(not_scored) < len(results["directions"]):
        lines.append(f"  (no FID/KID: {missing})")
    for direction, metrics in results.get("worse_than_mean_target", {}).items():
        lines.append(
            f"  warning: {direction} scores worse than the mean-target image on {', '.join(metrics)}: "
            "the model has not learned this mapping (yet)"
        )
    return "\n".join(lines)
