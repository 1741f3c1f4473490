"""The comparison page of `cyclekit compare` for runs that sample (the GAN family): one self-contained
HTML file (images as ``data:`` URIs, inline styles, no script, nothing fetched) with the runs side
by side: each run's name and recipe, a per-class grid of fresh samples, its yardstick scores
(conditional accuracy, classes covered, Fréchet distance in the classifier's feature space, the
classifier's own test accuracy and the yardstick's id), its training time and steps, and its rank,
or the notice that the runs were scored by different yardsticks and are not ranked.

The grids are drawn from each run's bundle with fixed noise (seed :data:`SEED`), so a page drawn
twice shows the same samples:

- a class-conditional generator: :data:`PER_CLASS` samples of each class, one row per class;
- an unconditional one: :data:`UNCONDITIONAL_SAMPLES` samples sorted by the class the run's
  yardstick (the classifier that scored it, read from the cache by the id its score record names)
  predicts, up to :data:`PER_CLASS` a row; an empty row is a class the generator did not draw,
  which is what shows its mode coverage. Without the yardstick file, an unlabelled grid, and the
  page says why;
- a generator conditioned on text (StackGAN): the run's last training sample grid;
- a generator of 2-D points: a scatter of its samples.

The page is marked as cyclekit's (``<meta name="generator" content="cyclekit compare">``): an
existing file without the mark is never overwritten (`check_page_target`).
"""

from __future__ import annotations

import datetime
import io
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from cyclekit import __version__
from cyclekit.atomic import atomic_write
from cyclekit.errors import CyclekitError
from cyclekit.evaluation.compare import (
    NOT_RANKED,
    UNKNOWN_YARDSTICK,
    YARDSTICK_SCORES,
    scores_of,
    yardstick_id,
)
from cyclekit.records import load_optional_object, number
from cyclekit.report.html import CSS, format_number, format_seconds

GENERATOR = "cyclekit compare"
MARK = f'<meta name="generator" content="{GENERATOR}">'
DEFAULT_PAGE = Path("compare.html")
PER_CLASS = 10  # samples a row: per class (conditional), at most per predicted class (unconditional)
UNCONDITIONAL_SAMPLES = 200
UNLABELLED_SAMPLES = 64
POINT_SAMPLES = 512
SEED = 0
DASH = "\u2014"
ROW_WIDTH = 360  # a row of samples is enlarged by a whole factor to about this many pixels
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a yardstick id that may name a cache file

PAGE_CSS = """
main { max-width: none; }
.runs { display: flex; gap: 18px; margin-top: 16px; overflow-x: auto; align-items: flex-start; padding-bottom: 8px; }
.run-card { flex: 0 0 auto; width: 460px; border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px 14px; }
.run-card h2 { margin-top: 4px; }
.rank { font-weight: 600; }
.notice { border-left: 4px solid #d4a72c; background: #fff8c5; padding: 6px 10px; }
table.class-grid th { font-weight: 500; white-space: nowrap; }
table.class-grid td { padding: 2px 6px; }
table.class-grid img, img.samples { display: block; image-rendering: pixelated; max-width: 100%; height: auto; }
td.empty { color: var(--muted); font-style: italic; }
"""


def sampling_runs(runs: list[Path]) -> list[Path]:
    """The run folders among ``runs`` (folders, or a run's results.json) whose bundle samples."""
    from cyclekit.inference.bundle import samples

    out = []
    for run in runs:
        folder = _folder(run)
        if folder is not None and samples(folder):
            out.append(folder)
    return out


def _folder(run: Path) -> Path | None:
    """The run folder of a compare argument: the folder itself, or the folder of its results.json."""
    if run.is_dir():
        return run
    if run.is_file() and (run.parent / "bundle").is_dir():
        return run.parent
    return None


