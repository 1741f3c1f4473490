"""The platform contracts: data sources as plug-ins (their own config keys, the batch keys they
give, the batch keys a recipe needs), one typed recipe contract, and the loop driven by a tiny
fake recipe (no data, milliseconds: max_steps, resume, divergence). At the end, a recipe and a data
source the platform did not foresee (tests/fakes/: three players, one a head sized from the
generator's feature taps; the frames of a generated video), one file each, go through the CLI:
train, SIGKILL and resume bit-exact, eval, bundle, translate and export."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cyclekit.config import TrainConfig, compatible_kinds, satisfies
from cyclekit.data.sources import SOURCES, Source
from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.recipe import Recipe
from cyclekit.recipes import RECIPES, config_from_dict, load_config
from cyclekit.run import fingerprint, upgrade_fingerprint
from cyclekit.train.loop import checkpoint_path, fit
from cyclekit.train.state import TrainingState
from tests.helpers import cli, kill_when, one_error

# ---------------------------------------------------------------------------------------------
# data sources


def test_every_source_declares_its_contract():
    for kind, source in SOURCES.items():
        assert issubclass(source, Source) and source.name == kind
        assert dataclasses.is_dataclass(source.Options) and source.batch_keys and source.description
        for name in ("check", "locate", "build", "image_shape"):
            assert callable(getattr(source, name)), (kind, name)


def test_flat_and_nested_source_keys_are_one_setting_and_dumps_nest_them(tmp_path: Path):
    flat = load_config("facades-small", ["data.crop_size=32", "data.load_size=36", "model.generator.n_downs=5"])
    nested = load_config(
        "facades-small", ["data.paired.crop_size=32", "data.paired.load_size=36", "model.generator.n_downs=5"]
    )
    assert flat == nested and flat.data.crop_size == 32 == flat.data.source.crop_size
    dumped = flat.to_dict()["data"]
    assert dumped["paired"]["crop_size"] == 32 and "crop_size" not in dumped and dumped["kind"] == "paired"
    assert config_from_dict(flat.to_dict()) == flat


def test_a_config_yaml_of_the_flat_layout_still_loads_and_resumes_by_its_fingerprint():
    config = load_config("horse2zebra-small")
    old = config.to_dict()
    old["data"] = {"kind": "unpaired", **{k: v for k, v in config.data.flat().items() if k != "kind"}}
    assert config_from_dict(old) == config
    # A version-2 checkpoint stored the same flat keys under "data" and the options apart.
    v2 = {**fingerprint(config), "version": 2}
    assert upgrade_fingerprint(v2) == fingerprint(config)


@pytest.mark.parametrize(
    ("preset", "setting", "message"),
    [
        ("horse2zebra-small", "data.layout=folders", "data.layout: not used with data.kind unpaired (read by: paired)"),
        ("horse2zebra-small", "data.crop_sise=3", "data.crop_sise: unknown key (did you mean crop_size?)"),
        ("gan-ring", "data.channels=1", "data.channels: not used with data.kind ring"),
        ("mnist-dcgan", "data.channels=3", "data.channels: the mnist images are greyscale; set 1"),
        ("horse2zebra-small", "data.paired.crop_size=3", "data.paired: options of the paired source"),
        ("horse2zebra-small", "data.kind=digitz", "data.kind: unknown kind 'digitz' (did you mean digits?)"),
        ("facades-small", "data.paired.load_size=0", "data.paired.load_size: must be > 0"),
    ],
)
def test_source_keys_are_checked_naming_the_key_and_its_source(preset: str, setting: str, message: str):
    with pytest.raises(ConfigError) as info:
        load_config(preset, [setting])
    assert str(info.value).startswith(message), str(info.value)


def test_a_file_whose_two_spellings_disagree_is_refused_and_the_command_line_wins(tmp_path: Path):
    raw = load_config("facades-small").to_dict()
    raw["data"]["crop_size"] = 32  # and data.paired.crop_size: 64
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"data.crop_size and data.paired.crop_size disagree \(32 and 64\)"):
        load_config(str(path))
    sizes = ["data.load_size=36", "model.generator.n_downs=5"]
    assert load_config(str(path), ["data.paired.crop_size=32", *sizes]).data.crop_size == 32
    assert load_config(str(path), ["data.crop_size=32", *sizes]).data.crop_size == 32


def test_a_recipe_paired_with_a_source_lacking_its_batch_keys_fails_at_load_before_any_data(tmp_path: Path):
    missing = tmp_path / "nowhere"  # never looked at: the config is refused first
    code, _, err = cli("train", "facades-small", "--data-root", str(missing), "--set", "data.kind=unpaired")
    assert code == 1
    line = one_error(err)
    assert "data.kind: recipe pix2pix trains on batches of A, B, aligned; the unpaired source gives A, B" in line
    assert "(kinds that fit: paired)" in line and not missing.exists()
    code, _, err = cli("train", "demo", "--set", "data.kind=digits", "--out", str(tmp_path))
    assert code == 1 and "the digits source gives image, label" in one_error(err)
    assert list(tmp_path.iterdir()) == []


def test_recipes_accept_exactly_the_sources_whose_batches_they_read():
    assert compatible_kinds(RECIPES["pix2pix"], SOURCES) == ["paired"]
    assert set(compatible_kinds(RECIPES["cyclegan"], SOURCES)) == {"unpaired", "paired", "demo"}
    images = {"folder", "digits", "mnist", "classes", "scenes", "embedded", "captions"}
    assert set(compatible_kinds(RECIPES["gan"], SOURCES)) == images | {"ring"}
    assert set(compatible_kinds(RECIPES["stackgan"], SOURCES)) == images - {"folder"}
    assert satisfies((("image",), ("points",)), ("points",)) and not satisfies((("A", "B"),), ("image", "label"))


def test_no_recipe_imports_another_and_cli_imports_no_recipe_module():
    root = Path(__file__).resolve().parent.parent / "cyclekit"
    for path in (root / "recipes").glob("*.py"):
        text = path.read_text()
        for other in ("cyclegan", "pix2pix", "gan"):
            if path.stem not in (other, "__init__"):
                assert f"cyclekit.recipes.{other} import" not in text, (path.name, other)
    for path in (root / "cli").glob("*.py"):
        assert "cyclekit.recipes.cyclegan" not in path.read_text(), path.name


# ---------------------------------------------------------------------------------------------
# the recipe contract


def test_every_recipe_implements_the_one_contract():
    for name, recipe in RECIPES.items():
        assert issubclass(recipe, Recipe) and recipe.name == name
        assert not inspect.isabstract(recipe), f"{name} leaves {sorted(recipe.__abstractmethods__)} abstract"
        assert dataclasses.is_dataclass(recipe.Options) and recipe.default_kind in SOURCES
        assert satisfies(recipe.needs, SOURCES[recipe.default_kind].batch_keys)


def test_the_recipes_command_lists_the_kinds_each_recipe_reads():
    code, out, _ = cli("recipes")
    assert code == 0
    for name, recipe in RECIPES.items():
        assert name in out and ", ".join(compatible_kinds(recipe, SOURCES)) in out


# ---------------------------------------------------------------------------------------------
# the loop, driven by a fake recipe


class FakeRecipe(Recipe):
    """Fits y = 3x with one weight; a loss above ``explode_at`` steps makes it diverge."""

    name = "fake"
    description = "a test double"
    Options = TrainConfig  # any dataclass: never parsed here
    default_kind = "ring"
    needs = (("points",),)

    def __init__(self, config: Any = None, data_root: Path | None = None, cache_dir: Path | None = None) -> None:
        self.config = config
        self.device = torch.device("cpu")
        self.w = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.w.weight)
        opt = torch.optim.SGD(self.w.parameters(), lr=0.3)
        self.state = TrainingState({"w": self.w}, {"opt": opt})
        self.explode_at: int | None = None
        self.bundles: list[int] = []

    @classmethod
    def build_networks(cls, config: Any) -> dict[str, torch.nn.Module]:
        return {"w": torch.nn.Linear(1, 1, bias=False)}

    @classmethod
    def make_bundle(cls, config: Any, nets: Mapping[str, torch.nn.Module], step: int, epoch: int) -> Any:
        raise NotImplementedError  # write_bundle is overridden

    def steps_per_epoch(self) -> int:
        return 4

    def batches(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(epoch)
        xs = torch.randn(self.steps_per_epoch(), 8, 1, generator=gen)
        yield from xs[start:]

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        loss = ((self.w(batch) - 3 * batch) ** 2).mean()
        if self.explode_at is not None and step >= self.explode_at:
            loss = loss * 1e12
        self.state.optimizers["opt"].zero_grad()
        loss.backward()
        self.state.optimizers["opt"].step()
        return {"loss": loss.detach()}

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        return []

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        self.bundles.append(step)

    def data_summary(self) -> str:
        return "fake"


def _train(root: Path, **changes: Any) -> TrainConfig:
    for name in ("full", "part", "run"):
        (root / name).mkdir(exist_ok=True)
    base = {"epochs": 3, "decay_epochs": 0, "log_every": 1, "checkpoint_every": 1000, "progress": False}
    return TrainConfig(**{**base, **changes})


def test_the_loop_runs_a_fake_recipe_to_max_steps_and_resumes_exactly(tmp_path: Path):
    full = FakeRecipe()
    result = fit(full, tmp_path / "full", _train(tmp_path))
    assert result.step == 12 and result.epoch == 3 and full.bundles[-1] == 12
    assert abs(full.w.weight.item() - 3) < 0.05  # it learned

    part = FakeRecipe()
    stopped = fit(part, tmp_path / "part", _train(tmp_path, max_steps=6))
    assert stopped.step == 6 and checkpoint_path(tmp_path / "part").is_file()  # mid-epoch 2
    resumed = FakeRecipe()
    out = fit(resumed, tmp_path / "part", _train(tmp_path), resume=checkpoint_path(tmp_path / "part"))
    assert out.resumed_from == 6 and out.step == 12
    assert torch.equal(resumed.w.weight, full.w.weight)  # bit-exact
    rows = [json.loads(r) for r in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))


def test_the_loop_stops_a_diverging_fake_recipe_with_the_last_good_checkpoint(tmp_path: Path):
    recipe = FakeRecipe()
    recipe.explode_at = 9
    with pytest.raises(CyclekitError, match=r"training diverged by step (10|11|12): .*the last checkpoint"):
        fit(recipe, tmp_path / "run", _train(tmp_path, divergence_limit=1e6))
    state = torch.load(checkpoint_path(tmp_path / "run"), weights_only=True)
    assert state["step"] == 8  # the last epoch end before the divergence


def test_a_preset_dump_is_valid_yaml_in_the_nested_layout(tmp_path: Path):
    text = yaml.safe_dump(load_config("dcgan-small").to_dict(), sort_keys=False)
    assert "folder:" in text and yaml.safe_load(text)["data"]["folder"]["crop_size"] == 32


def test_a_recipe_declares_its_own_network_slots():
    """StackGAN-shaped: four networks, two per stage. The model section takes exactly those slots,
    with errors naming the recipe's slots, and writes them back in the YAML layout."""
    from dataclasses import dataclass

    from cyclekit.config import parse_config
    from cyclekit.data.sources import SOURCES
    from cyclekit.errors import ConfigError

    @dataclass(frozen=True)
    class StagedOptions:
        stages: int = 2

    class Staged(FakeRecipe):
        name = "staged"
        Options = StagedOptions
        networks = {"stage1_g": "G1", "stage1_d": "D1", "stage2_g": "G2", "stage2_d": "D2"}
        defaults = {"model": {slot: {"name": "mlp_g" if slot.endswith("g") else "mlp_d"} for slot in networks}}

    recipes = {"staged": Staged}
    cfg = parse_config({"recipe": "staged", "model": {"stage2_g": {"hidden": 8}}}, recipes, SOURCES)
    assert cfg.model.stage2_g == {"name": "mlp_g", "hidden": 8} and cfg.model.stage1_d == {"name": "mlp_d"}
    assert list(cfg.to_dict()["model"])[:4] == ["stage1_g", "stage1_d", "stage2_g", "stage2_d"]
    with pytest.raises(ConfigError, match="model.generator: not a network of recipe staged; valid keys: stage1_g"):
        parse_config({"recipe": "staged", "model": {"generator": {"name": "mlp_g"}}}, recipes, SOURCES)
    Staged.defaults = {}
    with pytest.raises(ConfigError, match=r"model.stage1_g: required by recipe staged \(G1\)"):
        parse_config({"recipe": "staged"}, recipes, SOURCES)


