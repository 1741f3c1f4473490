"""The run report: matplotlib plots, the self-contained HTML page, and that page in a real browser."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclekit.errors import CyclekitError
from cyclekit.report.html import format_number, write_report
from cyclekit.report.plots import plot_evals, plot_losses, smoothing_span, wants_log_scale
from tests.helpers import browser_page, chromium_or_skip

NAME = 'horse2zebra <b>&"tiny"</b>'
RESULTS = {
    "cyclekit_version": "0.1.0",
    "bundle": "runs/x/bundle",
    "directions": {
        "AtoB": {"l1": 0.2134567, "psnr": 9.87654, "ssim": 0.3120001, "fid": 120.3456, "kid": 0.0512345},
        "BtoA": {"l1": 0.1987, "psnr": 11.23456, "ssim": None, "fid": 98.76543, "kid": 0.04},
    },
    "baselines": {"AtoB": {"identity": {"l1": 0.3, "psnr": 7.5}}},
    "reproducibility": {"seed": 0, "torch": "2.13.0"},
}


def grid_png(path: Path, seed: int, tile: int = 32) -> None:
    """A 3x2 'sample grid' of coloured gradients, different for every seed."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.2, 1.0, tile)[None, :, None]
    tiles = [(ramp * rng.uniform(60, 255, size=(1, 1, 3))).repeat(tile, axis=0) for _ in range(6)]
    rows = [np.concatenate(tiles[i : i + 3], axis=1) for i in (0, 3)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0).astype(np.uint8)).save(path)


def jsonl(path: Path, rows: list[dict], truncated: str) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + truncated, encoding="utf-8")


def make_run(root: Path, samples: int = 5, optional: bool = True) -> Path:
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        f"name: '{NAME}'\nrecipe: cyclegan\ndata:\n  root: data/h2z\ntrain:\n  epochs: 3\n", encoding="utf-8"
    )
    rows = []
    for step in range(1, 61):
        rows.append(
            {
                "step": step,
                "epoch": (step - 1) // 20,
                "lr": 2e-4,
                "sec": 0.1 + 0.01 * (step % 3),
                "loss_G": 10.0 * 0.001 ** ((step - 1) / 59),  # 10 -> 0.01: three decades
                "loss_cycle_A": 1.0 + 0.1 * math.sin(step),
                "loss_D_A": 0.5 + 0.05 * math.cos(step),
                "loss_D_B": 0.45,
            }
        )
    jsonl(run / "metrics.jsonl", rows, '{"step": 61, "epoch": 3, "loss_G": 0.')  # cut short by a kill
    for i in range(samples):
        grid_png(run / "samples" / f"step_{20 * (i + 1):07d}.png", seed=i)
    if optional:
        evals = [
            {
                "epoch": e,
                "step": 20 * (e + 1),
                "directions": {
                    "AtoB": {"l1": 0.3 - 0.03 * e, "fid": 150.0 - 10 * e, "ssim": None},
                    "BtoA": {"l1": 0.28 - 0.02 * e, "fid": 140.0 - 12 * e},
                },
            }
            for e in range(3)
        ]
        jsonl(run / "evals.jsonl", evals, '{"epoch": 3, "dire')
        (run / "results.json").write_text(json.dumps(RESULTS), encoding="utf-8")
        best = {"metric": "fid", "direction": "AtoB", "epoch": 2, "step": 60, "value": 130.0}
        (run / "best.json").write_text(json.dumps(best), encoding="utf-8")
        timing = {"seconds": 3725.5, "steps": 60, "started": "2025-01-01T10:00:00", "finished": "2025-01-01T11:02:05"}
        (run / "timing.json").write_text(json.dumps(timing), encoding="utf-8")
    return run


# --- plots --------------------------------------------------------------------------------------