def check_page_target(path: Path) -> None:
    """One clear error before any work: the page must be an .html file, and an existing file is
    replaced only if an earlier `cyclekit compare` wrote it."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise CyclekitError(f"--html: {path} must end in .html")
    if path.is_dir():
        raise CyclekitError(f"--html: {path} is a folder")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError as exc:
            raise CyclekitError(f"--html: cannot read {path} ({exc.strerror or exc})") from None
        if MARK.encode() not in head:
            raise CyclekitError(
                f"{path} already exists and was not written by `cyclekit compare`; move it, or pass --html another file"
            )


# --- the grids ------------------------------------------------------------------------------------


@dataclass
class Grid:
    """A run's samples on the page: rows of (label or None, PNG data URI or None for an empty row,
    how many samples the row stands for), and what the grid is."""

    rows: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    note: str = ""
    kind: str = "unlabelled"  # per-class | by-yardstick | unlabelled | training-grid | points | none


def _png_uri(image: Any) -> tuple[str, int, int]:
    import base64

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), image.width, image.height


def _strip(images: Any, per_row: int) -> str:
    """Images (N x C x H x W in [-1, 1]) tiled ``per_row`` a row, as an <img> (data URI)."""
    from cyclekit.data.images import make_grid, tensor_to_image

    uri, width, height = _png_uri(tensor_to_image(make_grid(images, nrow=per_row, padding=2)))
    # one scale for every row, from a full row's width: a row with fewer samples is shorter, not bigger
    full = per_row * (images.shape[-1] + 2) + 2
    scale = max(1, round(ROW_WIDTH / full))
    return (
        f'<img class="samples" src="{uri}" width="{width * scale}" height="{height * scale}" '
        f'alt="{len(images)} samples">'
    )


def _yardstick(record: dict[str, Any]) -> tuple[Any, str]:
    """(the yardstick a score record names, loaded from the cache, or None; why not)."""
    from cyclekit.data.catalogue import default_cache_dir
    from cyclekit.evaluation.classifier import Yardstick

    ident = yardstick_id(record)
    if ident is None and not any(number(record.get(k)) is not None for k in YARDSTICK_SCORES):
        return None, "the run has no yardstick scores"
    if ident is None:
        return None, "its score record does not name the yardstick that scored it"
    if not SAFE_ID.fullmatch(ident):
        return None, f"its yardstick id {ident!r} is not a cache file name"
    path = default_cache_dir() / "yardsticks" / f"{ident}.pt"
    try:
        return Yardstick.load(path), ""
    except CyclekitError:
        return None, f"the yardstick {ident} is not in the cache ({path})"


def draw_grid(folder: Path, record: dict[str, Any], device: str = "auto") -> Grid:
    """The samples of the run ``folder`` for its card (see the module docstring); ``record``: the
    run's ``sampling`` scores (they name its yardstick). A run that cannot be sampled gets a note."""
    import torch

    from cyclekit.inference.sampling import class_labels, sample_stages, sampling_bundle

    bundle_folder, _, samples = sampling_bundle(folder)
    signature = samples.signature
    if samples.output == "points":
        points = sample_stages(bundle_folder, POINT_SAMPLES, SEED, device)[-1]
        return Grid([(None, _scatter(points), len(points))], f"{POINT_SAMPLES} samples (fixed noise)", "points")
    if signature.input("embedding") is not None:
        return _training_grid(folder)
    classes = signature.classes
    if classes:
        labels = class_labels(classes, "all", PER_CLASS)
        images = sample_stages(bundle_folder, len(labels), SEED, device, labels)[-1]
        rows = [(name, _strip(images[k * PER_CLASS : (k + 1) * PER_CLASS], PER_CLASS), PER_CLASS) for k, name in
                enumerate(classes)]  # fmt: skip
        return Grid(rows, f"{PER_CLASS} samples of each class from fixed noise (seed {SEED}), one row per class",
                    "per-class")  # fmt: skip
    images = sample_stages(bundle_folder, UNCONDITIONAL_SAMPLES, SEED, device)[-1]
    stick, why = _yardstick(record)
    if stick is not None and tuple(images.shape[1:]) != tuple(stick.image_shape):
        stick, why = (
            None,
            f"its yardstick was fitted on {stick.image_shape} images, the samples are {tuple(images.shape[1:])}",
        )
    if stick is None:
        shown = images[:UNLABELLED_SAMPLES]
        return Grid(
            [(None, _strip(shown, 8), len(shown))],
            f"unlabelled: {why}, so the samples are not sorted by class ({len(shown)} samples, fixed noise)",
            "unlabelled",
        )
    with torch.no_grad():
        stick.model.eval()
        predicted = torch.cat([stick.model(x.float()).argmax(1) for x in images.split(256)])
    rows: list[tuple[str | None, str | None, int]] = []
    for k, name in enumerate(stick.class_names):
        chosen = images[predicted == k]
        rows.append((name, _strip(chosen[:PER_CLASS], PER_CLASS) if len(chosen) else None, len(chosen)))
    note = (
        f"{len(images)} samples from fixed noise (seed {SEED}), sorted into rows by the class the yardstick "
        f"{yardstick_id(record)} sees in them, up to {PER_CLASS} a row; an empty row is a class the generator "
        "did not draw"
    )
    return Grid(rows, note, "by-yardstick")


