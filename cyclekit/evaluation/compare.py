"""`cyclekit compare RUN...`: the runs' scores side by side, one row per run: the step each score
was taken at, one column per direction and metric (``AtoB.fid``, ``BtoA.l1``, ...), and the config
keys on which the runs differ, so two numbers are never read as comparable when they are not.

Where a run's scores come from, first found: its ``results.json`` (the run's score record, written
at the end of training and by `cyclekit eval`), else the last line of ``evals.jsonl`` (evaluations
during training), else ``eval.json`` (the end-of-training scores of cyclekit 0.2 and earlier).
A model that scores worse than the mean-target image (the best constant guess) is flagged. A run
that samples (the GAN recipes) shows its sampling scores (``conditional_accuracy``,
``classes_covered``, ``frechet_classifier``, ``modes_covered``, ``M_last``, ``caption_match``, ...).
A run without scores is one line in the table saying why; only when no run has scores is that an error.
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

# The sampling scores shown for runs that sample, in this order; other numbers of a record's
# "sampling" are shown after them, except the bookkeeping below (counts, sizes, chance levels).
SAMPLING_METRICS = (
    "conditional_accuracy",
    "classes_covered",
    "frechet_classifier",
    "classifier_test_accuracy",
    "discriminator_test_accuracy",
    "supervised_only_test_accuracy",
    "modes_covered",
    "high_quality",
    "M_first",
    "M_last",
    "k_last",
    "caption_match",
    "detector_on_real",
    "sharpness_ratio",
)
SAMPLING_BOOKKEEPING = (
    "of_classes",
    "of_modes",
    "samples_scored",
    "n_samples",
    "M_logged",
    "labelled_images",
    "stage1_size",
    "stage2_size",
    "caption_match_chance",
    "sharpness_stage2",
    "sharpness_stage1_upscaled",
    "sharpness_real",
)


class NoScores(CyclekitError):
    """A run with no score record at all (the message says why)."""


def scores_of(run: Path) -> dict[str, Any]:
    """One run's score record: {"source", "step", "directions", "worse", "sampling"} (see the module
    docstring). `NoScores` when it has none, saying why."""
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
        sampling = row.get("sampling") if isinstance(row.get("sampling"), dict) else {}
        return {
            "source": source,
            "step": _int(row.get("step")),
            "directions": directions,
            "worse": {},
            "sampling": sampling,
        }
    if (run / "eval.json").is_file():
        legacy = load_json_object(run / "eval.json")
        direction = str(legacy.get("direction", "AtoB"))
        return {
            "source": "eval.json",
            "step": None,
            "directions": {direction: {k: v for k, v in legacy.items() if k in METRICS}},
            "worse": {},
            "sampling": {},
        }
    raise NoScores(why_unscored(run))


def why_unscored(run: Path) -> str:
    """Why the run folder ``run`` has no score record (no results.json, evals.jsonl or eval.json),
    and what would give it one, when something would."""
    if not run.is_dir():
        return "run not found"
    if not (run / "config.yaml").is_file():
        if (run / "config.json").is_file():
            return "a bundle, not a run: score it with `cyclekit eval BUNDLE --data DIR -o FILE` and compare FILE"
        return "not a run folder (no config.yaml, no results.json)"
    config = _read_config(run / "config.yaml")
    recipe, data = str(config.get("recipe", "")), config.get("data")
    data = data if isinstance(data, dict) else {}
    kind = str(data.get("kind", ""))
    if not (run / "bundle" / "config.json").is_file():
        return "no bundle: training has not finished (a run is scored at its end)"
    try:
        from cyclekit.inference.bundle import read_bundle

        samples = read_bundle(run / "bundle").samples is not None
    except CyclekitError as exc:
        return str(exc)
    hint = f"no results.json: `cyclekit eval {run}` scores it"
    if samples:
        from cyclekit.evaluation.evaluate import sampling_unscored_reason

        return sampling_unscored_reason(recipe, kind) or hint
    options = data.get(kind) if isinstance(data.get(kind), dict) else data  # data.<kind>: (older: flat)
    root = options.get("root")
    if kind == "demo":
        return hint
    if not isinstance(root, str) or not Path(root).is_dir():
        return f"no results.json, and its data folder is not found ({root}): `cyclekit eval {run} --data DIR`"
    suffixes = options.get("pair_suffixes")
    split = _test_split(Path(root), suffixes if isinstance(suffixes, list) and len(suffixes) == 2 else ["_A", "_B"])
    if split is None:
        return f"no test split in {root} (testA/ and testB/, or test/): nothing to score on"
    if split == "unpaired":
        from cyclekit.evaluation.fid import default_weights_path

        if not default_weights_path().is_file():
            return (
                f"the test images in {root} do not pair up, so only FID/KID can score them, and the Inception "
                f"weights are not in the cache: `cyclekit eval {run} --inception FILE` (or online)"
            )
    return hint


def _test_split(root: Path, suffixes: list[str]) -> str | None:
    """``paired`` or ``unpaired`` test images in ``root`` (by name, as `cyclekit eval` pairs them), or None."""
    from cyclekit.data.paired import detect_layout, pair_files
    from cyclekit.errors import DataError

    try:
        layout = detect_layout(root, "test")
    except DataError:
        return None
    if layout != "folders":
        return "paired"
    try:
        pair_files(root / "testA", root / "testB", tuple(suffixes), strict=True)
    except DataError:
        return "unpaired"
    return "paired"


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _record(source: str, raw: dict[str, Any], path: Path) -> dict[str, Any]:
    directions = scores_by_direction(raw.get("directions"), f"{path}: directions")
    try:
        worse = worse_than_mean_target(raw)
    except (AttributeError, TypeError):  # damaged baselines: no flags rather than no table
        worse = {}
    step = raw.get("step")
    if step is None and isinstance(raw.get("reproducibility"), dict):
        step = raw["reproducibility"].get("bundle_step")  # results.json of cyclekit 0.2
    sampling = raw.get("sampling") if isinstance(raw.get("sampling"), dict) else {}
    return {"source": source, "step": _int(step), "directions": directions, "worse": worse, "sampling": sampling}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def collect(runs: list[Path]) -> dict[str, Any]:
    """{"columns", "config_columns", "rows": [{"run", "source", "step", column: value, ...}]}. A run
    without scores is a row {"run", "source": "", "step": None, "no_scores": why}; `NoScores` when
    no run has scores."""
    rows = []
    columns: list[str] = []
    sampling_columns: list[str] = []
    for run in runs:
        try:
            record = scores_of(run)
        except CyclekitError as exc:  # no record, or a damaged one: this run's line says so
            rows.append({"run": str(run), "source": "", "step": None, "no_scores": _why(run, exc)})
            continue
        row: dict[str, Any] = {"run": str(run), "source": record["source"], "step": record["step"]}
        for direction, values in record["directions"].items():
            for metric in METRICS:
                if number(values.get(metric)) is not None:
                    key = f"{direction}.{metric}"
                    row[key] = values[metric]
                    if key not in columns:
                        columns.append(key)
        for key, value in record.get("sampling", {}).items():
            if key in SAMPLING_BOOKKEEPING or number(value) is None or key in METRICS or "." in key:
                continue
            row[key] = value
            if key not in sampling_columns:
                sampling_columns.append(key)
        row["worse"] = [f"{d}.{m}" for d, ms in record["worse"].items() for m in ms]
        if len(row) == 4:  # run, source, step, worse: a record that holds no score
            row = {"run": str(run), "source": "", "step": None, "no_scores": f"{record['source']} holds no scores"}
        rows.append(row)
    if all("no_scores" in r for r in rows):
        raise NoScores("no scores to compare: " + "; ".join(f"{r['run']}: {r['no_scores']}" for r in rows))
    columns.sort(key=lambda c: (c.split(".")[0], METRICS.index(c.split(".")[1])))
    known = {k: i for i, k in enumerate(SAMPLING_METRICS)}
    sampling_columns.sort(key=lambda k: known.get(k, len(known)))
    columns += sampling_columns
    shown = [(run, row) for run, row in zip(runs, rows, strict=True) if "no_scores" not in row]
    config_columns = _differing_config([run for run, _ in shown], [row for _, row in shown])
    return {"columns": columns, "config_columns": config_columns, "rows": rows}


def _why(run: Path, exc: CyclekitError) -> str:
    """The reason of a run's line: NoScores says it; another error names the file (drop a leading run path)."""
    if not run.exists():
        return "run not found"
    text = " ".join(str(exc).split())
    return text[len(str(run)) :].lstrip(": ") if text.startswith(f"{run}:") else text


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
        if "no_scores" in r:
            body.append([r["run"], "-"])  # the reason follows, across the score columns
            continue
        cells = [_fmt(r.get(c)) + ("*" if c in r.get("worse", []) else "") for c in table["columns"]]
        body.append(
            [r["run"], _fmt(r.get("step")), *cells, *[_plain(r.get(f"config:{k}")) for k in config], r["source"]]
        )
    full = [b for b in body if len(b) == len(head)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *full, strict=True)]
    widths[0] = max(len(str(b[0])) for b in [head, *body])
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=False)).rstrip() for line in [head, *body]]
    for i, r in enumerate(table["rows"]):
        if "no_scores" in r:
            lines[i + 1] = f"{lines[i + 1]}  no scores: {r['no_scores']}"
    scored = [r for r in table["rows"] if "no_scores" not in r]
    steps = {r.get("step") for r in scored}
    notes = []
    if any(r.get("worse") for r in table["rows"]):
        notes.append("* worse than the mean-target image (the best constant guess): the model has not learned this")
    if len(scored) > 1 and len(steps) > 1:
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
        if "no_scores" in r:
            blanks = [""] * (len(table["columns"]) + len(config) + 2)
            writer.writerow([r["run"], *blanks, f"no scores: {r['no_scores']}"])
            continue
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
