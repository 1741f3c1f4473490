"""Class names, from the command line (issue 23): a class-folder or MNIST-format run keeps the names its
data gives (folder names, an idx folder's classes.txt) in its bundle, `cyclekit sample --class NAME`,
the ONNX metadata and scripts/onnx_sample.py; old bundles without names still load; names read from
files never steer a written path, break a grid or reach HTML unescaped; `sample` never silently
replaces a file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, write_images
from tests.helpers import cli, one_error

SHOES = ["boot", "sandal", "sneaker"]  # the class folders, in the (sorted) order that numbers them
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TILE = 16 + 2  # a 16 px sample and the grid's 2 px padding
SCRIPT = REPO / "scripts" / "onnx_sample.py"

TINY_CGAN = """\
name: {name}
recipe: cgan
data:
  kind: {kind}
  batch_size: 8
  workers: 0
  channels: 1
  {kind}: {{size: 16}}
cgan: {{latent_dim: 8}}
model:
  generator: {{name: cond_g, ngf: 8{n_classes}}}
  discriminator: {{name: cond_d, head: concat, ndf: 8}}
train: {{epochs: 1, decay_epochs: 0, progress: false}}
"""


@pytest.fixture(autouse=True, scope="module")
def _own_cache(tmp_path_factory: pytest.TempPathFactory):
    """The yardstick of an MNIST-format run goes to a cache of the test's own, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CYCLEKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def train_tiny(root: Path, out: Path, kind: str, name: str, n_classes: int | None = None) -> tuple[int, str]:
    """A 1-epoch cgan of 8 filters on ``root`` (a seconds-long run); (exit code, stderr)."""
    config = out.parent / f"{name}.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    extra = f", n_classes: {n_classes}" if n_classes else ""
    config.write_text(TINY_CGAN.format(name=name, kind=kind, n_classes=extra))
    code, _, err = cli("train", str(config), "--data-root", str(root), "--out", str(out), "--quiet")
    return code, err


def write_idx(path: Path, arr: np.ndarray) -> None:
    magic = (0x08 << 8) | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def mnist_folder(root: Path, names: list[str] | None) -> Path:
    """MNIST-format idx files (16 px noise, labels i % 10), with a classes.txt of ``names``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(n, 16, 16)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    if names is not None:
        (root / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return root


# scripts/onnx_sample.py run with torch and cyclekit made unimportable: it must stay torch-free
TORCH_FREE = (
    "import runpy, sys; sys.modules['torch'] = sys.modules['cyclekit'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TORCH_FREE, str(SCRIPT), *args], capture_output=True, text=True)


def onnx_classes(model: Path) -> list[str]:
    import onnx

    return json.loads({p.key: p.value for p in onnx.load(str(model)).metadata_props}["classes"])


def label_margin(names: list[str]) -> int:
    """How much wider than its samples a grid is with ``names`` written left of its rows."""
    return 8 + 7 * max(len(n) for n in names)


@pytest.fixture(scope="module")
def shoes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cgan run on class folders named sneaker, boot, sandal."""
    base = tmp_path_factory.mktemp("shoes")
    for i, name in enumerate(["sneaker", "boot", "sandal"]):
        write_images(base / "data" / name, 8, size=16, seed=i)
    code, err = train_tiny(base / "data", base / "runs", "classes", "shoes", n_classes=3)
    assert code == 0, err
    return base / "runs" / "shoes"


# -- 1. a class-folder run remembers its class names --------------------------------------------


