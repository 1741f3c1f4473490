"""Hostile input: no lost work, no traceback, no file read or written where it does not belong.

Every CLI failure here must be exactly one `error:` line and a non-zero exit; files that held
good work must be byte-identical afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from cyclekit.errors import ConfigError
from tests.bundles import make_bundle, photo
from tests.conftest import write_images
from tests.helpers import cli, cli_subprocess, losses, one_error, skip_or_fail_in_ci

DEMO = [
    "data.demo_train=4",
    "data.demo_test=2",
    "data.demo_size=32",
    "data.load_size=32",
    "data.crop_size=32",
    "model.generator.ngf=4",
    "model.generator.n_blocks=1",
    "model.discriminator.ndf=4",
    "train.log_every=1",
    "train.progress=false",
    "train.decay_epochs=0",
    "data.batch_size=1",  # 4 steps an epoch
]


def demo_args(out: Path, *extra: str) -> list[str]:
    a = ["train", "demo", "--out", str(out), "--quiet"]
    for item in [*DEMO, *extra]:
        a += ["--set", item]
    return a


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------------------------
# lost or corrupted work


def test_finite_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    """optim.lr=1e6: losses of 1e13 and more, never NaN. The first checkpoint (step 1, before the
    weights blew up) stays; the run stops with exit 1 and says where it is."""
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=3", "train.checkpoint_every=1", "optim.lr=1e6"))
    line = one_error(err)
    assert code == 1 and "training diverged by step" in line and "limit train.divergence_limit = 1e+06" in line
    ckpt = tmp_path / "demo" / "checkpoints" / "last.pt"
    if "no checkpoint was written yet" not in line:
        assert f"the last checkpoint, {ckpt} (step " in line and ckpt.is_file()
        state = torch.load(ckpt, weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["recipe"]["G_AtoB"].values())
    rows = [json.loads(r) for r in (tmp_path / "demo" / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(v) <= 1e6 for r in rows for k, v in r.items() if k.startswith("loss"))


def test_a_refused_resume_changes_nothing_on_disk(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    run = tmp_path / "demo"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1", "optim.lr=1e-3"), "--resume", "auto")
    wanted = r"was trained with other settings: optim.lr: \S+ in the run, 0.001 now"
    assert code == 1 and re.search(wanted, one_error(err))
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before


def test_translate_never_overwrites_a_file_it_did_not_write(tmp_path: Path):
    bundle = make_bundle(tmp_path / "bundle")
    photo(20, 20).save(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.png").write_bytes(b"someone else's file")
    code, _, err = cli("translate", str(tmp_path / "x.png"), "--model", str(bundle), "-o", str(out))
    assert code == 1 and f"{out / 'x.png'} already exists; pass --overwrite" in one_error(err)
    assert (out / "x.png").read_bytes() == b"someone else's file"
    code, _, err = cli("translate", str(tmp_path / "x.png"), "--model", str(bundle), "-o", str(out), "--overwrite")
    assert code == 0, err
    assert Image.open(out / "x.png").size == (20, 20)


def test_stale_temp_files_of_ours_are_removed_and_only_those(tmp_path: Path):
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"))
    assert code == 0, err
    ckpts, bundle = tmp_path / "demo" / "checkpoints", tmp_path / "demo" / "bundle"
    dead = 2**22 + 12345  # above any pid_max in use here: no such process
    stale = [
        ckpts / f".last.pt.{dead}-0a1b2c3d.cyclekit-tmp",
        bundle / f".G_AtoB.safetensors.{dead}-00ff00ff.cyclekit-tmp",
        ckpts / "last.pt.x7k2_9.tmp",  # cyclekit 0.1's mkstemp naming
        bundle / "config.json.tmp",
    ]
    keep = [ckpts / "notes.tmp", bundle / f".mine.{os.getpid() + 0}-zz.cyclekit-tmp", tmp_path / "demo" / "x.tmp"]
    for f in stale + keep:
        f.write_bytes(b"x" * 1000)
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=1"), "--resume", "auto")
    assert code == 0, err
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in keep)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_disk_full_during_a_checkpoint_is_one_line_and_keeps_the_previous(tmp_path: Path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4M"):
        skip_or_fail_in_ci("needs root and tmpfs to make a small full disk (mount -t tmpfs)")
    try:
        code, _, err = cli(*demo_args(disk, "train.epochs=3", "train.max_steps=4"))
        assert code == 0, err
        ckpt = disk / "demo" / "checkpoints" / "last.pt"
        good = ckpt.read_bytes()
        # Fill the disk but for a few KB: metrics lines still fit, a checkpoint does not.
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 24 * 1024))
        code, _, err = cli(*demo_args(disk, "train.epochs=3"), "--resume", "auto")
        line = one_error(err)
        assert code == 1 and "no space left" in line.lower() and str(disk) in line, line
        assert ckpt.read_bytes() == good
        assert not list(disk.rglob("*.cyclekit-tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_disk_full_at_the_first_checkpoint_is_one_line(tmp_path: Path):
    """torch's zip writer reports a full disk as "unexpected pos ...": still one line, nothing left behind."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "4M"):
        skip_or_fail_in_ci("needs root and tmpfs to make a small full disk (mount -t tmpfs)")
    try:
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(b"\0" * max(0, free - 40 * 1024))  # config and log lines fit
        code, _, err = cli(*demo_args(disk, "train.epochs=1", "model.generator.ngf=16"))
        line = one_error(err)
        assert code == 1 and "no space left" in line.lower() and str(disk / "demo") in line, line
        assert "nothing was written" in line
        assert not (disk / "demo" / "checkpoints" / "last.pt").exists()
        assert not list(disk.rglob("*.cyclekit-tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_thread_count_is_stored_and_a_different_one_warned_about(tmp_path: Path):
    from cyclekit.train.checkpoint import load_checkpoint, save_checkpoint

    code, _, err = cli(*demo_args(tmp_path, "train.epochs=2", "train.max_steps=4"))
    assert code == 0, err
    ckpt = tmp_path / "demo" / "checkpoints" / "last.pt"
    state = load_checkpoint(ckpt)
    assert state["threads"] == torch.get_num_threads()
    state["threads"] = torch.get_num_threads() + 5
    save_checkpoint(state, ckpt)
    code, _, err = cli(*demo_args(tmp_path, "train.epochs=2"), "--resume", "auto")
    assert code == 0 and "warning: checkpoint written with" in err and "same thread count" in err


# Slow: the aimed-kill test of tests/test_lost_work.py kills exactly at each rename of the last save.
@pytest.mark.slow
def test_sigkill_while_a_checkpoint_or_bundle_is_being_written(tmp_path: Path):
    """Watch for our temp files and kill the process the moment one exists: the checkpoint on disk
    is still whole, the resume is bit-exact, and no temp file is left."""
    common = ["train.epochs=3", "train.checkpoint_every=1", "model.generator.ngf=16", "model.generator.n_blocks=3"]
    code, _, err = cli(*demo_args(tmp_path / "a", *common))
    assert code == 0, err
    full = losses(tmp_path / "a" / "demo")

    run = tmp_path / "b" / "demo"
    hits = 0
    for _attempt in range(6):
        proc = cli_subprocess(*demo_args(tmp_path / "b", *common), "--resume", "auto")
        deadline = time.monotonic() + 60
        killed = False
        while time.monotonic() < deadline and proc.poll() is None:
            temps = list(run.glob("checkpoints/*.cyclekit-tmp")) + list(run.glob("bundle/*.cyclekit-tmp"))
            if temps and (run / "checkpoints" / "last.pt").exists():
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
        proc.wait()
        hits += killed
        if hits >= 2 or proc.returncode == 0:
            break
    assert hits >= 1, "never caught a write in progress"
    code, _, err = cli(*demo_args(tmp_path / "b", *common), "--resume", "auto")
    assert code == 0, err
    assert losses(run) == full
    assert not list(run.rglob("*.cyclekit-tmp"))


def test_a_download_that_is_an_html_page_is_not_kept(tmp_path: Path):
    import dataclasses

    from cyclekit.data.catalogue import CATALOGUE
    from cyclekit.data.download import fetch_dataset
    from cyclekit.errors import DataError
    from tests.test_data_download import _Server

    www = tmp_path / "www"
    www.mkdir()
    (www / "horse2zebra.zip").write_text("<!DOCTYPE html><html><body>Service moved</body></html>")
    with _Server(www) as server:
        info = dataclasses.replace(CATALOGUE["horse2zebra"], url=f"{server.url}/horse2zebra.zip")
        CATALOGUE["horse2zebra"] = info
        try:
            cache = tmp_path / "cache"
            with pytest.raises(DataError, match="the server sent an HTML page, not a zip archive; nothing was kept"):
                fetch_dataset("horse2zebra", cache)
            assert not (cache / "horse2zebra.zip").exists() and not list(cache.glob("*.part"))
            # A bad file cached by an older version is replaced, not trusted.
            (cache / "horse2zebra.zip").write_text("<html>old</html>")
            with pytest.raises(DataError, match="HTML page"):
                fetch_dataset("horse2zebra", cache)
            assert not (cache / "horse2zebra.zip").exists()
        finally:
            CATALOGUE["horse2zebra"] = dataclasses.replace(
                info, url=info.url.replace(server.url, "http://efrosgans.eecs.berkeley.edu/cyclegan/datasets")
            )


# ---------------------------------------------------------------------------------------------
# model files are untrusted input


def _corruptions(folder: Path) -> dict[str, callable]:
    cfg_path = folder / "config.json"

    def edit(fn):
        def apply() -> None:
            cfg = json.loads(cfg_path.read_text())
            fn(cfg)
            cfg_path.write_text(json.dumps(cfg))

        return apply

    def nan_weights() -> None:
        from safetensors.torch import load_file, save_file

        from cyclekit.inference.bundle import file_sha256

        state = load_file(str(folder / "G_AtoB.safetensors"))
        first = next(iter(state))
        state[first][..., 0] = float("nan")
        save_file(state, str(folder / "G_AtoB.safetensors"))
        cfg = json.loads(cfg_path.read_text())
        cfg["networks"]["G_AtoB"]["sha256"] = file_sha256(folder / "G_AtoB.safetensors")
        cfg_path.write_text(json.dumps(cfg))

    def flip_bytes() -> None:
        data = bytearray((folder / "G_AtoB.safetensors").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / "G_AtoB.safetensors").write_bytes(bytes(data))

    return {
        "field deleted": edit(lambda c: c.pop("translates")),
        "wrong type": edit(lambda c: c.update(size_multiple="four")),
        "path escape": edit(lambda c: c["networks"]["G_AtoB"].update(file="../../etc/passwd")),
        "unknown format": edit(lambda c: c.update(format_version=99)),
        "not json": lambda: cfg_path.write_text("{not json"),
        "corrupted weights": flip_bytes,
        "weights missing": lambda: (folder / "G_AtoB.safetensors").unlink(),
        "nan weights": nan_weights,
        "architecture lies": edit(lambda c: c["networks"]["G_AtoB"]["options"].update(ngf=16)),
    }


@pytest.mark.parametrize(
    "case",
    ["field deleted", "wrong type", "path escape", "unknown format", "not json", "corrupted weights",
     "weights missing", "nan weights", "architecture lies"],
)  # fmt: skip
def test_malformed_bundles_are_one_line_for_translate_and_export(tmp_path: Path, case: str):
    folder = make_bundle(tmp_path / "bundle")
    _corruptions(folder)[case]()
    for i in range(3):
        photo(20, 20, seed=i).save(tmp_path / f"in{i}.png")
    code, _, err = cli(
        "translate",
        *[str(tmp_path / f"in{i}.png") for i in range(3)],
        "--model",
        str(folder),
        "-o",
        str(tmp_path / "o"),
    )
    assert code == 1
    one_error(err)  # reported once, not once per image
    code, _, err = cli("export", str(folder), "-o", str(tmp_path / "x"))
    assert code == 1
    one_error(err)
    assert not list((tmp_path / "x").glob("*.onnx")) if (tmp_path / "x").exists() else True


def test_malformed_onnx_files_are_one_line(tmp_path: Path):
    import onnx

    from cyclekit.export.onnx import export_bundle

    folder = make_bundle(tmp_path / "bundle")
    (good,) = export_bundle(folder, "AtoB", out_dir=tmp_path / "onnx")
    photo(20, 20).save(tmp_path / "in.png")
    cases = {}
    data = good.path.read_bytes()
    cases["truncated"] = data[: len(data) // 3]
    for key, value in (
        ("std", "0"),
        ("size_multiple", "0"),
        ("domains", '["A"]'),
        ("channels", "2"),
        ("direction", "AtoC"),
    ):
        model = onnx.load_from_string(data)
        for prop in model.metadata_props:
            if prop.key == key:
                prop.value = value
        cases[f"{key}={value}"] = model.SerializeToString()
    model = onnx.load_from_string(data)
    del model.metadata_props[:]
    cases["no metadata"] = model.SerializeToString()
    for name, blob in cases.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(blob)
        code, _, err = cli("translate", str(tmp_path / "in.png"), "--model", str(path), "-o", str(tmp_path / "o"))
        assert code == 1, name
        one_error(err)


# ---------------------------------------------------------------------------------------------
# config and CLI edges


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.crop_size=30", "data.load_size=36"], "data.crop_size: 30 is not a multiple of 4"),
        (["model.discriminator.n_layers=5"], "data.crop_size: 32 is too small for a PatchGAN with n_layers 5"),
        (["train.device=cuda:3"], "train.device: device cuda:3 requested but no CUDA GPU is available"),
        (["data.preprocess=none", "data.batch_size=2"], "data.batch_size: 2 with data.preprocess none"),
        (["train.epochs=99999999999999999999"], "train.epochs: 99999999999999999999 is too large"),
        (["optim.lr=.inf"], "optim.lr: must be a finite number"),
        (["data.batch_size=-3"], "data.batch_size: must be > 0"),
        (["train.divergence_limit=0"], "train.divergence_limit: must be > 0"),
    ],
)
def test_impossible_settings_are_refused_when_the_config_loads(overrides: list[str], message: str):
    from cyclekit.recipes import load_config

    if "cuda" in overrides[0] and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config("demo", [*DEMO, *overrides])


def test_config_files_that_are_not_text_or_have_odd_keys(tmp_path: Path):
    from cyclekit.recipes import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"recipe: cyclegan\nname: \xff\xfe\n")
    with pytest.raises(ConfigError, match="bad.yaml: not UTF-8 text"):
        load_config(str(bad))
    keys = tmp_path / "keys.yaml"
    keys.write_text("1: 2\nrecipe: cyclegan\n")
    with pytest.raises(ConfigError, match="config: keys must be names, got 1"):
        load_config(str(keys))
    nested = tmp_path / "nested.yaml"
    nested.write_text("train: {5: 1}\n")
    with pytest.raises(ConfigError, match="train.5: unknown key"):
        load_config(str(nested))


