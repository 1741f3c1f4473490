"""Issue 25: each sampling score record names the yardstick that scored it, `cyclekit compare` ranks
runs only when one yardstick scored them all (and says so when not), and writes the comparison page
of runs that sample: per-class sample grids, scores, training time and steps, side by side, in a
real browser; it never replaces a compare.html it did not write."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cyclekit.evaluation.compare import NOT_RANKED, rank
from cyclekit.evaluation.compare_page import MARK
from tests.helpers import browser_page, chromium_or_skip, cli, one_error

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

CGAN = """\
name: cgan
recipe: cgan
data:
  kind: mnist
  batch_size: 8
  workers: 0
  channels: 1
  mnist: {size: 16}
cgan: {latent_dim: 8}
model:
  generator: {name: cond_g, ngf: 8}
  discriminator: {name: cond_d, head: concat, ndf: 8}
train: {epochs: 1, decay_epochs: 0, progress: false}
"""
WGAN = """\
name: wgan
recipe: wgan
data:
  kind: mnist
  batch_size: 8
  workers: 0
  channels: 1
  mnist: {size: 16}
wgan: {latent_dim: 8, n_critic: 5, constraint: clip, clip: 0.01}
model:
  generator: {name: dcgan_g, ngf: 8}
  discriminator: {name: dcgan_d, ndf: 8}
train: {epochs: 1, decay_epochs: 0, progress: false, log_every: 5, eval_every: 1}
"""


def write_idx(path: Path, arr: np.ndarray) -> None:
    magic = (0x08 << 8) | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory):
    """The yardsticks go to a cache of the tests' own, not the user's."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLEKIT_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> dict[str, Path]:
    """A class-conditional (cgan) and an unconditional (wgan) run of 5 steps on the same MNIST-format
    idx files (16 px noise, labels i % 10, classes.txt): one yardstick scores both (seconds)."""
    base = tmp_path_factory.mktemp("compare")
    root = base / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 16, 16)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    out = {}
    for name, text in (("cgan", CGAN), ("wgan", WGAN)):
        config = base / f"{name}.yaml"
        config.write_text(text, encoding="utf-8")
        code, _, err = cli("train", str(config), "--data-root", str(root), "--out", str(base / "runs"), "--quiet")
        assert code == 0, err
        out[name] = base / "runs" / name
    return out


def copy_runs(runs: dict[str, Path], dest: Path) -> dict[str, Path]:
    return {name: Path(shutil.copytree(run, dest / name)) for name, run in runs.items()}


def edit_record(run: Path, change) -> None:
    record = json.loads((run / "results.json").read_text())
    change(record["sampling"])
    (run / "results.json").write_text(json.dumps(record))


# ---------------------------------------------------------------------------------------------
# 1. the yardstick in the score record


def test_every_sampling_record_names_its_yardstick(runs: dict[str, Path], cache: Path):
    sticks = []
    for run in runs.values():
        sampling = json.loads((run / "results.json").read_text())["sampling"]
        stick = sampling["yardstick"]
        assert re.fullmatch(r"mnist-[0-9a-f]{16}", stick["id"]), stick
        assert re.fullmatch(r"[0-9a-f]{16}", stick["data_hash"]), stick
        assert stick["classifier_test_accuracy"] == sampling["classifier_test_accuracy"]  # the flat key stays
        assert stick["classifier"].startswith("SmallClassifier steps>=250 min_epochs ")
        assert (stick["train_images"], stick["test_images"]) == (40, 20)
        assert (cache / "yardsticks" / f"{stick['id']}.pt").is_file()  # the id names the cached classifier
        sticks.append(stick)
    assert sticks[0] == sticks[1]  # the same data: the same yardstick
    # evaluations during training (evals.jsonl) use the same record
    rows = [json.loads(line) for line in (runs["wgan"] / "evals.jsonl").read_text().splitlines()]
    assert rows and rows[-1]["sampling"]["yardstick"] == sticks[0]


# ---------------------------------------------------------------------------------------------
# 2. ranking, and the refusal to rank across yardsticks


def test_rank_orders_by_conditional_accuracy_else_frechet_and_ties_share_a_rank():
    rows = [
        {"run": "a", "yardstick": "y", "conditional_accuracy": 0.5, "frechet_classifier": 1.0},
        {"run": "b", "yardstick": "y", "conditional_accuracy": 0.9, "frechet_classifier": 9.0},
        {"run": "c", "yardstick": "y", "conditional_accuracy": 0.5, "frechet_classifier": 2.0},
        {"run": "translation", "AtoB.l1": 0.2},
    ]
    info = rank(rows)
    assert info["ranked"] and info["metric"] == "conditional_accuracy" and info["better"] == "higher"
    assert [r.get("rank") for r in rows] == [2, 1, 2, None]
    del rows[1]["conditional_accuracy"]  # an unconditional run among them: the Frechet distance ranks
    info = rank(rows)
    assert info["metric"] == "frechet_classifier" and [r.get("rank") for r in rows[:3]] == [1, 3, 2]
    rows[2]["yardstick"] = "z"
    info = rank(rows)
    assert not info["ranked"] and [r["rank"] for r in rows[:3]] == [NOT_RANKED] * 3
    assert info["note"] == "the runs were scored by different yardsticks (y, z) and are not ranked"
    single = [{"run": "a", "yardstick": "y", "frechet_classifier": 1.0}]
    assert not rank(single)["ranked"] and "rank" not in single[0] and rank(single)["note"] is None


