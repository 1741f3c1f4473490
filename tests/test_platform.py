"""The platform contracts: data sources as plug-ins (their own config keys, the batch keys they
give, the batch keys a recipe needs), one typed recipe contract, and the loop driven by a tiny
fake recipe (no data, milliseconds: max_steps, resume, divergence)."""

from __future__ import annotations

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
from tests.helpers import cli, one_error

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