def test_preprocess_none_trains_on_mixed_sizes(tmp_path: Path):
    root = tmp_path / "mixed"
    write_images(root / "trainA", 2, size=36, seed=1)
    write_images(root / "trainB", 2, size=44, seed=2)
    write_images(root / "testA", 1, size=52, seed=3)
    write_images(root / "testB", 1, size=40, seed=4)
    code, _, err = cli(
        "train", "horse2zebra", "--data-root", str(root), "--out", str(tmp_path / "runs"), "--quiet",
        *[a for item in ["data.preprocess=none", "train.epochs=1", "train.decay_epochs=0", "model.generator.ngf=4",
                         "model.generator.n_blocks=1", "model.discriminator.ndf=4"] for a in ("--set", item)],
    )  # fmt: skip
    assert code == 0, err
    assert list((tmp_path / "runs" / "horse2zebra" / "samples").glob("*.png"))


def test_data_check_fails_on_what_train_would_refuse(tmp_path: Path):
    write_images(tmp_path / "ds" / "trainA", 2)
    code, out, err = cli("data", "check", str(tmp_path / "ds"))
    assert code == 1 and f"{tmp_path / 'ds' / 'trainB'} is missing" in one_error(err)
    (tmp_path / "ds" / "trainB").mkdir()
    (tmp_path / "ds" / "trainB" / "bad.png").write_bytes(b"nope")
    code, _, err = cli("data", "check", str(tmp_path / "ds"))
    assert code == 1 and "trainB holds no readable images" in one_error(err)
    write_images(tmp_path / "ds" / "trainB", 1)
    code, _, err = cli("data", "check", str(tmp_path / "ds"))
    assert code == 0, err
    (tmp_path / "empty").mkdir()
    code, _, err = cli("data", "check", str(tmp_path / "empty"))
    assert code == 1 and "holds no readable images" in one_error(err)


