"""One self-contained HTML page for a run folder: ``write_report(run_dir)`` writes ``run_dir/report.html``.

The page needs no server and no network: the plots and sample grids are embedded as base64
``data:`` URIs, the slider is a few lines of inline JavaScript, the styles are inline, so the one
file can be mailed or opened from disk. Everything read from the run's files is HTML-escaped.

Read (only ``config.yaml`` and ``metrics.jsonl`` are required): ``metrics.jsonl`` (a line cut short
by a kill is ignored), ``samples/step_*.png``, ``evals.jsonl``, ``results.json``, ``best.json``,
``timing.json``. At most ``max_samples`` sample grids are embedded (evenly spaced, always the first
and the last), which keeps the page a few MB for long runs; the page says when grids were left out.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import re
import statistics
import tempfile
from html import escape
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from cyclekit import __version__, choices, yamltext
from cyclekit.atomic import atomic_write
from cyclekit.errors import CyclekitError
from cyclekit.records import load_optional_object, read_metrics, scores_by_direction
from cyclekit.report.plots import MatplotlibMissing, plot_evals, plot_losses

MAX_SAMPLES = 40
SAMPLE_NAME = re.compile(r"step_(\d+)\.png")
SAMPLE_WIDTH = 768  # small grids are enlarged by a whole factor (crisp pixels) up to this width
# cyclekit eval's scores (choices.py), and a few common names other tools write.
LOWER_IS_BETTER = choices.LOWER_IS_BETTER | {"l2", "mse", "mae", "lpips"}
HIGHER_IS_BETTER = (set(choices.EVAL_METRICS) - choices.LOWER_IS_BETTER) | {"ms_ssim", "miou", "accuracy"}

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa; --accent: #0969da; --best: #fff8c5; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fff; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; word-break: break-word; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
.subtitle, .note { color: var(--muted); }
.note { font-size: 14px; margin: 6px 0; }
.warning { color: #9a6700; font-weight: 600; }
nav { margin: 12px 0 0; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 8px; }
th, td { border: 1px solid var(--line); padding: 4px 10px; }
th { background: var(--head); font-weight: 600; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.best td { background: var(--best); }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #888;
  vertical-align: middle; margin-right: 6px; }
img.plot { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
.viewer { margin-top: 8px; }
.controls { display: flex; align-items: center; gap: 12px; margin-bottom: 8px; }
.controls input[type=range] { flex: 1; max-width: 520px; }
#sample-label { font-variant-numeric: tabular-nums; min-width: 170px; }
img.sample-current { display: block; max-width: 100%; height: auto; image-rendering: pixelated;
                     border: 1px solid var(--line); }
details { margin-top: 14px; }
summary { cursor: pointer; color: var(--accent); }
.grid { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 10px; }
.grid figure { margin: 0; }
.grid img { display: block; max-width: 240px; height: auto; image-rendering: pixelated; border: 1px solid var(--line); }
figcaption { font-size: 12px; color: var(--muted); }
pre { background: var(--head); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto;
      font-size: 13px; line-height: 1.4; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
"""

SLIDER_JS = """
(function () {
  var slider = document.getElementById("sample-slider");
  var current = document.getElementById("sample-current");
  var label = document.getElementById("sample-label");
  var grids = document.querySelectorAll("#samples-all img.sample");
  if (!slider || !current || !grids.length) return;
  function show(i) {
    var g = grids[i];
    current.src = g.src;
    current.alt = g.alt;
    current.dataset.step = g.dataset.step;
    label.textContent = g.dataset.label;
  }
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  document.getElementById("sample-controls").hidden = false;
})();
"""


