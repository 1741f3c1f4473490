"""Issue 23 (trust, evaluation): `cyclekit compare` shows GAN runs and runs it cannot score, the
end-of-run line lists only files that exist and says why there are no scores, `cyclekit eval`
never reports empty scores as a success, never writes into a bundle and honours `-o` for GAN runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bundles import make_bundle as make_cyclegan_bundle
from tests.conftest import write_images
from tests.helpers import TINY_CYCLEGAN, cli, one_error
from tests.test_eval import make_bundle, toy_models, write_negated_pairs  # noqa: F401 (fixture)

RING = ["train.epochs=1", "train.decay_epochs=0", "gan.latent_dim=2", "data.epoch_size=512"]
DCGAN = [
    "train.epochs=1",
    "train.decay_epochs=0",
    "data.load_size=32",
    "data.crop_size=32",
    "model.generator.ngf=4",
    "model.discriminator.ndf=4",
    "data.batch_size=2",
    "data.workers=0",
]


def _sets(settings: list[str]) -> list[str]:
    return [a for s in settings for a in ("--set", s)]


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache (no FID weights) and no network."""
    from cyclekit import fetch as download

    def offline(*args, **kwargs):
        raise download.DownloadError(args[0], Path(args[1]), "network unreachable")

    monkeypatch.setattr(download, "download_file", offline)
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def train_ring(out: Path) -> Path:
    code, stdout, err = cli("train", "gan-ring", "--out", str(out), "--quiet", *_sets(RING))
    assert code == 0, err
    return out / "gan-ring"


def train_dcgan(out: Path, folder: Path) -> tuple[Path, str]:
    write_images(folder, 4, size=36)
    code, stdout, err = cli(
        "train", "dcgan-small", "--data-root", str(folder), "--out", str(out), "--quiet", *_sets(DCGAN)
    )
    assert code == 0, err
    return out / "dcgan-small", stdout