def _training_grid(folder: Path) -> Grid:
    """The run's last training sample grid (samples/step_*.png), for a generator cyclekit cannot
    sample without a caption's embedding."""
    from PIL import Image

    grids = sorted((folder / "samples").glob("step_*.png"))
    why = "this generator is conditioned on text (draw it with `cyclekit sample RUN --text ...`)"
    for path in reversed(grids):
        try:
            with Image.open(path) as image:
                image.load()
                uri, width, height = _png_uri(image)
        except (OSError, ValueError):
            continue
        scale = max(1, round(ROW_WIDTH / max(1, width)))
        img = f'<img class="samples" src="{uri}" width="{width * scale}" height="{height * scale}" alt="{path.name}">'
        return Grid([(None, img, 0)], f"{why}: its last training sample grid, {path.name}", "training-grid")
    return Grid([], f"{why}, and it has no training sample grid", "none")


def _scatter(points: Any) -> str:
    """2-D points as a 240 px scatter plot (an <img>), the axes spanning the points."""
    from PIL import Image, ImageDraw

    side = 240
    p = points.double()
    low, high = p.min(0).values, p.max(0).values
    span = (high - low).clamp(min=1e-6)
    xy = ((p - low) / span * (side - 9) + 4).tolist()
    image = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for x, y in xy:
        draw.ellipse((x - 1.5, side - y - 1.5, x + 1.5, side - y + 1.5), fill=(9, 105, 218))
    uri, width, height = _png_uri(image)
    return f'<img class="samples" src="{uri}" width="{width}" height="{height}" alt="{len(xy)} samples">'


# --- the page -------------------------------------------------------------------------------------

FACTS = (
    ("conditional_accuracy", "conditional accuracy"),
    ("classes_covered", "classes covered"),
    ("frechet_classifier", "Fréchet (classifier)"),
    ("classifier_test_accuracy", "classifier test accuracy"),
)


@dataclass
class Card:
    run: Path
    name: str
    recipe: str
    row: dict[str, Any]
    record: dict[str, Any]
    grid: Grid
    seconds: float | None
    steps: int | None


def _card(run: Path, folder: Path, row: dict[str, Any], device: str) -> Card:
    from cyclekit.evaluation.compare import _read_config

    config = _read_config(folder / "config.yaml")
    try:
        record = scores_of(run)["sampling"]
    except CyclekitError:  # no record (the card says why), or a damaged one
        record = {}
    try:
        grid = draw_grid(folder, record, device)
    except CyclekitError as exc:
        grid = Grid([], f"no samples drawn: {exc}", "none")
    try:
        timing = load_optional_object(folder / "timing.json") or {}
    except CyclekitError:  # damaged: the time is unknown, the page is still written
        timing = {}
    steps = timing.get("steps")
    if not isinstance(steps, int) or isinstance(steps, bool):
        steps = row.get("step") if isinstance(row.get("step"), int) else None
    return Card(
        run=run,
        name=str(config.get("name") or folder.name),
        recipe=str(config.get("recipe") or "unknown recipe"),
        row=row,
        record=record,
        grid=grid,
        seconds=number(timing.get("seconds")),
        steps=steps,
    )