def format_number(value: Any) -> str:
    """A score as the page prints it: 4 significant digits in fixed notation (0.2100, 9.900,
    120.3), scientific outside [1e-4, 1e6); integers as they are; None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude == 0:
        return "0"
    if magnitude >= 1e6 or magnitude < 1e-4:
        return f"{value:.3e}"
    decimals = max(0, 3 - math.floor(math.log10(magnitude)))
    return f"{value:.{decimals}f}"


def format_seconds(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _load(path: Path, check: Any = None) -> tuple[dict[str, Any] | None, str | None]:
    """(the JSON object in ``path`` or None, why it could not be used or None). A damaged optional
    file becomes a note on the page: the report of a run is never stopped by one."""
    try:
        value = load_optional_object(path)
        if value is not None and check is not None:
            check(value, str(path))
        return value, None
    except CyclekitError as exc:
        return None, str(exc)


def _check_results(value: dict[str, Any], where: str) -> None:
    scores_by_direction(value.get("directions"), f"{where}: directions")


def _scored_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evaluation rows whose directions are objects of scores (damaged rows are left out)."""
    good = []
    for row in rows:
        try:
            scores_by_direction(row.get("directions"), "evals.jsonl")
        except CyclekitError:
            continue
        good.append(row)
    return good


def _read_config(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
        data = yamltext.load(text)
    except yamltext.YamlRefused as exc:
        raise CyclekitError(f"{path}: {exc}") from None
    except UnicodeDecodeError:
        raise CyclekitError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise CyclekitError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise CyclekitError(f"{path}: nested too deeply to be a config") from None
    except OSError as exc:
        raise CyclekitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise CyclekitError(f"{path}: expected a mapping of config keys")
    return data, text


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _metric_header(metric: str) -> str:
    arrow = " \u2193" if metric.lower() in LOWER_IS_BETTER else " \u2191" if metric.lower() in HIGHER_IS_BETTER else ""
    title = "lower is better" if arrow == " \u2193" else "higher is better" if arrow else ""
    return f'<th title="{title}">{escape(metric)}{arrow}</th>' if title else f"<th>{escape(metric)}</th>"


def _cell(value: Any, **attrs: str) -> str:
    extra = "".join(f' data-{k}="{escape(v)}"' for k, v in attrs.items())
    number = _number(value)
    if number is not None and not isinstance(value, bool):
        extra += f' data-value="{escape(repr(value))}"'
    return f'<td class="num"{extra}>{escape(format_number(value))}</td>'


def _table(head: list[str], rows: list[str]) -> str:
    return (
        '<div class="table-wrap"><table><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _metric_names(by_direction: dict[str, Any]) -> list[str]:
    """The scalar scores (numbers or null); nested detail such as per_class has its own table."""
    names: list[str] = []
    for scores in by_direction.values():
        if isinstance(scores, dict):
            names += [
                str(m)
                for m, v in scores.items()
                if str(m) not in names and (v is None or isinstance(v, (int, float))) and not isinstance(v, bool)
            ]
    return names


def _per_class(results: dict[str, Any]) -> str:
    """Label-map scores per class, each class shown by its palette colour."""
    out = ""
    palettes = results.get("palettes") if isinstance(results.get("palettes"), dict) else {}
    for direction, scores in (results.get("directions") or {}).items():
        detail = scores.get("per_class") if isinstance(scores, dict) else None
        palette = palettes.get(direction)
        if not isinstance(detail, dict) or not isinstance(palette, list):
            continue
        head = ["<th>class colour</th>", "<th>accuracy</th>", "<th>IoU</th>", "<th>target pixels</th>"]
        body = []
        for i, rgb in enumerate(palette):
            try:
                colour = "#" + "".join(f"{int(c):02x}" for c in rgb[:3])
            except (TypeError, ValueError):
                continue
            cells = [_cell(_at(detail.get(k), i)) for k in ("accuracy", "iou", "pixels")]
            swatch = f'<span class="swatch" style="background:{colour}"></span><code>{escape(colour)}</code>'
            body.append(f"<tr><td>{swatch}</td>" + "".join(cells) + "</tr>")
        if body:
            out += f"<h3>Per class, {escape(str(direction))} (palette found in the targets)</h3>" + _table(head, body)
    return out


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None


# --- sections ---------------------------------------------------------------------------------


def _summary(rows: list[dict[str, Any]], timing: dict[str, Any] | None) -> str:
    facts: list[tuple[str, str]] = []
    seconds = _number((timing or {}).get("seconds"))
    facts.append(("total time", format_seconds(seconds) if seconds is not None else "unknown (no timing.json)"))
    for key in ("started", "finished"):
        if timing and timing.get(key) is not None:
            facts.append((key, str(timing[key])))
    steps = (timing or {}).get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool):
        steps = max((r["step"] for r in rows if isinstance(r.get("step"), int)), default=None)
    facts.append(("steps", str(steps) if steps is not None else "none logged yet"))
    epochs = [r["epoch"] for r in rows if isinstance(r.get("epoch"), int)]
    if epochs:
        facts.append(("last logged epoch", str(max(epochs))))
    secs = [s for s in (_number(r.get("sec")) for r in rows) if s is not None]
    if secs:
        facts.append(
            ("median time per step", f"{format_number(statistics.median(secs))} s (over {len(secs)} logged steps)")
        )
    else:
        facts.append(("median time per step", "unknown (no step times in metrics.jsonl)"))
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return f'<h2 id="timing">Run timing</h2><dl class="facts">{body}</dl>'


def _best(best: dict[str, Any] | None, note: str | None = None) -> str:
    out = '<h2 id="best">Best epoch</h2>'
    if note is not None:
        return out + f'<p class="note">{escape(note)}</p>'
    if best is None:
        return out + '<p class="note">no best epoch recorded (no best.json)</p>'
    metric, direction = best.get("metric", "?"), best.get("direction", "?")
    facts = [
        ("metric", f"{metric} ({direction})"),
        ("value", format_number(best.get("value"))),
        ("epoch", format_number(best.get("epoch"))),
        ("step", format_number(best.get("step"))),
    ]
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
    return out + f'<dl class="facts" id="best-facts">{body}</dl>'


def _evals(eval_rows: list[dict[str, Any]], best: dict[str, Any] | None, plot_uri: str | None, note: str) -> str:
    out = '<h2 id="evals">Evaluations across epochs</h2>'
    if not eval_rows:
        return out + '<p class="note">no evaluations yet (no evals.jsonl)</p>'
    directions: list[str] = []
    for row in eval_rows:
        directions += [str(d) for d in row.get("directions") or {} if str(d) not in directions]
    best_epoch = (best or {}).get("epoch")
    for direction in directions:
        per_row = [(r, (r.get("directions") or {}).get(direction)) for r in eval_rows]
        per_row = [(r, s) for r, s in per_row if isinstance(s, dict)]
        metrics = _metric_names({str(i): s for i, (_, s) in enumerate(per_row)})
        head = ["<th>epoch</th>", "<th>step</th>"] + [_metric_header(m) for m in metrics]
        body = []
        for row, scores in per_row:
            is_best = best_epoch is not None and row.get("epoch") == best_epoch
            cells = [_cell(row.get("epoch")), _cell(row.get("step"))]
            cells += [_cell(scores.get(m)) for m in metrics]
            body.append(f"<tr{' class=best' if is_best else ''}>" + "".join(cells) + "</tr>")
        out += f"<h3>{escape(direction)}</h3>" + _table(head, body)
    if best_epoch is not None:
        out += '<p class="note">The highlighted row is the best epoch (best.json).</p>'
    if plot_uri:
        out += f'<img class="plot" id="evals-plot" src="{plot_uri}" alt="evaluation metrics per epoch">'
    elif note:
        out += f'<p class="note">{escape(note)}</p>'
    return out


def _results(results: dict[str, Any] | None, note: str | None = None) -> str:
    out = '<h2 id="results">Final scores</h2>'
    if note is not None:
        return out + f'<p class="note">{escape(note)}</p>'
    if results is None:
        return out + '<p class="note">no final scores yet (no results.json; run <code>cyclekit eval</code>)</p>'
    info = [(k, results[k]) for k in ("step", "epoch", "bundle") if results.get(k) is not None]
    if info:
        out += '<p class="note">' + " &middot; ".join(f"{escape(k)}: {escape(str(v))}" for k, v in info) + "</p>"
    directions = results.get("directions")
    if isinstance(directions, dict) and directions:
        metrics = _metric_names(directions)
        head = ["<th>direction</th>"] + [_metric_header(m) for m in metrics]
        body = []
        for direction, scores in directions.items():
            scores = scores if isinstance(scores, dict) else {}
            cells = [_cell(scores.get(m), direction=str(direction), metric=m) for m in metrics]
            body.append(f"<tr><th>{escape(str(direction))}</th>" + "".join(cells) + "</tr>")
        out += '<div id="final-scores">' + _table(head, body) + "</div>"
    elif isinstance(results.get("sampling"), dict):
        metrics = [str(k) for k, v in results["sampling"].items() if _number(v) is not None]
        row = "".join(_cell(results["sampling"][m]) for m in metrics)
        out += '<div id="final-scores">' + _table([_metric_header(m) for m in metrics], [f"<tr>{row}</tr>"]) + "</div>"
    else:
        out += '<p class="note">results.json holds no per-direction scores</p>'
    worse = results.get("worse_than_mean_target")
    if isinstance(worse, dict):
        for direction, metrics in worse.items():
            if isinstance(metrics, list):
                out += (
                    f'<p class="note warning">{escape(str(direction))} scores worse than the mean-target image on '
                    f"{escape(', '.join(map(str, metrics)))}: the model has not learned this mapping (yet).</p>"
                )
    out += _per_class(results)
    baselines = results.get("baselines")
    if isinstance(baselines, dict) and baselines:
        flat = {
            f"{d} \u00b7 {name}": scores
            for d, by_name in baselines.items()
            if isinstance(by_name, dict)
            for name, scores in by_name.items()
            if isinstance(scores, dict)
        }
        if flat:
            metrics = _metric_names(flat)
            head = ["<th>baseline</th>"] + [_metric_header(m) for m in metrics]
            body = [
                f"<tr><th>{escape(label)}</th>" + "".join(_cell(scores.get(m)) for m in metrics) + "</tr>"
                for label, scores in flat.items()
            ]
            out += "<h3>Baselines</h3>" + _table(head, body)
    if results.get("reproducibility") is not None:
        text = json.dumps(results["reproducibility"], indent=2, sort_keys=True, default=str)
        out += f"<details><summary>Reproducibility</summary><pre>{escape(text)}</pre></details>"
    return out


def _losses(plot_uri: str | None, note: str) -> str:
    out = '<h2 id="losses">Loss curves</h2>'
    if plot_uri:
        return out + f'<img class="plot" id="loss-plot" src="{plot_uri}" alt="training loss curves">'
    return out + f'<p class="note">{escape(note)}</p>'


def _pick(n: int, k: int) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)``, always the first and the last."""
    if n <= k:
        return list(range(n))
    if k <= 1:
        return [n - 1]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _samples(run_dir: Path, max_samples: int) -> str:
    out = '<h2 id="samples">Sample grids</h2>'
    folder = run_dir / "samples"
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = SAMPLE_NAME.fullmatch(path.name)
            if match and path.is_file():
                found.append((int(match[1]), path))
    found.sort()
    if not found:
        return out + '<p class="note">no sample grids yet (no samples/step_*.png)</p>'
    chosen = [found[i] for i in _pick(len(found), max_samples)]
    grids, unreadable = [], []
    for step, path in chosen:
        try:
            with Image.open(path) as img:
                width, height = img.size
            data = path.read_bytes()
        except (OSError, Image.DecompressionBombError):
            unreadable.append(path.name)
            continue
        grids.append((step, path.name, width, height, _data_uri(data)))
    if len(chosen) < len(found):
        out += (
            f'<p class="note" id="samples-subset">{len(found)} sample grids; {len(chosen)} evenly spaced ones '
            "are embedded (always the first and the last) to keep this page small.</p>"
        )
    if unreadable:
        out += f'<p class="note">unreadable, left out: {escape(", ".join(unreadable))}</p>'
    if not grids:
        return out
    figures = []
    for i, (step, name, width, height, uri) in enumerate(grids):
        label = f"step {step} ({i + 1} of {len(grids)})"
        figures.append(
            f'<figure><img class="sample" src="{uri}" width="{width}" height="{height}" data-step="{step}" '
            f'data-label="{escape(label)}" alt="sample grid at step {step}">'
            f"<figcaption>{escape(name)}</figcaption></figure>"
        )
    step, name, width, height, uri = grids[-1]
    scale = max(1, SAMPLE_WIDTH // max(1, width))
    out += (
        '<div class="viewer">'
        '<div class="controls" id="sample-controls" hidden>'
        f'<input type="range" id="sample-slider" min="0" max="{len(grids) - 1}" value="{len(grids) - 1}" step="1" '
        'aria-label="sample grid">'
        f'<span id="sample-label">step {step} ({len(grids)} of {len(grids)})</span></div>'
        f'<img class="sample-current" id="sample-current" src="{uri}" width="{width * scale}" '
        f'height="{height * scale}" data-step="{step}" alt="sample grid at step {step}">'
        "</div>"
        f'<details id="samples-all"><summary>All {len(grids)} embedded sample grids</summary>'
        f'<div class="grid">{"".join(figures)}</div></details>'
        f"<script>{SLIDER_JS}</script>"
    )
    return out


def _config(text: str) -> str:
    return f'<h2 id="config">Resolved config</h2><pre id="config-text">{escape(text)}</pre>'


# --- the page ---------------------------------------------------------------------------------


def write_report(run_dir: str | Path, max_samples: int = MAX_SAMPLES) -> Path:
    """Write ``run_dir/report.html`` (one self-contained file) and return its path."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CyclekitError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise CyclekitError(f"{run_dir}: not a folder")
    for required in ("config.yaml", "metrics.jsonl"):
        if not (run_dir / required).is_file():
            raise CyclekitError(f"{run_dir}: not a run folder (no {required})")
    config, config_text = _read_config(run_dir / "config.yaml")
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if isinstance(r, dict)]
    eval_rows = [r for r in read_metrics(run_dir / "evals.jsonl") if isinstance(r, dict)]
    eval_rows = _scored_rows(eval_rows)
    results, results_note = _load(run_dir / "results.json", _check_results)
    best, best_note = _load(run_dir / "best.json")
    timing, _ = _load(run_dir / "timing.json")

    loss_uri = evals_uri = None
    loss_note = "no losses logged yet"
    evals_note = ""
    with tempfile.TemporaryDirectory(prefix="cyclekit-report-") as tmp:
        try:
            if plot_losses(rows, Path(tmp) / "losses.png"):
                loss_uri = _data_uri((Path(tmp) / "losses.png").read_bytes())
            if plot_evals(eval_rows, Path(tmp) / "evals.png"):
                evals_uri = _data_uri((Path(tmp) / "evals.png").read_bytes())
        except MatplotlibMissing:
            loss_note = evals_note = "plots need matplotlib: pip install matplotlib"
            if (run_dir / "loss.png").is_file():  # training's own dependency-free plot
                loss_uri = _data_uri((run_dir / "loss.png").read_bytes())

    name = str(config.get("name") or run_dir.name)
    recipe = config.get("recipe")
    recipe_text = str(recipe) if recipe is not None else "unknown recipe"
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        _summary(rows, timing),
        _best(best, best_note),
        _results(results, results_note),
        _evals(eval_rows, best, evals_uri, evals_note),
        _losses(loss_uri, loss_note),
        _samples(run_dir, max_samples),
        _config(config_text),
    ]
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("timing", "Timing"),
            ("best", "Best epoch"),
            ("results", "Final scores"),
            ("evals", "Evaluations"),
            ("losses", "Losses"),
            ("samples", "Samples"),
            ("config", "Config"),
        )
    )
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(name)} \u2014 cyclekit report</title><style>{CSS}</style></head><body><main>"
        f'<h1 id="run-name">{escape(name)}</h1>'
        f'<p class="subtitle">recipe <strong id="recipe">{escape(recipe_text)}</strong> &middot; '
        f"run folder <code>{escape(str(run_dir.resolve()))}</code> &middot; report by cyclekit {escape(__version__)}, "
        f"{generated}</p>"
        f"<nav>{nav}</nav>" + "".join(sections) + "</main></body></html>\n"
    )
    return atomic_write(run_dir / "report.html", page)