def test_library_warnings_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bundle = make_bundle(tmp_path / "bundle")
    photo(40, 40).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 px: a decompression-bomb warning
    code, _, err = cli("translate", str(tmp_path / "big.png"), "--model", str(bundle), "-o", str(tmp_path / "o"))
    warns = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warns) >= 1 and all("\n" not in w for w in warns), err
    assert all(line.startswith("warning:") for line in err.strip().splitlines())


def test_output_paths_are_checked_before_the_work(tmp_path: Path):
    gan = tmp_path / "gan"
    code, _, err = cli(
        "train", "gan-ring", "--out", str(gan), "--quiet", "--set", "train.max_steps=2", "--set", "data.epoch_size=512"
    )
    assert code == 0, err
    code, _, err = cli("sample", str(gan / "gan-ring"), "-o", str(tmp_path / "s.jpg"))
    assert code == 1 and "unknown extension '.jpg'; use .png" in one_error(err)
    (tmp_path / "afile").write_text("x")
    code, _, err = cli("sample", str(gan / "gan-ring"), "-o", str(tmp_path / "afile" / "s.png"))
    assert code == 1 and "afile is a file, not a folder" in one_error(err)
    bundle = make_bundle(tmp_path / "bundle")
    code, _, err = cli("export", str(bundle), "--opset", "99", "-o", str(tmp_path / "x"))
    assert code == 1 and "opset 99 is newer than this onnx package knows" in one_error(err)
    code, _, err = cli("export", str(bundle), "-o", str(tmp_path / "afile" / "x"))
    assert code == 1 and "is a file, not a folder" in one_error(err)


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9999999999 bytes."),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        OSError(12, "Cannot allocate memory"),
    ],
)
def test_out_of_memory_in_every_spelling(exc: BaseException):
    import typer

    from cyclekit.cli import OUT_OF_MEMORY, friendly

    @friendly
    def boom() -> None:
        raise exc

    with pytest.raises(typer.Exit) as info:
        boom()
    assert info.value.exit_code == 1
    assert OUT_OF_MEMORY.startswith("out of memory")


