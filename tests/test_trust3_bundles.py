"""Issue 23, bundles: who may replace a bundle, what a bundle's own files may decide (the names of
output folders), stale ONNX exports, and the weights-only loader's errors. Each failure is one
`error:` line and a non-zero exit, and leaves every file it did not write as it was."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import onnx
import pytest
import torch

from cyclekit.inference.bundle import load_network, read_bundle, write_bundle
from tests import reference_nets as ref
from tests.bundles import make_bundle, photo
from tests.helpers import cli, one_error

DEMO = [
    "data.demo_train=4",
    "data.demo_test=2",
    "data.demo_size=32",
    "data.load_size=32",
    "data.crop_size=32",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=4",
    "train.progress=false",
    "train.decay_epochs=0",
    "data.batch_size=1",
    "train.epochs=1",
]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _train(out: Path) -> Path:
    args = ["train", "demo", "--out", str(out), "--quiet"]
    for item in DEMO:
        args += ["--set", item]
    code, _, err = cli(*args)
    assert code == 0, err
    return out / "demo"


def _resnet_pth(path: Path, blocks: int = 2, seed: int = 0) -> Path:
    net = ref.randomise(
        ref.ResnetGenerator(3, 3, ngf=8, norm_layer=ref.get_norm_layer("instance"), n_blocks=blocks), seed
    ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def _unet_pth(path: Path) -> Path:
    net = ref.randomise(ref.UnetGenerator(3, 3, 6, ngf=8, norm_layer=ref.get_norm_layer("batch"))).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def _serve_catalogue(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    from cyclekit.interop import pretrained

    for key, model in list(pretrained.PRETRAINED.items()):
        monkeypatch.setitem(
            pretrained.PRETRAINED, key, dataclasses.replace(model, url=f"{url}/{model.family}-{model.name}.pth")
        )


# ---------------------------------------------------------------------------------------------
# 1. a refused download leaves the output folder as it was


def test_a_refused_pretrained_download_leaves_the_bundle_already_in_the_output_folder(tmp_path: Path, monkeypatch):
    from tests.test_data_download import _Server

    served = tmp_path / "served"
    _resnet_pth(served / "cyclegan-horse2zebra.pth", blocks=9)
    _resnet_pth(served / "pix2pix-facades_label2photo.pth", blocks=9)  # a ResNet where a U-Net belongs
    target = tmp_path / "models" / "current"
    with _Server(served) as server:
        _serve_catalogue(monkeypatch, server.url)
        code, _, err = cli("pretrained", "download", "horse2zebra", "-o", str(target))
        assert code == 0, err
        before = _tree(target.parent)
        code, _, err = cli("pretrained", "download", "pix2pix/facades_label2photo", "-o", str(target))
    assert code == 1 and "held a resnet generator, not the pix2pix model's unet" in one_error(err)
    assert _tree(target.parent) == before  # the horse2zebra bundle, byte for byte, and nothing else
    assert read_bundle(target).domains == {"A": "horse", "B": "zebra"}


# ---------------------------------------------------------------------------------------------
# 2 and 3. `bundle -o` and `import -o` replace only what they wrote


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("trained"))


def test_bundle_dash_o_never_replaces_a_users_file(run: Path, tmp_path: Path):
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    code, _, err = cli("bundle", str(run), "-o", str(mine))
    assert code == 1 and "not a folder" in one_error(err)
    assert mine.read_text() == "my notes" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_import_and_bundle_replace_another_runs_bundle_only_with_overwrite(run: Path, tmp_path: Path):
    pth = _resnet_pth(tmp_path / "horse2zebra.pth")
    own = run / "bundle"
    before = _tree(own)
    # import onto a run's trained bundle: refused, the bundle untouched
    code, _, err = cli("import", str(pth), "-o", str(own))
    assert code == 1 and "--overwrite" in one_error(err) and _tree(own) == before
    # another run's bundle (or any bundle `bundle` did not write) as `bundle -o`: refused
    other = make_bundle(tmp_path / "other" / "bundle", run="other")
    other_before = _tree(other)
    code, _, err = cli("bundle", str(run), "-o", str(other))
    assert code == 1 and "--overwrite" in one_error(err) and _tree(other) == other_before
    # an imported bundle is not `bundle`'s either
    code, _, err = cli("import", str(pth), "-o", str(tmp_path / "imported"))
    assert code == 0, err
    imported_before = _tree(tmp_path / "imported")
    code, _, err = cli("bundle", str(run), "-o", str(tmp_path / "imported"))
    assert code == 1 and "--overwrite" in one_error(err) and _tree(tmp_path / "imported") == imported_before
    # what each command wrote itself it replaces without a flag
    code, _, err = cli("import", str(pth), "-o", str(tmp_path / "imported"), "--train-size", "128")
    assert code == 0, err
    assert read_bundle(tmp_path / "imported").train_size == 128
    code, out, err = cli("bundle", str(run))
    assert code == 0 and f"wrote {own}" in out, err
    code, _, err = cli("bundle", str(run), "-o", str(own))
    assert code == 0, err
    # and with --overwrite, the other run's bundle too
    code, _, err = cli("bundle", str(run), "-o", str(other), "--overwrite")
    assert code == 0, err
    assert read_bundle(other).run == "demo"
    code, _, err = cli("import", str(pth), "-o", str(own), "--overwrite")
    assert code == 0, err
    assert read_bundle(own).recipe == "cyclegan" and read_bundle(own).step == 0


def test_pretrained_download_does_not_replace_a_trained_bundle(tmp_path: Path, monkeypatch):
    from tests.test_data_download import _Server

    served = tmp_path / "served"
    _resnet_pth(served / "cyclegan-horse2zebra.pth", blocks=9)
    own = make_bundle(tmp_path / "run" / "bundle", run="run")  # a trained bundle (step 1)
    before = _tree(own)
    with _Server(served) as server:
        _serve_catalogue(monkeypatch, server.url)
        code, _, err = cli("pretrained", "download", "horse2zebra", "-o", str(own))
    assert code == 1 and "--overwrite" in one_error(err) and _tree(own) == before


# ---------------------------------------------------------------------------------------------
# 4 and 5. names read from a bundle never leave results/; imported bundles have short names


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/cyclekit-escaped-abs", "..", "sub/dir"])
def test_a_bundles_run_name_cannot_send_translate_outside_results(tmp_path: Path, monkeypatch, name: str):
    if name.startswith("/"):
        name = str(tmp_path / "abs" / "escaped")
    work = tmp_path / "a" / "b" / "c" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    folder = make_bundle(tmp_path / "model", run=name)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["domains"] = {"A": "../horse", "B": "../../zebra"}
    (folder / "config.json").write_text(json.dumps(cfg))
    photo(32, 40).save(work / "in.png")
    code, out, err = cli("translate", "in.png", "--model", str(folder))
    assert code == 0, err
    written = [p for p in tmp_path.rglob("*.png") if p != work / "in.png"]
    assert len(written) == 1, written
    made = written[0]
    assert made.parent.parent == work / "results" and not made.parent.name.startswith("."), made


def test_imported_bundles_are_named_after_their_folder_in_outputs_titles_and_onnx(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "checkpoints" / "iphone2dslr_flower"
    _resnet_pth(ckpt / "latest_net_G_A.pth")
    _resnet_pth(ckpt / "latest_net_G_B.pth", seed=3)
    code, _, err = cli("import", str(ckpt / "latest_net_G_A.pth"), str(ckpt / "latest_net_G_B.pth"))
    assert code == 0, err
    folder = tmp_path / "imported" / "iphone2dslr_flower"
    assert read_bundle(folder).run == "iphone2dslr_flower"
    code, _, err = cli("import", str(ckpt / "latest_net_G_A.pth"), "-o", "models/flowers", "--domains", "iphone,dslr")
    assert code == 0, err
    assert read_bundle(tmp_path / "models" / "flowers").run == "flowers"
    photo(32, 40).save(tmp_path / "in.png")
    code, _, err = cli("translate", "in.png", "--model", "models/flowers")
    assert code == 0, err
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["flowers_to_dslr"]
    code, _, err = cli("export", "models/flowers", "--web", "page", "--cdn")
    assert code == 0, err
    assert "<title>flowers: iphone \u2192 dslr</title>" in (tmp_path / "page" / "index.html").read_text()
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "page" / "G_AtoB.onnx")).metadata_props}
    assert props["run"] == "flowers"
    # an import written before this change ("imported from ..." as its run) is named after its folder too
    cfg = json.loads((folder / "config.json").read_text())
    cfg["run"] = "imported from latest_net_G_A.pth, latest_net_G_B.pth"
    cfg.pop("imported_from", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli("translate", "in.png", "--model", str(folder), "--to", "A")
    assert code == 0, err
    assert (tmp_path / "results" / "iphone2dslr_flower_to_iphone").is_dir()


# ---------------------------------------------------------------------------------------------
# 6. the training size of an import


def test_an_import_takes_the_references_training_size_and_an_older_one_is_told_to_reimport(tmp_path: Path):
    pth = _resnet_pth(tmp_path / "horse2zebra.pth")
    code, out, err = cli("import", str(pth), "-o", str(tmp_path / "b"))
    assert code == 0, err
    assert "assumed: training size 256 px" in out and "--train-size" in out
    assert read_bundle(tmp_path / "b").train_size == 256
    photo(300, 320).save(tmp_path / "big.png")
    code, _, err = cli("translate", str(tmp_path / "big.png"), "--model", str(tmp_path / "b"), "--train-scale",
                       "-o", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, err
    # an import made before (no training size recorded): the fix named is re-importing with --train-size
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    cfg["train_size"] = None
    cfg["run"] = "imported from horse2zebra.pth"
    cfg.pop("imported_from", None)
    (tmp_path / "b" / "config.json").write_text(json.dumps(cfg))
    code, _, err = cli("translate", str(tmp_path / "big.png"), "--model", str(tmp_path / "b"), "--train-scale",
                       "-o", str(tmp_path / "out2"))  # fmt: skip
    assert code == 1 and "re-import it with --train-size N" in one_error(err)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        photo(64, 64, seed=i).save(calib / f"{i}.png")
    code, _, err = cli("export", str(tmp_path / "b"), "--int8", "--calibrate", str(calib))
    assert code == 1 and "re-import it with --train-size N" in one_error(err)
    assert "retrain" not in err


# ---------------------------------------------------------------------------------------------
# 7. ONNX files older than their bundle are named


def _newer_step(folder: Path, step: int) -> None:
    """The bundle in ``folder`` rewritten as a later step (as a resumed training does), exports kept."""
    bundle = read_bundle(folder)
    modules = {k: load_network(folder, bundle, k) for k in bundle.networks}
    write_bundle(folder, dataclasses.replace(bundle, step=step), modules)


def test_onnx_files_older_than_their_bundle_are_named_by_translate_and_export(tmp_path: Path):
    folder = make_bundle(tmp_path / "run" / "bundle")
    code, _, err = cli("export", str(folder), "--direction", "AtoB")
    assert code == 0 and "warning" not in err, err
    (folder / "G_AtoB.int8.onnx").write_bytes((folder / "G_AtoB.onnx").read_bytes())  # as an int8 export would
    photo(32, 40).save(tmp_path / "in.png")
    code, _, err = cli("translate", str(tmp_path / "in.png"), "--model", str(folder / "G_AtoB.onnx"),
                       "-o", str(tmp_path / "fresh"))  # fmt: skip
    assert code == 0 and "warning" not in err, err
    _newer_step(folder, 7)
    assert (folder / "G_AtoB.onnx").is_file()
    code, _, err = cli("translate", str(tmp_path / "in.png"), "--model", str(folder / "G_AtoB.int8.onnx"),
                       "-o", str(tmp_path / "stale"))  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "G_AtoB.int8.onnx" in lines[0] and "step 1" in lines[0] and "step 7" in lines[0]
    # exporting one direction names the files left from the older step
    code, _, err = cli("export", str(folder), "--direction", "BtoA")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 2 and all("step 1" in w and "step 7" in w for w in warned), err
    assert any("G_AtoB.onnx" in w for w in warned) and any("G_AtoB.int8.onnx" in w for w in warned)
    assert not any("G_BtoA" in w for w in warned)


# ---------------------------------------------------------------------------------------------
# 8. anything the weights-only loader raises is one line naming the file


@pytest.mark.parametrize(
    "content",
    [b"hello\n", b"h", b"\x80\x02}q\x00", b"\x80\x04\x95", b"PK\x03\x04garbage", b"", b"(lp0\nI1\na.", b"\x00" * 64],
)
def test_any_file_the_weights_loader_cannot_read_is_one_error_naming_it(tmp_path: Path, content: bytes):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    code, _, err = cli("import", str(bad), "-o", str(tmp_path / "b"))
    assert code == 1 and str(bad) in one_error(err)
    assert not (tmp_path / "b").exists()


# ---------------------------------------------------------------------------------------------
# 9. the int8 PSNR says at what size it was measured


def test_the_int8_psnr_line_says_it_is_measured_at_the_training_size(tmp_path: Path):
    folder = make_bundle(tmp_path / "bundle")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        photo(80, 96, seed=i).save(calib / f"{i}.png")
    code, out, err = cli("export", str(folder), "--direction", "AtoB", "--int8", "--calibrate", str(calib),
                         "-o", str(tmp_path / "onnx"))  # fmt: skip
    assert code == 0, err
    line = next(line for line in out.splitlines() if "PSNR vs fp32" in line)
    assert "at the training size (64x64)" in line
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in ("translate-export.md", "benchmarks.md"):
        assert "at the training size" in (docs / page).read_text(), page
