"""Pix2Pix end to end on tiny generated paired data: pairing rules, the AB layout, identical
augmentation of both images, learning a known mapping, outputs, translate and export (SIGKILL and resume:
tests/test_resume_table.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclekit.data.demo import render_scene, to_autumn
from cyclekit.data.paired import PairedImages, detect_layout, pair_files, pair_key
from cyclekit.data.transforms import build_transform
from cyclekit.errors import CyclekitError, DataError
from cyclekit.recipes import load_config
from cyclekit.run import train_run
from tests.helpers import cli, losses, train_args

# 36 -> random 32 crop + flip; U-Net with 5 downsamplings (32 px -> 1x1), 8 filters.
TINY = [
    "data.load_size=36",
    "data.crop_size=32",
    "data.workers=0",
    "model.generator.n_downs=5",
    "model.generator.ngf=8",
    "model.discriminator.ndf=8",
    "train.decay_epochs=0",
    "train.log_every=1",
    "train.progress=false",
]


def write_pairs(root: Path, n_train: int, n_test: int, size: int = 40, layout: str = "folders") -> Path:
    """Scenes A and their autumn versions B = to_autumn(A) (a known per-pixel function of A).

    ``folders``: trainA/<i>_A.png <-> trainB/<i>_B.png and testA/<i>.png <-> testB/<i>.png (the facades
    naming). ``side_by_side``: train/<i>.png and test/<i>.png holding A|B.
    """
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1000)):
        for i in range(n):
            a = render_scene(offset + i, size)
            b = to_autumn(a)
            if layout == "folders":
                sa, sb = ("_A", "_B") if split == "train" else ("", "")
                (root / f"{split}A").mkdir(parents=True, exist_ok=True)
                (root / f"{split}B").mkdir(parents=True, exist_ok=True)
                Image.fromarray(a).save(root / f"{split}A" / f"{i}{sa}.png")
                Image.fromarray(b).save(root / f"{split}B" / f"{i}{sb}.png")
            else:
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i}.png")
    return root


def args(root: Path, out: Path, *extra: str) -> list[str]:
    return train_args("facades", root, out, TINY, *extra)


# ---------------------------------------------------------------------------------------------
# data


def test_pairing_rule_by_file_name(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    assert pair_key(Path("100_A.jpg"), "_A") == "100" and pair_key(Path("1.jpg"), "_A") == "1"
    assert pair_key(Path("_A.png"), "_A") == "_A"  # nothing left: keep the stem
    write_pairs(tmp_path, 3, 2)
    pairs = pair_files(tmp_path / "trainA", tmp_path / "trainB")
    assert [(a.name, b.name) for a, b in pairs] == [
        ("0_A.png", "0_B.png"),
        ("1_A.png", "1_B.png"),
        ("2_A.png", "2_B.png"),
    ]
    assert [(a.name, b.name) for a, b in pair_files(tmp_path / "testA", tmp_path / "testB")] == [
        ("0.png", "0.png"),
        ("1.png", "1.png"),
    ]
    # A lonely file is named in a warning and left out; strict mode makes it fatal.
    Image.fromarray(render_scene(9, 40)).save(tmp_path / "trainA" / "7_A.jpg")
    with caplog.at_level(logging.WARNING):
        assert len(pair_files(tmp_path / "trainA", tmp_path / "trainB")) == 3
    assert "no partner for " + str(tmp_path / "trainA" / "7_A.jpg") in caplog.text
    with pytest.raises(DataError, match=r"7_A.jpg has no partner in .*trainB \(pairs match by file name"):
        pair_files(tmp_path / "trainA", tmp_path / "trainB", strict=True)
    # Two files with one key are ambiguous.
    Image.fromarray(render_scene(9, 40)).save(tmp_path / "trainA" / "0_A.jpg")
    with pytest.raises(DataError, match="0_A.jpg and 0_A.png .* have the same pairing key '0'"):
        pair_files(tmp_path / "trainA", tmp_path / "trainB")
    # Configurable suffixes.
    (tmp_path / "x" / "a").mkdir(parents=True)
    (tmp_path / "x" / "b").mkdir()
    Image.fromarray(render_scene(1, 8)).save(tmp_path / "x" / "a" / "k-photo.png")
    Image.fromarray(render_scene(1, 8)).save(tmp_path / "x" / "b" / "k-label.png")
    assert len(pair_files(tmp_path / "x" / "a", tmp_path / "x" / "b", ("-photo", "-label"))) == 1


def test_paired_loader_applies_identical_crops_and_flips(tmp_path: Path):
    """B is a per-pixel function of A (a channel swap), so after any shared resize, crop and flip
    B' must equal f(A') exactly; a different crop for B would break it at once."""
    write_pairs(tmp_path, 4, 0, size=48)
    transform = build_transform("resize_and_crop", 40, 24, True, 3)
    ds = PairedImages(tmp_path, "train", transform, seed=3)
    crops = set()
    for index, seed in ds.epoch_plan(0) * 5:
        item = ds[(index, seed + len(crops))]
        a = ((item["A"] + 1) * 127.5).round()
        b = ((item["B"] + 1) * 127.5).round()
        assert a.shape == b.shape == (3, 24, 24)
        assert torch.equal(b, a[[1, 0, 2]]), (index, seed)
        crops.add(a.sum().item())
    assert len(crops) > 10  # the crops and flips really vary


def test_side_by_side_layout_and_splits(tmp_path: Path):
    write_pairs(tmp_path, 3, 2, size=20, layout="side_by_side")
    assert detect_layout(tmp_path, "train") == "side_by_side"
    ds = PairedImages(tmp_path, "train")
    img_a, img_b = ds.load_pair(1)
    assert img_a.size == img_b.size == (20, 20)
    assert np.array_equal(np.asarray(img_a), render_scene(1, 20))
    assert np.array_equal(np.asarray(img_b), to_autumn(render_scene(1, 20)))
    assert len(PairedImages(tmp_path, "test")) == 2
    with pytest.raises(DataError, match=r"holds no paired data: expected val.* \+ valB/ .* or val/"):
        detect_layout(tmp_path, "val")
    with pytest.raises(DataError, match="has no trainA/ and trainB/ folders"):
        detect_layout(tmp_path, "train", "folders")


# ---------------------------------------------------------------------------------------------
# training


# Both layouts load the same pairs (test_side_by_side_layout_and_splits); learning is shown on one by default.
@pytest.mark.parametrize("layout", ["folders", pytest.param("side_by_side", marks=pytest.mark.slow)])
def test_pix2pix_learns_a_known_mapping(tmp_path: Path, layout: str):
    """B = to_autumn(A) (a channel swap). Fixed seed, 24 pairs, 20 epochs (480 steps, ~6 s),
    ngf 16, lr 1e-3, deterministic test-time settings. Measured test L1 0.0360 (folders) and
    0.0353 (side_by_side) against the identity's 0.150: 4.17x and 4.25x lower (PSNR 24.4 dB vs
    14.2). The threshold, 3x, leaves a 1.4x margin; 5 epochs at lr 2e-4 reached only 1.4x."""
    root = write_pairs(tmp_path / "data", 24, 6, layout=layout)
    cfg = load_config(
        "facades",
        [*TINY, "train.epochs=20", "model.generator.ngf=16", "optim.lr=1e-3", "pix2pix.direction=AtoB",
         "pix2pix.test_dropout=false", "name=learn"],
    )  # fmt: skip
    report = train_run(cfg, tmp_path / "runs", data_root=root)
    ev = report.evaluation
    row, identity = ev["directions"]["AtoB"], ev["baselines"]["AtoB"]["identity"]
    assert ev["counts"]["AtoB"]["paired"] == 6 and list(ev["directions"]) == ["AtoB"]
    assert identity["l1"] / row["l1"] >= 3.0, ev
    assert row["psnr"] > identity["psnr"] + 7, ev


def test_run_writes_outputs_and_a_one_direction_bundle(tmp_path: Path):
    root = write_pairs(tmp_path / "data", 4, 2)
    code, out, err = cli(*args(root, tmp_path / "runs", "train.epochs=1", "data.batch_size=2"))
    assert code == 0, err
    run = tmp_path / "runs" / "facades"
    files = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert files == [
        "bundle/G.safetensors",
        "bundle/config.json",
        "checkpoints/last.pt",
        "checkpoints/outputs.json",
        "config.yaml",
        "loss.png",
        "metrics.jsonl",
        "report.html",  # refreshed every epoch
        "results.json",
        "samples/step_0000002.png",
        "timing.json",
    ]
    rows = losses(run)
    assert sorted(rows) == [1, 2] and {"loss_G", "loss_G_GAN", "loss_G_L1", "loss_D", "D_real", "D_fake"} <= set(
        rows[1]
    )
    bundle = json.loads((run / "bundle" / "config.json").read_text())
    assert bundle["recipe"] == "pix2pix" and bundle["translates"] == {"BtoA": "G"}
    assert (bundle["size_multiple"], bundle["min_size"]) == (32, 32)
    assert bundle["test_time"] == {"dropout": False, "batch_norm": "sample"}  # n_downs 5: no dropout blocks
    assert bundle["domains"] == {"A": "photo", "B": "label"}
    # 2 test pairs -> 2 rows of input | output | target (32 px + 2 px padding)
    assert Image.open(run / "samples" / "step_0000002.png").size == (3 * 34 + 2, 2 * 34 + 2)
    # --to names the one direction the bundle has.
    code, _, err = cli(
        "translate", str(root / "testB" / "0.png"), "--model", str(run), "--to", "B", "-o", str(tmp_path / "o")
    )
    assert code == 1 and "translates BtoA only (label -> photo); it cannot translate to B: use --to A" in err
    code, _, err = cli("translate", str(root / "testB" / "0.png"), "--model", str(run), "-o", str(tmp_path / "o"))
    assert code == 0, err
    assert Image.open(tmp_path / "o" / "0.png").size == (40, 40)


def test_bad_paired_data_is_one_line(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(*args(empty, tmp_path / "runs", "train.epochs=1", "data.dataset=null"))
    assert code == 1 and err.strip().startswith(f"error: {empty} holds no paired data: expected trainA/ + trainB/")
    root = write_pairs(tmp_path / "data", 3, 0)
    for f in (root / "trainB").iterdir():
        f.rename(f.with_name(f.name.replace("_B", "_X")))
    code, _, err = cli(*args(root, tmp_path / "runs", "train.epochs=1"))
    assert code == 1 and "0_A.png has no partner in" in err and len(err.strip().splitlines()) == 1


def test_a_side_by_side_image_too_narrow_for_a_and_b_is_caught_by_the_scan(tmp_path: Path):
    root = write_pairs(tmp_path / "data", 3, 0, layout="side_by_side")
    Image.fromarray(np.zeros((40, 1, 3), np.uint8)).save(root / "train" / "narrow.png")
    code, _, err = cli(*args(root, tmp_path / "runs", "train.epochs=1", "data.dataset=null"))
    assert code == 0, err
    assert f"warning: skipping unreadable image {root / 'train' / 'narrow.png'}: 1x40 is too narrow" in err
    assert len((tmp_path / "runs" / "facades" / "metrics.jsonl").read_text().splitlines()) == 3  # every step ran
    code, _, err = cli(*args(root, tmp_path / "strict", "train.epochs=1", "data.dataset=null", "data.strict=true"))
    assert code == 1 and "narrow.png: 1x40 is too narrow to hold A and B side by side" in err
    assert not (tmp_path / "strict" / "facades" / "metrics.jsonl").exists()


# ---------------------------------------------------------------------------------------------
# translate and export


@pytest.fixture(scope="module")
def p2p_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.bundles import make_pix2pix_bundle

    return make_pix2pix_bundle(tmp_path_factory.mktemp("p2p") / "bundle")


def test_per_image_batch_norm_and_padding(p2p_bundle: Path):
    """Sizes that are not multiples of 2**n_downs are padded and cropped back; each image is
    normalised with its own statistics, so batch mates change nothing."""
    from cyclekit.inference.translator import Translator
    from tests.bundles import photo

    t = Translator.load(p2p_bundle, device="cpu")
    assert (t.size_multiple, t.min_size, t.targets) == (32, 32, ["A"])
    imgs = [photo(45, 38, seed=1), photo(45, 38, seed=2)]
    alone = [np.asarray(t(img, to="A")) for img in imgs]
    together = [np.asarray(x) for x in t.translate_many(imgs, to="A", batch_size=2)]
    assert alone[0].shape == (45, 38, 3)
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    net = t.backend.network("BtoA")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_translate_export_parity_at_sizes_off_the_multiple(p2p_bundle: Path, tmp_path: Path):
    from cyclekit.export.onnx import FP32_TOLERANCE, export_bundle
    from cyclekit.inference.translator import Translator
    from tests.bundles import photo

    (result,) = export_bundle(p2p_bundle, out_dir=tmp_path)
    assert result.path.name == "G_BtoA.onnx" and result.direction == "BtoA"
    assert all(c.max_abs_diff <= FP32_TOLERANCE for c in result.checks)
    assert [(c.height, c.width) for c in result.checks] == [(32, 32), (32, 64)]
    torch_t, onnx_t = Translator.load(p2p_bundle, device="cpu"), Translator.load(result.path, device="cpu")
    assert (onnx_t.size_multiple, onnx_t.min_size, onnx_t.targets) == (32, 32, ["A"])
    for h, w in ((45, 38), (70, 33)):  # neither a multiple of 32
        img = photo(h, w, seed=h)
        a, b = np.asarray(torch_t(img)).astype(int), np.asarray(onnx_t(img)).astype(int)
        assert a.shape == b.shape == (h, w, 3)
        assert np.abs(a - b).max() <= 1
    with pytest.raises(CyclekitError, match="does not translate AtoB; it translates BtoA"):
        export_bundle(p2p_bundle, "AtoB", out_dir=tmp_path)


def test_test_time_dropout_is_seeded(tmp_path: Path):
    """Dropout at test time (the paper's protocol) is random but seeded: the same input gives
    the same output every call, and a different one than without dropout."""
    from cyclekit.inference.translator import Translator
    from tests.bundles import make_pix2pix_bundle, photo

    with_dropout = Translator.load(make_pix2pix_bundle(tmp_path / "d", n_downs=6, dropout=True), device="cpu")
    without = Translator.load(make_pix2pix_bundle(tmp_path / "n", n_downs=6, dropout=False), device="cpu")
    img = photo(64, 64, seed=5)
    first, second = np.asarray(with_dropout(img)), np.asarray(with_dropout(img))
    assert np.array_equal(first, second)
    assert not np.array_equal(first, np.asarray(without(img)))


def test_standalone_onnx_script_on_a_pix2pix_export(p2p_bundle: Path, tmp_path: Path):
    import subprocess
    import sys

    from cyclekit.export.onnx import export_bundle
    from cyclekit.inference.translator import Translator
    from tests.bundles import REPO, photo

    (result,) = export_bundle(p2p_bundle, out_dir=tmp_path)
    photo(45, 38, seed=9).save(tmp_path / "in.png")
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "onnx_translate.py"),
            str(result.path),
            str(tmp_path / "in.png"),
            str(tmp_path / "out.png"),
        ],
        check=True,
        capture_output=True,
    )
    expected = np.asarray(Translator.load(p2p_bundle, device="cpu")(Image.open(tmp_path / "in.png"))).astype(int)
    got = np.asarray(Image.open(tmp_path / "out.png")).astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).max() <= 1