def _rank_text(row: dict[str, Any], ranking: dict[str, Any] | None, n: int) -> str:
    rank = row.get("rank")
    if isinstance(rank, int) and ranking:
        return f"rank {rank} of {n} (by {ranking['metric']}, {ranking['better']} is better)"
    if rank == NOT_RANKED:
        return "different yardsticks: not ranked"
    if "no_scores" in row:
        return "not ranked: no scores"
    if "yardstick" not in row:
        return "not ranked: not scored by a yardstick"
    return "not ranked"


def _yardstick_text(row: dict[str, Any]) -> str:
    if "yardstick" not in row:
        return "none (not scored by a yardstick)"
    return row["yardstick"] or UNKNOWN_YARDSTICK


def _facts(card: Card, ranking: dict[str, Any] | None, n_ranked: int) -> list[tuple[str, str, str]]:
    """(key, label, text) of the card's facts, in order."""
    row, record = card.row, card.record
    facts = [("rank", "rank", _rank_text(row, ranking, n_ranked))]
    if "no_scores" in row:
        facts.append(("scores", "scores", f"none: {row['no_scores']}"))
    for key, label in FACTS:
        value = record.get(key)
        if key == "classes_covered" and number(value) is not None:
            of = record.get("of_classes")
            text = f"{value} of {of}" if number(of) is not None else str(value)
        elif key == "conditional_accuracy" and value is None and "yardstick" in row:
            text = "\u2014 (an unconditional generator)"
        else:
            text = format_number(value) if number(value) is not None else "\u2014"
        facts.append((key, label, text))
    facts.append(("yardstick", "yardstick", _yardstick_text(row)))
    stick = record.get("yardstick") if isinstance(record.get("yardstick"), dict) else {}
    if stick.get("data_hash"):
        facts.append(("data_hash", "yardstick data", f"{stick['data_hash']} ({stick.get('train_images')} training, "
                                                       f"{stick.get('test_images')} test images)"))  # fmt: skip
    shown = {k for k, _ in FACTS} | {"step"}
    for key, value in row.items():  # a recipe's own scores (SGAN's discriminator, a ring's modes, ...)
        if key not in shown and number(value) is not None and key not in ("rank",) and ":" not in key:
            facts.append((key, key.replace("_", " "), format_number(value)))
    facts.append(("time", "training time", format_seconds(card.seconds) if card.seconds is not None else
                  "unknown (no timing.json)"))  # fmt: skip
    facts.append(("steps", "steps", str(card.steps) if card.steps is not None else "unknown"))
    facts.append(("source", "scores from", str(row.get("source") or "\u2014")))
    return facts


def _grid_html(grid: Grid) -> str:
    out = f'<p class="note grid-note">{escape(grid.note)}</p>' if grid.note else ""
    if not grid.rows:
        return out
    if all(label is None for label, _, _ in grid.rows):
        return out + "".join(f'<div class="grid-image">{img}</div>' for _, img, _ in grid.rows if img)
    body = []
    for label, img, count in grid.rows:
        cell = f"<td>{img}</td>" if img else '<td class="empty">no samples of this class</td>'
        tally = ""
        if grid.kind == "by-yardstick":  # how many of the samples the yardstick put in this class
            cell = f'<td class="num count">{count}</td>' + cell
            tally = f' title="{count} samples"'
        body.append(f'<tr data-class="{escape(str(label))}" data-count="{count}"{tally}>'
                    f"<th>{escape(str(label))}</th>{cell}</tr>")  # fmt: skip
    return out + f'<table class="class-grid" data-kind="{grid.kind}"><tbody>' + "".join(body) + "</tbody></table>"


def _card_html(card: Card, ranking: dict[str, Any] | None, n_ranked: int) -> str:
    facts = "".join(
        f'<dt>{escape(label)}</dt><dd data-fact="{escape(key)}">{escape(text)}</dd>'
        for key, label, text in _facts(card, ranking, n_ranked)
    )
    return (
        f'<section class="run-card" data-run="{escape(str(card.run))}">'
        f'<h2 class="run-name">{escape(card.name)}</h2>'
        f'<p class="subtitle">recipe <strong class="recipe">{escape(card.recipe)}</strong> &middot; '
        f"<code>{escape(str(card.run))}</code></p>"
        f'<dl class="facts">{facts}</dl><h3>Samples</h3>{_grid_html(card.grid)}</section>'
    )


