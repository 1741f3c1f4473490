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

Runs scored by the classifier yardstick (`cyclekit.evaluation.classifier`) are ranked only when one
yardstick scored them all: each score record names its yardstick (``sampling.yardstick.id``, the
classifier's settings and the data it was trained and tested on). Runs scored by different
yardsticks, or by one a record does not name (a results.json older than the record), are shown
unranked, with a note that says so; numbers from two yardsticks are never ranked silently.
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


# The scores a yardstick gives (a record that holds one of them was scored by a yardstick), and the
# ranking metrics in order of preference: the first that every ranked run has ranks them.
YARDSTICK_SCORES = ("conditional_accuracy", "classes_covered", "frechet_classifier", "classifier_test_accuracy")
RANK_BY = (("conditional_accuracy", "higher"), ("frechet_classifier", "lower"))
UNKNOWN_YARDSTICK = "unknown yardstick"
NOT_RANKED = "not ranked (different yardsticks)"


def yardstick_id(sampling: dict[str, Any]) -> str | None:
    """The id of the yardstick that scored a record's ``sampling`` scores; None when the record does
    not name one (a results.json written before records named their yardstick)."""
    stick = sampling.get("yardstick")
    ident = stick.get("id") if isinstance(stick, dict) else None
    return ident if isinstance(ident, str) and ident else None


def scored_by_yardstick(sampling: dict[str, Any]) -> bool:
    return isinstance(sampling.get("yardstick"), dict) or any(
        number(sampling.get(k)) is not None for k in YARDSTICK_SCORES
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
        elif scored_by_yardstick(record.get("sampling", {})):
            row["yardstick"] = yardstick_id(record["sampling"])  # None: the record does not name it
        rows.append(row)
    if all("no_scores" in r for r in rows):
        raise NoScores("no scores to compare: " + "; ".join(f"{r['run']}: {r['no_scores']}" for r in rows))
    columns.sort(key=lambda c: (c.split(".")[0], METRICS.index(c.split(".")[1])))
    known = {k: i for i, k in enumerate(SAMPLING_METRICS)}
    sampling_columns.sort(key=lambda k: known.get(k, len(known)))
    columns += sampling_columns
    shown = [(run, row) for run, row in zip(runs, rows, strict=True) if "no_scores" not in row]
    config_columns = _differing_config([run for run, _ in shown], [row for _, row in shown])
    table = {"columns": columns, "config_columns": config_columns, "rows": rows}
    if any("yardstick" in r for r in rows):
        table["ranking"] = rank(rows)
    return table


def rank(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank the rows scored by a yardstick (two or more) when one yardstick scored them all: each
    gets ``rank`` (1 = best; equal scores share a rank) by the first metric of `RANK_BY` they all
    have. Returns {"ranked", "metric", "better", "yardsticks", "note"}; when the yardsticks differ
    (or a record does not name its yardstick) the rows get ``rank`` NOT_RANKED and the note names them."""
    scored = [r for r in rows if "yardstick" in r]
    ids = list(dict.fromkeys(r["yardstick"] or UNKNOWN_YARDSTICK for r in scored))
    info: dict[str, Any] = {"ranked": False, "metric": None, "better": None, "yardsticks": ids, "note": None}
    if len(scored) < 2:
        return info
    if len(ids) > 1 or UNKNOWN_YARDSTICK in ids:
        for r in scored:
            r["rank"] = NOT_RANKED
        if len(ids) > 1:
            info["note"] = f"the runs were scored by different yardsticks ({', '.join(ids)}) and are not ranked"
        else:
            info["note"] = "the runs' yardstick is unknown (their score records do not name it): not ranked"
        return info
    usable = [(m, b) for m, b in RANK_BY if all(number(r.get(m)) is not None for r in scored)]
    if not usable:
        info["note"] = "not ranked: no yardstick score that every run has"
        return info
    metric, better = usable[0]
    keyed = [float(r[metric]) * (-1 if better == "higher" else 1) for r in scored]
    for r, key in zip(scored, keyed, strict=True):
        r["rank"] = 1 + sum(other < key for other in keyed)
    info |= {
        "ranked": True,
        "metric": metric,
        "better": better,
        "note": f"ranked by {metric} ({better} is better); every run was scored by yardstick {ids[0]}",
    }
    return info


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
    ranking = table.get("ranking")
    ranks = ["rank"] if ranking and ranking["ranked"] else []
    sticks = ["yardstick"] if ranking else []
    head = ["run", "step", *ranks, *table["columns"], *config, *sticks, "source"]
    body = []
    for r in table["rows"]:
        if "no_scores" in r:
            body.append([r["run"], "-"])  # the reason follows, across the score columns
            continue
        cells = [_fmt(r.get(c)) + ("*" if c in r.get("worse", []) else "") for c in table["columns"]]
        rank_cells = [_fmt(r["rank"]) if isinstance(r.get("rank"), int) else "-" for _ in ranks]
        stick_cells = [_stick(r) for _ in sticks]
        body.append(
            [
                r["run"],
                _fmt(r.get("step")),
                *rank_cells,
                *cells,
                *[_plain(r.get(f"config:{k}")) for k in config],
                *stick_cells,
                r["source"],
            ]
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
    if ranking and ranking.get("note"):
        notes.append(ranking["note"])
    return "\n".join(lines + [f"note: {n}" for n in notes])


def _stick(row: dict[str, Any]) -> str:
    """A row's yardstick cell: its id, "unknown yardstick", or "-" for a run no yardstick scored."""
    if "yardstick" not in row:
        return "-"
    return row["yardstick"] or UNKNOWN_YARDSTICK


def to_csv(table: dict[str, Any]) -> str:
    """The table as CSV; with runs scored by a yardstick, a ``rank`` column (a number, empty, or
    NOT_RANKED when the yardsticks differ) and a ``yardstick`` column (its id, or "unknown yardstick")."""
    config = table.get("config_columns", [])
    extra = ["rank", "yardstick"] if table.get("ranking") else []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["run", "step", *table["columns"], *config, *extra, "worse_than_mean_target", "source"])
    for r in table["rows"]:
        if "no_scores" in r:
            blanks = [""] * (len(table["columns"]) + len(config) + len(extra) + 2)
            writer.writerow([r["run"], *blanks, f"no scores: {r['no_scores']}"])
            continue
        cells = [r.get("rank", ""), "" if "yardstick" not in r else _stick(r)] if extra else []
        writer.writerow(
            [
                r["run"],
                "" if r.get("step") is None else r["step"],
                *[r.get(c, "") for c in table["columns"]],
                *[_plain(r.get(f"config:{k}")) for k in config],
                *cells,
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