# ---------------------------------------------------------------------------------------------
# a recipe and a data source the platform did not foresee, one file each (tests/fakes/)

VIDEO_CONFIG = """\
recipe: three_players
name: video
data:
  kind: video_frames
  batch_size: 2
  video_frames: {frames: 16, test_frames: 4}
model:
  generator: {name: resnet, ngf: 8, n_blocks: 2}
  discriminator: {name: patchgan, ndf: 8}
train: {epochs: 3, decay_epochs: 1, log_every: 1, checkpoint_every: 3, progress: false}
three_players: {patches: 8}
"""
VIDEO_STEPS = 32  # 16 frames at batch 2: 8 steps an epoch, 3 + 1 epochs
REPO = Path(__file__).resolve().parent.parent
# The cyclekit command with the fakes imported first (registering them), for a run of its own to SIGKILL.
LAUNCH = "import tests.fakes.three_players, tests.fakes.video_frames; from cyclekit.cli import main; main()"


@contextlib.contextmanager
def _fakes_registered() -> Iterator[tuple[Any, Any]]:
    """The fake recipe and source in the registries, and out of them afterwards (importing a fake
    registers it for good: it is taken out first, so that the patch's undo removes it)."""
    from tests.fakes import three_players, video_frames

    with pytest.MonkeyPatch.context() as patch:
        for registry, name, cls in (
            (RECIPES, three_players.NAME, three_players.ThreePlayersRecipe),
            (SOURCES, video_frames.KIND, video_frames.VideoFramesSource),
        ):
            registry.pop(name, None)
            patch.setitem(registry, name, cls)
        yield three_players, video_frames