def test_a_class_folder_run_records_its_class_names_and_samples_by_name(shoes: Path, tmp_path: Path):
    bundle = json.loads((shoes / "bundle" / "config.json").read_text())
    assert bundle["samples"]["classes"] == SHOES  # index order: class k is SHOES[k], as in training

    code, out, err = cli("sample", str(shoes), "--class", "sneaker", "-n", "4", "-o", str(tmp_path / "s.png"))
    assert code == 0 and "wrote 4 samples" in out, err
    # by name or by its index: the same class, the same samples
    code, _, err = cli("sample", str(shoes), "--class", "2", "-n", "4", "-o", str(tmp_path / "two.png"))
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")), np.asarray(Image.open(tmp_path / "two.png")))

    code, out, err = cli("sample", str(shoes), "--class", "all", "-n", "5", "-o", str(tmp_path / "all.png"))
    assert code == 0 and "wrote 15 samples" in out, err
    grid = Image.open(tmp_path / "all.png")
    # three rows, labelled with the names (the label margin fits "sneaker", not "0".."2")
    assert grid.size == (5 * TILE + 2 + label_margin(SHOES), 3 * TILE + 2)

    code, _, err = cli("sample", str(shoes), "--class", "shoe", "-o", str(tmp_path / "x.png"))
    line = one_error(err)
    assert code == 1 and "--class shoe: not a class of this generator" in line
    assert all(name in line for name in SHOES), line
    assert not (tmp_path / "x.png").exists()


def test_the_exported_sampler_and_the_torch_free_script_use_the_names(shoes: Path, tmp_path: Path):
    code, _, err = cli("export", str(shoes), "-o", str(tmp_path))
    assert code == 0, err
    model = tmp_path / "G.onnx"
    assert onnx_classes(model) == SHOES

    done = run_script(str(model), str(tmp_path / "sneakers.png"), "--class", "sneaker", "-n", "4")
    assert done.returncode == 0 and "wrote 4 samples of class sneaker" in done.stdout, done.stderr
    done = run_script(str(model), str(tmp_path / "by_index.png"), "--class", "2", "-n", "4")
    assert done.returncode == 0, done.stderr
    same = [np.asarray(Image.open(tmp_path / f)) for f in ("sneakers.png", "by_index.png")]
    assert np.array_equal(*same)

    done = run_script(str(model), str(tmp_path / "all.png"), "-n", "5")
    assert done.returncode == 0 and "wrote 15 samples" in done.stdout, done.stderr
    assert Image.open(tmp_path / "all.png").size == (5 * TILE + 2 + label_margin(SHOES), 3 * TILE + 2)

    done = run_script(str(model), str(tmp_path / "x.png"), "--class", "shoe")
    assert (
        done.returncode == 1 and done.stderr.strip() == "error: --class shoe: not one of boot, sandal, sneaker or all"
    )


def test_a_rebuilt_bundle_keeps_the_names(shoes: Path, tmp_path: Path):
    code, _, err = cli("bundle", str(shoes), "-o", str(tmp_path / "rebuilt"))
    assert code == 0, err
    assert json.loads((tmp_path / "rebuilt" / "config.json").read_text())["samples"]["classes"] == SHOES


