"""A real (non-editable) install: the wheel carries the presets, so `cyclekit presets` and
`cyclekit train demo` work from any folder. The temporary venv reuses this environment's
packages through a .pth file, so nothing (least of all torch) is downloaded again."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import REPO


def test_wheel_install_runs_presets_and_trains_from_any_folder(tmp_path: Path):
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("cyclekit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cyclekit/presets/demo.yaml" in names and "cyclekit/presets/facades.yaml" in names

    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # Dependencies from this environment, after the venv's own site-packages (so the wheel wins).
    (site / "reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "CYCLEKIT_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    where = subprocess.run(
        [str(python), "-c", "import cyclekit; print(cyclekit.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout  # the installed wheel, not the checkout

    cyclekit = env_dir / "bin" / "cyclekit"
    presets = subprocess.run([str(cyclekit), "presets"], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert presets.returncode == 0, presets.stderr
    listed = {line.split()[0] for line in presets.stdout.splitlines()}
    assert {"demo", "horse2zebra", "facades", "maps", "gan-ring", "dcgan", "mnist-dcgan"} <= listed

    tiny = ["data.demo_train=4", "data.demo_test=2", "data.demo_size=32", "data.load_size=32",
            "data.crop_size=32", "model.generator.ngf=4", "model.generator.n_blocks=1",
            "model.discriminator.ndf=4", "train.max_steps=2"]  # fmt: skip
    train = subprocess.run(
        [str(cyclekit), "train", "demo", "--quiet", *[a for item in tiny for a in ("--set", item)]],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert train.returncode == 0, train.stderr
    assert (elsewhere / "runs" / "demo" / "bundle" / "config.json").is_file()