@pytest.fixture
def fakes() -> Iterator[tuple[Any, Any]]:
    with _fakes_registered() as modules:
        yield modules


@dataclasses.dataclass(frozen=True)
class VideoRuns:
    frames: Path  # the rendered video
    full: Path  # the run trained without a break
    resumed: Path  # the same run, SIGKILLed and resumed
    killed_at: int  # the step of the checkpoint it resumed from
    resume_output: str


@pytest.fixture(scope="module")
def video_runs(tmp_path_factory: pytest.TempPathFactory) -> VideoRuns:
    """The fake recipe on the fake video, trained through the CLI twice: once without a break, and
    once in a process of its own, SIGKILLed after a checkpoint and resumed with --resume auto."""
    import os
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("video")
    config = tmp / "video.yaml"
    config.write_text(VIDEO_CONFIG)
    frames = tmp / "frames"  # rendered by the source's locate on the first run

    def train(out: str, *extra: str) -> list[str]:
        return ["train", str(config), "--data-root", str(frames), "--out", str(tmp / out), "--quiet", *extra]

    with _fakes_registered():
        code, _, err = cli(*train("full"))
        assert code == 0, err
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *train("resumed")],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        resumed = tmp / "resumed" / "video"
        seen = kill_when(proc, resumed / "metrics.jsonl", min_lines=6)
        assert seen < VIDEO_STEPS, "the run ended before the kill"
        killed_at = int(torch.load(checkpoint_path(resumed), weights_only=False)["step"])
        code, out, err = cli(*train("resumed", "--resume", "auto"))
        assert code == 0, err
    return VideoRuns(frames, tmp / "full" / "video", resumed, killed_at, out)


