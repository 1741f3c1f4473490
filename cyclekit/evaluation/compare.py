"""`cyclekit compare RUN...`: the runs' scores side by side, one row per run: the step each score
was taken at, one column per direction and metric (``AtoB.fid``, ``BtoA.l1``, ...), and the config
keys on which the runs differ, so two numbers are never read as comparable when they are not.

Where a run's scores come from, first found: its ``results.json`` (the run's score record, written
at the end of training and by `cyclekit eval`), else the last line of ``evals.jsonl`` (evaluations
during training), else ``eval.json`` (the end-of-training scores of cyclekit 0.2 and earlier).
A model that scores worse than the mean-target image (the best constant guess) is flagged.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from cyclekit.errors import CyclekitError
from cyclekit.evaluation.evaluate import METRICS, worse_than_mean_target
from cyclekit.records import load_json_object, number, read_json_lines, scores_by_direction

MAX_CONFIG_COLUMNS = 8


def scores_of(run: Path) -> dict[str, Any]:
    """One run's score record: {"source", "step", "directions", "worse"} (see the module docstring)."""
    if run.is_file():
        return _record(str(run), load_json_object(run), run)
    if not run.is_dir():
        raise CyclekitError(f"run not found: {run}")
    if (run / "results.json").is_file():
        return _record("results.json", load_json_object(run / "results.json"), run / "results.json")
    rows = read_json_lines(run / "evals.jsonl")
    if rows:
        row = rows[-1]
        where = f"{run / 'evals.jsonl'}: the last line"
        directions = scores_by_direction(row.get("directions"), f"{where}'s directions")
        source = f"evals.jsonl (epoch {row.get('epoch')})"
        return {"source": source, "step": _int(row.get("step")), "directions": directions, "worse": {}}
    if (run / "eval.json").is_file():
        legacy = load_json_object(run / "eval.json")
        direction = str(legacy.get("direction", "AtoB"))
        return {
            "source": "eval.json",
            "step": None,
            "directions": {direction: {k: v for k, v in legacy.items() if k in METRICS}},
            "worse": {},
        }
    raise CyclekitError(f"{run} has no scores: no results.json (run `cyclekit eval {run}`), evals.jsonl or eval.json")


def _record(source: str, raw: dict[str, Any], path: Path) -> dict[str, Any]:
    directions = scores_by_direction(raw.get("directions"), f"{path}: directions")
    try:
        worse = worse_than_mean_target(raw)
    except (AttributeError, TypeError):  # damaged baselines: no flags rather than no table
        worse = {}
    step = raw.get("step")
    if step is None and isinstance(raw.get("reproducibility"), dict):
        step = raw["reproducibility"].get("bundle_step")  # results.json of cyclekit 0.2
    return {"source": source, "step": _int(step), "directions": directions, "worse": worse}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def collect(runs: list[Path]) -> dict[str, Any]:
    """{"columns", "config_columns", "rows": [{"run", "source", "step", column: value, ...}]}."""
    rows = []
    columns: list[str] = []
    for run in runs:
        record = scores_of(run)
        row: dict[str, Any] = {"run": str(run), "source": record["source"], "step": record["step"]}
        for direction, values in record["directions"].items():
            for metric in METRICS:
                if number(values.get(metric)) is not None:
                    key = f"{direction}.{metric}"
                    row[key] = values[metric]
                    if key not in columns:
                        columns.append(key)
        row["worse"] = [f"{d}.{m}" for d, ms in record["worse"].items() for m in ms]
        rows.append(row)
    columns.sort(key=lambda c: (c.split(".")[0], METRICS.index(c.split(".")[1])))
    config_columns = _differing_config(runs, rows)
    return {"columns": columns, "config_columns": config_columns, "rows": rows}


def _differing_config(runs: list[Path], rows: list[dict[str, Any]]) -> list[str]:
    """The config keys (config.yaml of each run folder) whose values differ between the runs,
    added to each row; keys that only name or place a run are left out."""
    import yaml

    from cyclekit import yamltext

    flat: list[dict[str, Any]] = []
    for run in runs:
        config = run / "config.yaml" if run.is_dir() else run.parent / "config.yaml"
        try:
            data = yamltext.load(config.read_text(encoding="utf-8")) if config.is_file() else {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, yamltext.YamlRefused):
            data = {}
        flat.append(_flatten(data) if isinstance(data, dict) else {})
    if len(runs) < 2:
        return []
    ignored = ("name", "description", "data.root", "train.device", "train.progress", "train.out_dir")
    keys = [k for k in dict.fromkeys(k for f in flat for k in f) if k not in ignored]
    differing = [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1][:MAX_CONFIG_COLUMNS]
    for row, f in zip(rows, flat, strict=True):
        for key in differing:
            row[f"config:{key}"] = f.get(key)
    return differing


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def to_text(table: dict[str, Any]) -> str:
    """The table for a terminal; a score worse than the mean-target baseline is marked with *."""
    config = table.get("config_columns", [])
    head = ["run", "step", *table["columns"], *config, "source"]
    body = []
    for r in table["rows"]:
        cells = [_fmt(r.get(c)) + ("*" if c in r.get("worse", []) else "") for c in table["columns"]]
        body.append(
            [r["run"], _fmt(r.get("step")), *cells, *[_plain(r.get(f"config:{k}")) for k in config], r["source"]]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in [head, *body]]
    steps = {r.get("step") for r in table["rows"]}
    notes = []
    if any(r.get("worse") for r in table["rows"]):
        notes.append("* worse than the mean-target image (the best constant guess): the model has not learned this")
    if len(table["rows"]) > 1 and len(steps) > 1:
        notes.append("the runs were scored at different steps")
    if config:
        notes.append(f"the runs differ in {', '.join(config)}")
    return "\n".join(lines + [f"note: {n}" for n in notes])


def to_csv(table: dict[str, Any]) -> str:
    config = table.get("config_columns", [])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run", "step", *table["columns"], *config, "worse_than_mean_target", "source"])
    for r in table["rows"]:
        writer.writerow(
            [
                r["run"],
                "" if r.get("step") is None else r["step"],
                *[r.get(c, "") for c in table["columns"]],
                *[_plain(r.get(f"config:{k}")) for k in config],
                " ".join(r.get("worse", [])),
                r["source"],
            ]
        )
    return out.getvalue()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return "-" if value is None else str(value)