def test_plot_losses_panels_and_log_scale(tmp_path: Path):
    from cyclekit.records import read_metrics

    run = make_run(tmp_path, samples=0, optional=False)
    info = plot_losses(read_metrics(run / "metrics.jsonl"), tmp_path / "out" / "loss.png")
    assert info
    with Image.open(tmp_path / "out" / "loss.png") as img:
        assert img.format == "PNG" and img.width > 500
    panels = {p.title: p for p in info.panels}
    assert panels["generator"].keys == ["loss_G", "loss_cycle_A"] and panels["generator"].log_y  # 3 decades
    assert panels["discriminator"].keys == ["loss_D_A", "loss_D_B"] and not panels["discriminator"].log_y


def test_log_scale_rule():
    assert wants_log_scale([10.0, 0.01])  # 3 decades
    assert not wants_log_scale([1.0, 20.0])  # 1.3 decades
    assert not wants_log_scale([-1.0, 100.0])  # not all positive
    assert [smoothing_span(n) for n in (10, 60, 1000)] == [1, 5, 20]


def test_plots_with_nothing_to_draw(tmp_path: Path):
    assert plot_losses([], tmp_path / "a.png") is False
    assert plot_losses([{"step": 1, "lr": 0.1}], tmp_path / "b.png") is False
    assert plot_evals([], tmp_path / "c.png") is False
    assert plot_evals([{"epoch": 0, "directions": {"AtoB": {"fid": None}}}], tmp_path / "d.png") is False
    assert not list(tmp_path.iterdir())


def test_plot_evals(tmp_path: Path):
    from cyclekit.records import read_metrics

    run = make_run(tmp_path, samples=0)
    info = plot_evals(read_metrics(run / "evals.jsonl"), tmp_path / "evals.png")
    assert info and {p.title: p.keys for p in info.panels} == {"fid": ["AtoB", "BtoA"], "l1": ["AtoB", "BtoA"]}
    with Image.open(tmp_path / "evals.png") as img:
        assert img.format == "PNG"


# --- the page -----------------------------------------------------------------------------------


def test_report_content(tmp_path: Path):
    run = make_run(tmp_path)
    page = write_report(run).read_text(encoding="utf-8")
    assert (run / "report.html").is_file()
    assert "horse2zebra &lt;b&gt;&amp;&quot;tiny&quot;&lt;/b&gt;" in page and "<b>&" not in page
    assert 'id="recipe">cyclegan<' in page
    assert "1 h 02 min 06 s" in page  # timing.json
    assert "0.1100 s (over 60 logged steps)" in page  # median sec; the truncated line is ignored
    assert "130.0" in page and "fid (AtoB)" in page  # best.json
    for direction, scores in RESULTS["directions"].items():
        for metric, value in scores.items():
            cell = f'data-direction="{direction}" data-metric="{metric}"'
            assert re.search(cell + r"[^>]*>" + re.escape(format_number(value)) + "<", page), (direction, metric)
    assert format_number(0.2134567) == "0.2135" and format_number(120.3456) == "120.3"
    assert page.count("<tr class=best>") == 2  # epoch 2 in both direction tables
    assert page.count('class="sample"') == 5 and "samples-subset" not in page
    assert page.count('src="data:image/png;base64,') == 5 + 1 + 2  # grids, the slider's, two plots
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page) and "<link" not in page
    assert "data/h2z" in page and "no evaluations yet" not in page


def test_report_without_optional_files(tmp_path: Path):
    run = make_run(tmp_path, samples=0, optional=False)
    page = write_report(run).read_text(encoding="utf-8")
    for note in ("no evaluations yet", "no final scores yet", "no sample grids yet", "no best epoch", "no timing.json"):
        assert note in page
    assert 'id="loss-plot"' in page


def test_long_runs_embed_a_subset_of_grids(tmp_path: Path):
    run = make_run(tmp_path, samples=0, optional=False)
    (run / "samples").mkdir()
    for i in range(45):
        Image.new("RGB", (4, 4), (i * 5, 0, 0)).save(run / "samples" / f"step_{i + 1:07d}.png")
    page = write_report(run).read_text(encoding="utf-8")
    steps = [int(s) for s in re.findall(r'class="sample"[^>]*data-step="(\d+)"', page)]
    assert len(steps) == 40 and steps[0] == 1 and steps[-1] == 45 and steps == sorted(steps)
    assert "45 sample grids; 40 evenly spaced" in page