def _same(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` equal all the way down, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def test_the_fakes_are_one_file_each_and_the_head_is_sized_from_the_generators_taps(fakes: Any, tmp_path: Path):
    from cyclekit.data.protocol import Dataset, RunData
    from cyclekit.models import feature_channels

    three_players, video_frames = fakes
    recipe, source = RECIPES["three_players"], SOURCES["video_frames"]
    assert recipe.__module__ == three_players.__name__ and source.__module__ == video_frames.__name__
    assert "video_frames" in compatible_kinds(recipe, SOURCES) and not inspect.isabstract(recipe)
    assert [p.name for p in recipe.players(None)] == ["g", "d", "h"]

    config_path = tmp_path / "video.yaml"
    config_path.write_text(VIDEO_CONFIG)
    config = load_config(str(config_path))
    # H's inputs are the channels G declares at the tapped layers (from a copy on the meta device)
    generator = dict(config.model.generator, in_channels=3, out_channels=3)
    assert feature_channels("resnet", generator, [0, 4, 8]) == [3, 16, 32]
    head = recipe.build_networks(config)["H"]
    assert [mlp[0].in_features for mlp in head.mlps] == [3, 16, 32]

    # a layer G cannot tap is refused when the config loads, in one line, before any data is made
    frames = tmp_path / "frames"
    args = ["train", str(config_path), "--data-root", str(frames), "--out", str(tmp_path / "runs")]
    code, _, err = cli(*args, "--set", "three_players.nce_layers=[0,99]")
    assert code == 1 and one_error(err).startswith("error: three_players.nce_layers: ")
    assert "layer 99 is not one of its" in err and not frames.exists()

    # the source's splits are Datasets, opened by the run's own code; items are aligned A/B frames
    root = source.locate(config.data.source, frames, None, config.seed)
    data = RunData.open(config.data, root, config.seed)
    assert isinstance(data.train, Dataset) and isinstance(data.test, Dataset)
    assert (len(data.train), len(data.test)) == (16, 4) and data.train.root == frames
    plan = data.train.epoch_plan(1)
    assert plan == data.train.epoch_plan(1) != data.train.epoch_plan(2)
    item = data.train[plan[0]]
    assert set(item) == {"A", "B"} and item["A"].shape == item["B"].shape == (3, 32, 32)


def test_a_fake_recipe_on_fake_video_frames_resumes_bit_exact_after_sigkill(video_runs: VideoRuns):
    runs = video_runs
    assert 0 < runs.killed_at < VIDEO_STEPS and f"resumed at step {runs.killed_at}" in runs.resume_output

    def logged(run: Path) -> list[dict[str, Any]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "sec"} for row in rows]  # all but the wall-clock time

    full = logged(runs.full)
    assert [row["step"] for row in full] == list(range(1, VIDEO_STEPS + 1)) and "loss_NCE" in full[0]
    assert logged(runs.resumed) == full  # every logged value, bit for bit
    a, b = (torch.load(checkpoint_path(run), weights_only=False) for run in (runs.full, runs.resumed))
    assert a["step"] == b["step"] == VIDEO_STEPS
    # three players: each its optimizer and schedule
    assert {"G", "D", "H", "opt_g", "opt_d", "opt_h", "sched_g", "sched_d", "sched_h"} <= set(a["recipe"])
    _same(a["recipe"], b["recipe"], "recipe")  # networks, optimizers, schedules
    _same(a["rng"], b["rng"], "rng")
    recorded = yaml.safe_load((runs.resumed / "config.yaml").read_text())["data"]["video_frames"]["root"]
    assert recorded == str(runs.frames.resolve())
    # scored at the end on the source's test frames (aligned pairs), the same scores both times
    results = [json.loads((run / "results.json").read_text()) for run in (runs.full, runs.resumed)]
    assert results[0]["counts"]["AtoB"]["paired"] == 4
    assert results[0]["directions"] == results[1]["directions"]


def test_a_fake_recipes_run_is_scored_bundled_translated_and_exported(video_runs: VideoRuns, tmp_path: Path):
    import numpy as np
    from PIL import Image

    run = video_runs.resumed
    with _fakes_registered():
        # `cyclekit eval RUN` reads the run's test split through its source
        code, out, err = cli("eval", str(run), "--no-fid", "-o", str(tmp_path / "scores.json"))
        assert code == 0 and "AtoB: 4 images" in out, err
        # the bundle rebuilt from the resumed run's checkpoint holds the uninterrupted run's weights
        code, out, err = cli("bundle", str(run), "-o", str(tmp_path / "bundle"))
        assert code == 0 and f"(step {VIDEO_STEPS})" in out, err
    weights = [(folder / "G.safetensors").read_bytes() for folder in (tmp_path / "bundle", video_runs.full / "bundle")]
    assert weights[0] == weights[1]

    # Translating and exporting need no recipe: the bundle says what it does (the fakes are not registered here).
    assert "three_players" not in RECIPES and "video_frames" not in SOURCES
    test_frames = video_runs.frames / "testA"
    code, out, err = cli("translate", str(test_frames), "--model", str(tmp_path / "bundle"), "-o", str(tmp_path / "pt"))
    assert code == 0 and "translated 4 image(s) to recoloured" in out, err
    code, out, err = cli("export", str(tmp_path / "bundle"))
    assert code == 0 and "max abs diff vs PyTorch" in out, err  # export checks its parity itself
    onnx = tmp_path / "bundle" / "G_AtoB.onnx"
    code, out, err = cli("translate", str(test_frames), "--model", str(onnx), "-o", str(tmp_path / "onnx"))
    assert code == 0 and "translated 4 image(s)" in out, err
    for frame in sorted(test_frames.iterdir()):
        pt, ort = (np.asarray(Image.open(tmp_path / kind / frame.name), dtype=int) for kind in ("pt", "onnx"))
        assert pt.shape == (40, 40, 3) and np.abs(pt - ort).max() <= 1, frame.name