def test_an_old_bundle_without_names_still_loads_with_index_names(shoes: Path, tmp_path: Path):
    old = tmp_path / "old"
    shutil.copytree(shoes / "bundle", old)
    config = json.loads((old / "config.json").read_text())
    del config["samples"]["classes"]  # a bundle that does not name the classes its generator takes
    (old / "config.json").write_text(json.dumps(config))

    code, out, err = cli("sample", str(old), "--class", "1", "-n", "4", "-o", str(tmp_path / "one.png"))
    assert code == 0 and "wrote 4 samples" in out, err
    code, out, err = cli("sample", str(old), "-n", "2", "-o", str(tmp_path / "all.png"))
    assert code == 0 and "wrote 6 samples" in out, err
    assert Image.open(tmp_path / "all.png").size == (2 * TILE + 2 + label_margin(["0"]), 3 * TILE + 2)
    code, _, err = cli("sample", str(old), "--class", "sneaker", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "classes: 0, 1, 2, or all" in one_error(err)
    code, _, err = cli("export", str(old), "-o", str(tmp_path / "onnx"))
    assert code == 0, err
    assert onnx_classes(tmp_path / "onnx" / "G.onnx") == ["0", "1", "2"]


# -- 2. classes.txt beside MNIST-format idx files -------------------------------------------------


def test_classes_txt_names_the_classes_of_an_mnist_folder(tmp_path: Path):
    root = mnist_folder(tmp_path / "fashion", FASHION)
    code, err = train_tiny(root, tmp_path / "runs", "mnist", "fashion")
    assert code == 0, err
    run = tmp_path / "runs" / "fashion"
    assert json.loads((run / "bundle" / "config.json").read_text())["samples"]["classes"] == FASHION
    code, out, err = cli("sample", str(run), "--class", "Ankle boot", "-n", "4", "-o", str(tmp_path / "boots.png"))
    assert code == 0 and "wrote 4 samples" in out, err
    code, out, err = cli("sample", str(run), "--class", "T-shirt/top", "-n", "4", "-o", str(tmp_path / "tops.png"))
    assert code == 0 and "wrote 4 samples" in out, err
    code, _, err = cli("sample", str(run), "--class", "Sock", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "T-shirt/top" in one_error(err) and "Ankle boot" in one_error(err)
    # without classes.txt the classes are the digits, as before
    (root / "classes.txt").unlink()
    code, err = train_tiny(root, tmp_path / "runs", "mnist", "digits")
    assert code == 0, err
    bundle = json.loads((tmp_path / "runs" / "digits" / "bundle" / "config.json").read_text())
    assert bundle["samples"]["classes"] == [str(k) for k in range(10)]


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        (FASHION[:9], "names 9 classes; MNIST-format labels are 0..9, so it needs 10 lines"),
        ([*FASHION, "Hat"], "names 11 classes"),
        ([*FASHION[:4], "", *FASHION[5:]], "line 5 is empty"),
        ([*FASHION[:4], "   ", *FASHION[5:]], "line 5 is empty"),
        ([*FASHION[:9], "Shirt"], "'Shirt' names both class 6 (line 7) and class 9 (line 10)"),
    ],
)
def test_a_bad_classes_txt_is_one_line_naming_the_file(tmp_path: Path, lines: list[str], says: str):
    root = mnist_folder(tmp_path / "fashion", lines)
    code, err = train_tiny(root, tmp_path / "runs", "mnist", "bad")
    line = one_error(err)
    assert code != 0 and str(root / "classes.txt") in line and says in line, line


# -- 3. names from files steer no path and inject no HTML -----------------------------------------


def test_names_from_files_steer_no_path_and_inject_no_html(tmp_path: Path):
    hostile = [
        "../../escaped",
        "<script>alert(1)</script>",
        "/tmp/absolute",
        "a & b \"quoted\" 'too'",
        "x" * 200,
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Bag",
    ]
    root = mnist_folder(tmp_path / "data" / "hostile", hostile)
    before = {p for p in tmp_path.rglob("*")}
    code, err = train_tiny(root, tmp_path / "work" / "runs", "mnist", "hostile")
    assert code == 0, err
    run = tmp_path / "work" / "runs" / "hostile"
    assert json.loads((run / "bundle" / "config.json").read_text())["samples"]["classes"] == hostile
    outputs = tmp_path / "work" / "out"
    outputs.mkdir()
    for i, name in enumerate(hostile[:5]):
        code, _, err = cli("sample", str(run), "--class", name, "-n", "1", "-o", str(outputs / f"{i}.png"))
        assert code == 0, err
    code, _, err = cli("sample", str(run), "--class", "all", "-n", "2", "-o", str(outputs / "all.png"))
    assert code == 0, err
    code, _, err = cli("export", str(run), "-o", str(outputs))
    assert code == 0, err
    done = run_script(str(outputs / "G.onnx"), str(outputs / "script.png"), "-n", "2")
    assert done.returncode == 0, done.stderr
    # everything written is in the run folder or is a file named on the command line
    written = {p for p in tmp_path.rglob("*")} - before
    expected = {run.parent, run.parent.parent, run.parent.parent / "hostile.yaml"}
    stray = [p for p in written if not (p.is_relative_to(run) or p.is_relative_to(outputs) or p in expected)]
    assert stray == [], stray
    assert sorted(p.name for p in outputs.iterdir()) == ["0.png", "1.png", "2.png", "3.png", "4.png", "G.onnx",
                                                         "all.png", "script.png"]  # fmt: skip
    assert not any("escaped" in p.name or "absolute" in p.name for p in run.rglob("*"))
    # a 200-character name does not stretch the grids: labels are cut to one short line
    grids = {outputs / "all.png": 2, outputs / "script.png": 2, **dict.fromkeys((run / "samples").glob("*.png"), 10)}
    assert len(grids) == 3, grids
    for grid, columns in grids.items():
        assert Image.open(grid).width == columns * TILE + 2 + 8 + 7 * 32, grid
    page = (run / "report.html").read_text()
    assert "<script>alert(1)</script>" not in page


