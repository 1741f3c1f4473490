"""`cyclekit compare RUN...`: the runs' scores side by side, one row per run and one column per
direction and metric (``AtoB.fid``, ``BtoA.l1``, ...).

Where a run's scores come from, first found: its ``results.json`` (written by `cyclekit eval`), the
last line of ``evals.jsonl`` (evaluations during training, ``train.eval_every``), or ``eval.json``
(the end-of-training L1/PSNR of paired test data).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from cyclekit.errors import CyclekitError
from cyclekit.evaluation.evaluate import METRICS
from cyclekit.records import load_json_object, number, scores_by_direction
from cyclekit.train.metrics import read_metrics


def scores_of(run: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(where the scores came from, {direction: {metric: value}}) of one run."""
    if run.is_file():
        return str(run), scores_by_direction(load_json_object(run).get("directions"), f"{run}: directions")
    if not run.is_dir():
        raise CyclekitError(f"run not found: {run}")
    if (run / "results.json").is_file():
        path = run / "results.json"
        return "results.json", scores_by_direction(load_json_object(path).get("directions"), f"{path}: directions")
    rows = read_metrics(run / "evals.jsonl")  # the same JSON-lines format as metrics.jsonl
    if rows:
        where = f"{run / 'evals.jsonl'}: the last line's directions"
        return f"evals.jsonl (epoch {rows[-1].get('epoch')})", scores_by_direction(rows[-1].get("directions"), where)
    if (run / "eval.json").is_file():
        legacy = load_json_object(run / "eval.json")
        direction = str(legacy.get("direction", "AtoB"))
        return "eval.json", {direction: {k: v for k, v in legacy.items() if k in METRICS}}
    raise CyclekitError(f"{run} has no scores: no results.json (run `cyclekit eval {run}`), evals.jsonl or eval.json")


def collect(runs: list[Path]) -> dict[str, Any]:
    """{"columns": [...], "rows": [{"run", "source", column: value}]} for the runs given."""
    rows = []
    columns: list[str] = []
    for run in runs:
        source, directions = scores_of(run)
        row: dict[str, Any] = {"run": str(run), "source": source}
        for direction, values in directions.items():
            for metric in METRICS:
                if number(values.get(metric)) is not None:
                    key = f"{direction}.{metric}"
                    row[key] = values[metric]
                    if key not in columns:
                        columns.append(key)
        rows.append(row)
    columns.sort(key=lambda c: (c.split(".")[0], METRICS.index(c.split(".")[1])))
    return {"columns": columns, "rows": rows}


def to_text(table: dict[str, Any]) -> str:
    head = ["run", *table["columns"], "source"]
    body = [[r["run"], *[_fmt(r.get(c)) for c in table["columns"]], r["source"]] for r in table["rows"]]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    return "\n".join(
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]
    )


def to_csv(table: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run", *table["columns"], "source"])
    for r in table["rows"]:
        writer.writerow([r["run"], *[r.get(c, "") for c in table["columns"]], r["source"]])
    return out.getvalue()


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"