def _summary_html(cards: list[Card], ranking: dict[str, Any] | None, n_ranked: int) -> str:
    head = ["run", "recipe", "rank", *(label for _, label in FACTS), "yardstick", "training time", "steps"]
    body = []
    for card in cards:
        facts = {key: text for key, _, text in _facts(card, ranking, n_ranked)}
        rank = card.row.get("rank")
        cells = [
            f"<td>{escape(card.name)}</td>",
            f"<td>{escape(card.recipe)}</td>",
            f'<td class="num" data-metric="rank">{escape(str(rank) if isinstance(rank, int) else DASH)}</td>',
            *(f'<td class="num" data-metric="{k}">{escape(facts[k].split(" (")[0])}</td>' for k, _ in FACTS),
            f'<td data-metric="yardstick"><code>{escape(facts["yardstick"])}</code></td>',
            f'<td class="num" data-metric="time">{escape(facts["time"])}</td>',
            f'<td class="num" data-metric="steps">{escape(facts["steps"])}</td>',
        ]
        body.append(f'<tr data-run="{escape(str(card.run))}">' + "".join(cells) + "</tr>")
    return (
        '<div class="table-wrap"><table id="summary"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _ranking_html(ranking: dict[str, Any] | None) -> str:
    if not ranking or not ranking.get("note"):
        return (
            '<p class="note" id="ranking" data-ranked="false">not ranked: fewer than two runs scored by a yardstick</p>'
        )
    cls = "note" if ranking["ranked"] else "notice"
    flag = "true" if ranking["ranked"] else "false"
    return f'<p class="{cls}" id="ranking" data-ranked="{flag}">{escape(ranking["note"])}</p>'


def write_compare_page(runs: list[Path], table: dict[str, Any], path: Path, device: str = "auto") -> Path:
    """Write the comparison page of the runs among ``runs`` that sample to ``path`` (see the module
    docstring); ``table``: `cyclekit.evaluation.compare.collect` of ``runs`` (its rows in their order).
    The other runs (translation runs, folders without a bundle) are listed by name. Checks ``path``
    with `check_page_target` first."""
    check_page_target(path)
    samplers = set(sampling_runs(runs))
    cards, others = [], []
    for run, row in zip(runs, table["rows"], strict=True):
        folder = _folder(run)
        if folder is not None and folder in samplers:
            cards.append(_card(run, folder, row, device))
        else:
            why = row.get("no_scores") or "does not sample (its scores are in the table `cyclekit compare` prints)"
            others.append((run, why))
    if not cards:
        raise CyclekitError("none of the runs samples: there is no comparison page to write")
    ranking = table.get("ranking")
    n_ranked = sum(isinstance(r.get("rank"), int) for r in table["rows"])
    if ranking and ranking.get("ranked"):
        cards.sort(key=lambda c: c.row["rank"] if isinstance(c.row.get("rank"), int) else n_ranked + 1)
    other = ""
    if others:
        items = "".join(f"<li><code>{escape(str(r))}</code>: {escape(str(why))}</li>" for r, why in others)
        other = f'<h2>Other runs</h2><ul id="other-runs">{items}</ul>'
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"{len(cards)} sampling run{'s' if len(cards) != 1 else ''} compared"
    page = (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{MARK}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} \u2014 cyclekit</title><style>{CSS}{PAGE_CSS}</style></head><body><main>"
        f"<h1>{escape(title)}</h1>"
        f'<p class="subtitle">by cyclekit {escape(__version__)}, {generated}; samples drawn from each run\'s '
        f"bundle with fixed noise (seed {SEED})</p>"
        + _ranking_html(ranking)
        + _summary_html(cards, ranking, n_ranked)
        + '<div class="runs">'
        + "".join(_card_html(c, ranking, n_ranked) for c in cards)
        + "</div>"
        + other
        + "</main></body></html>\n"
    )
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, page)