def test_class_folder_names_with_control_characters_make_one_line_labels(tmp_path: Path):
    names = ["line\nbreak", "tab\there", "plain"]
    for i, name in enumerate(names):
        write_images(tmp_path / "data" / name, 8, size=16, seed=i)
    code, err = train_tiny(tmp_path / "data", tmp_path / "runs", "classes", "odd", n_classes=3)
    assert code == 0, err
    run = tmp_path / "runs" / "odd"
    assert json.loads((run / "bundle" / "config.json").read_text())["samples"]["classes"] == sorted(names)
    code, _, err = cli("sample", str(run), "--class", "line\nbreak", "-n", "1", "-o", str(tmp_path / "one.png"))
    assert code == 0, err
    code, _, err = cli("sample", str(run), "-n", "2", "-o", str(tmp_path / "all.png"))
    assert code == 0, err
    assert Image.open(tmp_path / "all.png").width == 2 * TILE + 2 + label_margin(["line?break"])


# -- 4. sample does not silently replace a file ---------------------------------------------------


def test_sample_refuses_an_existing_output_without_overwrite(
    shoes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    target = tmp_path / "mine.png"
    target.write_bytes(b"my own picture")
    code, _, err = cli("sample", str(shoes), "--class", "boot", "-n", "1", "-o", str(target))
    assert code == 1 and one_error(err) == (
        f"error: {target} already exists; pass --overwrite to replace it, or choose another -o file"
    )
    assert target.read_bytes() == b"my own picture"
    # the default output, samples.png in the current folder, too
    monkeypatch.chdir(tmp_path)
    Path("samples.png").write_bytes(b"older samples")
    code, _, err = cli("sample", str(shoes), "-n", "1")
    assert code == 1 and "samples.png already exists; pass --overwrite" in one_error(err)
    assert Path("samples.png").read_bytes() == b"older samples"
    # a link is not written through either
    os.symlink(tmp_path / "mine.png", tmp_path / "link.png")
    code, _, err = cli("sample", str(shoes), "-n", "1", "-o", str(tmp_path / "link.png"))
    assert code == 1 and "link.png already exists" in one_error(err)
    assert target.read_bytes() == b"my own picture"
    # bad arguments are still named first
    code, _, err = cli("sample", str(shoes), "--class", "shoe", "-o", str(target))
    assert code == 1 and "--class shoe: not a class" in one_error(err)
    # --overwrite replaces it
    code, out, err = cli("sample", str(shoes), "--class", "boot", "-n", "1", "-o", str(target), "--overwrite")
    assert code == 0 and "wrote 1 samples" in out, err
    assert Image.open(target).size == (TILE + 2, TILE + 2)
    code, out, err = cli("sample", str(shoes), "-n", "1", "--overwrite")
    assert code == 0 and Image.open("samples.png").size[1] == 3 * TILE + 2, err