# ---------------------------------------------------------------------------------------------
# property-based: config loading never fails with anything but a ConfigError naming the key


def test_config_loading_over_random_values_and_types():
    import dataclasses

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from cyclekit.config import SHARED_SECTIONS
    from cyclekit.errors import CyclekitError
    from cyclekit.recipes import RECIPES, config_from_dict

    keys = [f"{s}.{f.name}" for s, cls in SHARED_SECTIONS.items() for f in dataclasses.fields(cls)]
    keys += [f"{r}.{f.name}" for r, cls in RECIPES.items() for f in dataclasses.fields(cls.Options)]
    keys += ["model.generator.ngf", "model.generator.n_downs", "model.discriminator.n_layers", "seed", "name", "nope.x"]
    values = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.lists(st.integers(min_value=-5, max_value=300), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        st.sampled_from(["AtoB", "lsgan", "resize_and_crop", "batch", "unet", "cuda", "1e-4", "-0", "paired", "ring"]),
    )

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        recipe=st.sampled_from(sorted(RECIPES)), items=st.lists(st.tuples(st.sampled_from(keys), values), max_size=4)
    )
    def check(recipe: str, items: list) -> None:
        raw: dict = {"recipe": recipe}
        for key, value in items:
            node = raw
            *path, last = key.split(".")
            for part in path:
                node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
            node[last] = value
        try:
            config_from_dict(raw)
        except ConfigError as exc:
            assert "\n" not in str(exc) and ":" in str(exc)
        except CyclekitError as exc:  # pragma: no cover - a non-config error must still be one line
            assert "\n" not in str(exc)

    check()