def fake_sampling_run(run: Path, recipe: str, sampling: dict) -> Path:
    """A run folder as a finished GAN run leaves it: config.yaml and its score record."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"recipe: {recipe}\nname: {run.name}\n")
    record = {"step": 100, "epoch": 2, "bundle": str(run / "bundle"), "sampling": sampling}
    (run / "results.json").write_text(json.dumps(record))
    return run


# ---------------------------------------------------------------------------------------------
# 1. compare: GAN scores, and every run it can show


def test_compare_shows_the_sampling_scores_of_gan_runs(tmp_path: Path):
    cgan = fake_sampling_run(
        tmp_path / "cgan",
        "cgan",
        {"conditional_accuracy": 0.875, "classes_covered": 10, "of_classes": 10, "frechet_classifier": 3.25,
         "class_histogram": [1] * 10, "note": "x"},
    )  # fmt: skip
    began = fake_sampling_run(tmp_path / "began", "began", {"M_first": 0.31, "M_last": 0.0875, "M_logged": 40})
    stack = fake_sampling_run(tmp_path / "stack", "stackgan", {"caption_match": 0.625, "sharpness_ratio": 1.5})
    code, out, err = cli("compare", str(cgan), str(began), str(stack), "-o", str(tmp_path / "t.json"))
    assert code == 0, err
    head, first, second, third = out.splitlines()[:4]
    for column in ("conditional_accuracy", "classes_covered", "frechet_classifier", "M_last", "caption_match"):
        assert column in head.split()
    assert "0.875" in first.split() and "3.25" in first.split() and "10" in first.split()
    assert "0.0875" in second.split() and "0.625" in third.split()
    assert "of_classes" not in head and "note" not in head  # bookkeeping, not scores
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["rows"][0]["conditional_accuracy"] == 0.875


def test_compare_shows_every_run_it_can_and_marks_the_others_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)  # the comparison page of the GAN runs: compare.html here
    ring = train_ring(tmp_path / "runs")
    dcgan, _ = train_dcgan(tmp_path / "runs", tmp_path / "folder")
    assert not (dcgan / "results.json").exists()
    missing = tmp_path / "runs" / "nothing"
    code, out, err = cli("compare", str(ring), str(dcgan), str(missing))
    assert code == 0, err
    page = (tmp_path / "compare.html").read_text()  # both GAN runs drawn (points, unlabelled images)
    assert page.count('class="run-card"') == 2 and "the run has no yardstick scores" in page
    lines = out.splitlines()
    assert "modes_covered" in lines[0].split() and "high_quality" in lines[0].split()
    ring_line = next(line for line in lines if line.startswith(str(ring)))
    assert ring_line.endswith("results.json")
    dcgan_lines = [line for line in lines if line.startswith(str(dcgan))]
    assert len(dcgan_lines) == 1 and "nothing to score for this recipe" in dcgan_lines[0]
    assert "cyclekit eval" not in dcgan_lines[0]  # which would fail for it too
    missing_lines = [line for line in lines if line.startswith(str(missing))]
    assert len(missing_lines) == 1 and "run not found" in missing_lines[0]
    # Nothing at all to show: one error line, non-zero.
    code, out, err = cli("compare", str(dcgan), str(missing))
    assert code == 1 and "nothing to score for this recipe" in one_error(err) and "run not found" in err


# ---------------------------------------------------------------------------------------------
# 2. the end-of-run line


def test_the_end_of_run_line_lists_only_files_that_exist_and_says_why_there_are_no_scores(
    tmp_path: Path, offline_cache: Path
):
    dcgan, out = train_dcgan(tmp_path / "runs", tmp_path / "folder")
    assert not (dcgan / "results.json").exists()
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"results: {dcgan}") and "results.json" not in last
    # a folder of images has no labels: the yardstick that scores image samples cannot be trained
    assert "no scores" in out and "the folder data has no labels" in out
    # A CycleGAN on unpaired test images, offline without the FID weights.
    root = tmp_path / "unpaired"
    for side, seed in (("trainA", 1), ("trainB", 2), ("testA", 3), ("testB", 4)):
        write_images(root / side, 2, seed=seed, prefix=side)  # other names: the test images do not pair up
    args = ["train", "horse2zebra", "--data-root", str(root), "--out", str(tmp_path / "runs"), "--quiet"]
    code, out, err = cli(*args, *_sets([*TINY_CYCLEGAN, "train.epochs=1"]))
    assert code == 0, err
    run = tmp_path / "runs" / "horse2zebra"
    assert not (run / "results.json").exists()
    assert "results.json" not in out.strip().splitlines()[-1]
    assert "no scores" in out and "do not pair up" in out and "FID" in out


# ---------------------------------------------------------------------------------------------
# 3. eval with nothing to score


def test_eval_with_nothing_to_score_prints_the_counts_says_why_and_fails(toy_models, tmp_path: Path, offline_cache):  # noqa: F811
    data = write_negated_pairs(tmp_path / "data", 3, labels=False, names_match=False)
    bundle = make_bundle(tmp_path / "neg", "negate")
    out_file = tmp_path / "r.json"
    code, out, err = cli("eval", str(bundle), "--data", str(data), "--no-fid", "-o", str(out_file))
    assert code == 1
    assert "?" not in out and "AtoB: 3 images" in out and "BtoA: 3 images" in out
    line = one_error(err)
    assert "not scored" in line and "--no-fid" in line and "do not pair up" in line
    assert not out_file.exists()
    # Offline without the FID weights: the same, naming the weights.
    code, out, err = cli("eval", str(bundle), "--data", str(data), "-o", str(out_file))
    assert code == 1 and "AtoB: 3 images" in out
    line = one_error(err)
    assert "not scored" in line and "pt_inception-2015-12-05-6726825d.pth" in line
    assert not out_file.exists()


# ---------------------------------------------------------------------------------------------
# 4. eval of a bundle outside a run


def test_eval_of_a_bundle_outside_a_run_never_writes_into_the_bundle(tmp_path: Path):
    bundle = make_cyclegan_bundle(tmp_path / "imported")
    before = sorted(p.name for p in bundle.iterdir())
    data = write_negated_pairs(tmp_path / "data", 3, labels=False)
    code, out, err = cli("eval", str(bundle), "--data", str(data), "--no-fid", "--device", "cpu")
    assert code == 0, err
    assert "AtoB: 3 images" in out and "l1" in out
    assert sorted(p.name for p in bundle.iterdir()) == before
    assert "wrote" not in out
    # -o FILE: that file only.
    code, out, err = cli("eval", str(bundle), "--data", str(data), "--no-fid", "-o", str(tmp_path / "s.json"))
    assert code == 0, err
    assert "l1" in json.loads((tmp_path / "s.json").read_text())["directions"]["AtoB"]
    assert sorted(p.name for p in bundle.iterdir()) == before


# ---------------------------------------------------------------------------------------------
# 5. eval -o on a GAN run


def test_eval_o_on_a_gan_run_writes_only_that_file(tmp_path: Path):
    ring = train_ring(tmp_path / "runs")
    record = (ring / "results.json").read_bytes()
    page = (ring / "report.html").read_bytes()
    out_file = tmp_path / "ring-scores.json"
    code, out, err = cli("eval", str(ring), "-o", str(out_file))
    assert code == 0, err
    assert f"wrote {out_file}" in out and "report.html" not in out
    assert "modes_covered" in json.loads(out_file.read_text())["sampling"]
    assert (ring / "results.json").read_bytes() == record and (ring / "report.html").read_bytes() == page
    # A file cyclekit did not write is refused, unless --overwrite.
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}\n')
    code, out, err = cli("eval", str(ring), "-o", str(foreign))
    assert code == 1 and "--overwrite" in one_error(err) and foreign.read_text() == '{"mine": 1}\n'
    code, out, err = cli("eval", str(ring), "-o", str(foreign), "--overwrite")
    assert code == 0, err
    assert "sampling" in json.loads(foreign.read_text())
    # The run's own record is still rewritten by a plain `cyclekit eval RUN`.
    code, out, err = cli("eval", str(ring))
    assert code == 0 and f"wrote {ring / 'results.json'}" in out