def test_compare_ranks_runs_of_one_yardstick_in_text_csv_and_json(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    stick = json.loads((runs["cgan"] / "results.json").read_text())["sampling"]["yardstick"]["id"]
    code, out, err = cli("compare", str(runs["cgan"]), str(runs["wgan"]), "-o", "t.csv", "--no-html")
    assert code == 0, err
    head = out.splitlines()[0].split()
    assert "rank" in head and "yardstick" in head
    assert f"note: ranked by frechet_classifier (lower is better); every run was scored by yardstick {stick}" in out
    assert not (tmp_path / "compare.html").exists()  # --no-html
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert sorted(r["rank"] for r in rows) == ["1", "2"] and {r["yardstick"] for r in rows} == {stick}
    code, out, err = cli("compare", str(runs["cgan"]), str(runs["wgan"]), "-o", "t.json", "--no-html")
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["ranking"]["ranked"] and table["ranking"]["metric"] == "frechet_classifier"
    assert sorted(r["rank"] for r in table["rows"]) == [1, 2]


def test_runs_of_different_or_unknown_yardsticks_are_shown_and_not_ranked(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    mine = copy_runs(runs, tmp_path / "runs")
    edit_record(mine["wgan"], lambda s: s["yardstick"].update(id="mnist-0000000000000000"))
    code, out, err = cli("compare", str(mine["cgan"]), str(mine["wgan"]), "-o", "t.csv")
    assert code == 0, err
    lines = out.splitlines()
    assert "rank" not in lines[0].split() and "mnist-0000000000000000" in out
    assert len([line for line in lines if line.startswith(str(tmp_path / "runs"))]) == 2  # both shown
    note = next(line for line in lines if "different yardsticks" in line)
    assert note.startswith("note: the runs were scored by different yardsticks (") and "are not ranked" in note
    assert "mnist-0000000000000000" in note
    rows = list(csv.DictReader(io.StringIO((tmp_path / "t.csv").read_text())))
    assert [r["rank"] for r in rows] == [NOT_RANKED, NOT_RANKED]
    page = (tmp_path / "compare.html").read_text()
    assert "different yardsticks: not ranked" in page and 'data-ranked="false"' in page
    # the wgan's yardstick is not in the cache: its samples are shown unlabelled, and the page says why
    assert "the yardstick mnist-0000000000000000 is not in the cache" in page

    # a results.json older than the yardstick record: an unknown yardstick, never ranked
    edit_record(mine["wgan"], lambda s: s.pop("yardstick"))
    code, out, err = cli("compare", str(mine["cgan"]), str(mine["wgan"]), "-o", "t.json")
    assert code == 0, err
    assert "unknown yardstick" in out and "are not ranked" in out
    table = json.loads((tmp_path / "t.json").read_text())
    assert not table["ranking"]["ranked"] and "unknown yardstick" in table["ranking"]["yardsticks"]
    page = (tmp_path / "compare.html").read_text()
    assert "unknown yardstick" in page and "does not name the yardstick that scored it" in page


# ---------------------------------------------------------------------------------------------
# 3. the page


def test_the_page_never_replaces_a_file_cyclekit_did_not_write(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compare.html").write_text("<html>my own notes</html>")
    code, out, err = cli("compare", str(runs["cgan"]), str(runs["wgan"]))
    assert code == 1 and "compare.html already exists and was not written by `cyclekit compare`" in one_error(err)
    assert out == "" and (tmp_path / "compare.html").read_text() == "<html>my own notes</html>"
    code, _, err = cli("compare", str(runs["cgan"]), "--html", "page.txt")
    assert code == 1 and "must end in .html" in one_error(err)
    # its own page is replaced, atomically
    code, out, err = cli("compare", str(runs["cgan"]), "--html", str(tmp_path / "sub" / "p.html"))
    assert code == 0 and f"wrote {tmp_path / 'sub' / 'p.html'}" in out, err
    first = (tmp_path / "sub" / "p.html").read_text()
    assert MARK in first
    code, out, err = cli("compare", str(runs["wgan"]), "--html", str(tmp_path / "sub" / "p.html"))
    assert code == 0, err
    assert (tmp_path / "sub" / "p.html").read_text() != first
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["p.html"]  # no temporary file left


def test_a_translation_run_among_them_is_listed_not_drawn(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "translation"
    other.mkdir()
    (other / "config.yaml").write_text("recipe: cyclegan\nname: translation\n")
    (other / "results.json").write_text(json.dumps({"step": 4, "directions": {"AtoB": {"l1": 0.25}}}))
    code, out, err = cli("compare", str(other), "--html", "x.html")
    assert code == 1 and "none of the runs samples" in one_error(err)
    code, out, err = cli("compare", str(other))
    assert code == 0 and "wrote" not in out and not (tmp_path / "compare.html").exists(), err
    code, out, err = cli("compare", str(runs["cgan"]), str(other))
    assert code == 0 and out.strip().endswith("wrote compare.html"), err
    page = (tmp_path / "compare.html").read_text()
    assert 'id="other-runs"' in page and str(other) in page and page.count('class="run-card"') == 1


def test_the_page_in_chromium(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    chromium = chromium_or_skip()
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("compare", str(runs["cgan"]), str(runs["wgan"]))
    assert code == 0 and out.strip().endswith("wrote compare.html"), err
    wgan = json.loads((runs["wgan"] / "results.json").read_text())["sampling"]
    mine = copy_runs(runs, tmp_path / "runs")
    edit_record(mine["cgan"], lambda s: s["yardstick"].update(id="mnist-ffffffffffffffff"))
    code, out, err = cli("compare", str(mine["cgan"]), str(mine["wgan"]), "--html", "other.html")
    assert code == 0, err

    with browser_page(tmp_path / "profile", chromium, 1200) as (page, requests, errors):
        page.goto((tmp_path / "compare.html").as_uri())
        page.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=10_000)
        sizes = page.evaluate("Array.from(document.images).map(i => [i.naturalWidth, i.naturalHeight])")
        assert sizes and all(w > 0 and h > 0 for w, h in sizes), sizes

        cards = page.locator(".run-card")
        assert cards.count() == 2
        # ranked: the two run cards side by side (one row), in rank order, each saying its rank
        boxes = [cards.nth(i).bounding_box() for i in range(2)]
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[0]["x"] < boxes[1]["x"]
        assert page.get_attribute("#ranking", "data-ranked") == "true"
        ranks = [cards.nth(i).locator('dd[data-fact="rank"]').inner_text() for i in range(2)]
        assert ranks[0].startswith("rank 1 of 2") and ranks[1].startswith("rank 2 of 2")
        summary = page.eval_on_selector_all("#summary td[data-metric=rank]", "els => els.map(e => e.textContent)")
        assert summary == ["1", "2"]

        cgan = page.locator(f'.run-card[data-run="{runs["cgan"]}"]')
        rows = cgan.locator("table.class-grid tr")
        assert rows.count() == 10  # one row per class, named as classes.txt names them
        assert [rows.nth(i).get_attribute("data-class") for i in range(10)] == NAMES
        assert all(rows.nth(i).locator("img").count() == 1 for i in range(10))
        width = page.evaluate(f"document.querySelector('.run-card[data-run=\"{runs['cgan']}\"] tr img').naturalWidth")
        assert width == 10 * (16 + 2) + 2  # ten 16 px samples a row, 2 px apart
        facts = {
            k: cgan.locator(f'dd[data-fact="{k}"]').inner_text()
            for k in ("classes_covered", "yardstick", "steps", "time")
        }
        assert facts["classes_covered"].endswith(" of 10") and facts["steps"] == "5", facts
        assert facts["yardstick"] == wgan["yardstick"]["id"] and facts["time"].endswith(" s"), facts

        # the unconditional run: its 200 samples in rows by the class the yardstick sees, empty rows shown
        grid = page.locator(f'.run-card[data-run="{runs["wgan"]}"] table.class-grid')
        assert grid.get_attribute("data-kind") == "by-yardstick"
        counts = grid.locator("tr").evaluate_all("rs => rs.map(r => Number(r.dataset.count))")
        assert sum(counts) == 200 and len(counts) == 10
        empty = grid.locator("td.empty").count()
        assert empty == sum(c == 0 for c in counts) and grid.locator("img").count() == 10 - empty
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)

        # two yardsticks: both shown, unranked, each card saying so
        page.goto((tmp_path / "other.html").as_uri())
        assert page.get_attribute("#ranking", "data-ranked") == "false"
        notice = page.inner_text("#ranking")
        assert "different yardsticks" in notice and "mnist-ffffffffffffffff" in notice
        assert page.locator(".run-card").count() == 2
        texts = page.locator('dd[data-fact="rank"]').all_inner_texts()
        assert texts == ["different yardsticks: not ranked"] * 2
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