@pytest.mark.parametrize("case", ["missing", "file", "no-metrics", "no-config"])
def test_not_a_run_folder(tmp_path: Path, case: str):
    run = make_run(tmp_path, samples=0, optional=False)
    if case == "missing":
        run = tmp_path / "nope"
    elif case == "file":
        run = run / "config.yaml"
    elif case == "no-metrics":
        (run / "metrics.jsonl").unlink()
    else:
        (run / "config.yaml").unlink()
    with pytest.raises(CyclekitError) as err:
        write_report(run)
    message = str(err.value)
    assert "\n" not in message and str(run) in message
    if case.startswith("no-"):
        assert ("metrics.jsonl" if case == "no-metrics" else "config.yaml") in message


def test_a_damaged_optional_file_is_named_on_the_page(tmp_path: Path):
    """A run's report is never stopped by a damaged score file: the section names the file and why."""
    run = make_run(tmp_path, samples=0)
    (run / "results.json").write_text("{oops", encoding="utf-8")
    (run / "best.json").write_text('["a list"]', encoding="utf-8")
    page = write_report(run).read_text(encoding="utf-8")
    assert f"{run / 'results.json'} is not valid JSON (Expecting property name" in page
    assert f"{run / 'best.json'}: expected a JSON object, found a list" in page


# --- a real browser -----------------------------------------------------------------------------


def test_report_in_chromium(tmp_path: Path):
    chromium = chromium_or_skip()
    run = make_run(tmp_path)
    report = write_report(run)
    with browser_page(tmp_path / "profile", chromium, 1100) as (page, requests, errors):
        page.goto(report.as_uri())
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=10_000)
        widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        assert len(widths) == 8 and all(w > 0 for w in widths), widths

        cells = page.eval_on_selector_all(
            "td[data-direction][data-metric]",
            "els => els.map(e => [e.dataset.direction, e.dataset.metric, e.textContent.trim()])",
        )
        expected = {(d, m): v for d, scores in RESULTS["directions"].items() for m, v in scores.items()}
        assert {(d, m) for d, m, _ in cells} == set(expected) and len(cells) == len(expected)
        for direction, metric, text in cells:
            value = expected[direction, metric]
            assert text == format_number(value), (direction, metric, text)
            if value is not None:
                assert float(text) == pytest.approx(value, rel=5e-4), (direction, metric, text)

        slider = page.locator("#sample-slider")
        assert slider.is_visible()  # the inline script ran and showed the controls
        current = page.locator("#sample-current")
        last_src, last_step = current.get_attribute("src"), current.get_attribute("data-step")
        assert last_step == "100"
        slider.focus()
        page.keyboard.press("Home")
        assert current.get_attribute("data-step") == "20"
        assert current.get_attribute("src") != last_src
        assert page.locator("#sample-label").inner_text().startswith("step 20 ")
        page.keyboard.press("ArrowRight")
        assert current.get_attribute("data-step") == "40"
        page.wait_for_function("document.getElementById('sample-current').complete")
        assert page.evaluate("document.getElementById('sample-current').naturalWidth") == 96

        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    shutil.copyfile(tmp_path / "report.png", "/tmp/report_screenshot.png")


def test_label_scores_get_a_per_class_table_with_the_palette(tmp_path: Path):
    run = make_run(tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    results["directions"]["AtoB"].update(
        pixel_acc=0.5, per_class={"accuracy": [0.9, None], "iou": [0.8, None], "pixels": [100, 0]}
    )
    results["palettes"] = {"AtoB": [[255, 0, 0], [0, 0, 254]]}
    (run / "results.json").write_text(json.dumps(results))
    html = write_report(run).read_text()
    assert "{&#x27;accuracy" not in html and "per_class" not in html  # no dict dumped into the score table
    assert 'class="swatch" style="background:#ff0000"' in html and "#0000fe" in html
    assert 'data-metric="pixel_acc"' in html
