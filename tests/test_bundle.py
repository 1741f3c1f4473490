"""The typed bundle: a round trip for every recipe, format-1 bundles still load, bad configs are
one line naming the field; the recipe registry and the shared training state."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclekit.errors import ConfigError, CyclekitError
from cyclekit.inference.bundle import Bundle, NetworkEntry, load_network, read_bundle, write_bundle
from cyclekit.recipes import RECIPES, get_recipe, load_config
from cyclekit.run import build_recipe
from cyclekit.train.state import TrainingState
from tests.bundles import make_bundle, photo, write_format1_bundle
from tests.conftest import write_images
from tests.helpers import cli
from tests.test_pix2pix import write_pairs

TINY_NETS = {
    "gan-ring": ["gan.latent_dim=2", "data.epoch_size=512"],
    "dcgan": ["data.load_size=32", "data.crop_size=32", "model.generator.ngf=4", "model.discriminator.ndf=4",
              "data.batch_size=2", "data.workers=0"],
    "demo": ["data.demo_train=4", "data.demo_test=2", "data.demo_size=32", "data.load_size=32", "data.crop_size=32",
             "model.generator.ngf=4", "model.generator.n_blocks=1", "model.discriminator.ndf=4"],
    "digits-cgan": ["model.generator.ngf=4", "model.discriminator.ndf=4"],
    "digits-acgan": ["model.generator.ngf=4", "model.discriminator.ndf=4"],
    "digits-sgan": ["model.generator.ngf=4", "model.discriminator.ndf=4"],
    "digits-wgan": ["model.generator.ngf=4", "model.discriminator.ndf=4"],
    "digits-began": ["model.generator.n=4", "model.discriminator.n=4", "model.discriminator.h=4"],
    "scenes-stackgan": ["model.stage1_generator.ngf=4", "model.stage2_generator.ngf=4",
                        "model.stage1_discriminator.ndf=4", "model.stage2_discriminator.ndf=4",
                        "data.scenes.train_scenes=64", "data.scenes.test_scenes=8"],
    "facades": ["data.load_size=36", "data.crop_size=32", "model.generator.n_downs=5", "model.generator.ngf=4",
                "model.discriminator.ndf=4", "data.workers=0"],
}  # fmt: skip


@pytest.fixture
def data_roots(tmp_path: Path) -> dict[str, Path]:
    write_images(tmp_path / "folder", 4, size=36)
    return {"dcgan": tmp_path / "folder", "facades": write_pairs(tmp_path / "pairs", 3, 2)}


def test_every_recipe_is_registered_and_has_a_preset():
    presets = {load_config(name).recipe for name in TINY_NETS}
    assert presets == set(RECIPES)
    with pytest.raises(ConfigError, match="recipe: unknown recipe 'stylegan'; known: " + ", ".join(sorted(RECIPES))):
        get_recipe("stylegan")
    code, out, _ = cli("recipes")
    assert code == 0 and [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == list(RECIPES)


@pytest.mark.parametrize("preset", sorted(TINY_NETS))
def test_bundle_round_trip_for_every_recipe(preset: str, tmp_path: Path, data_roots: dict[str, Path], monkeypatch):
    monkeypatch.setenv("CYCLEKIT_CACHE", str(tmp_path / "cache"))
    cfg = load_config(preset, TINY_NETS[preset])
    recipe = build_recipe(cfg, data_root=data_roots.get(preset))
    folder = tmp_path / "bundle"
    recipe.write_bundle(folder, 7, 2)
    bundle = read_bundle(folder)
    expected, modules = recipe.make_bundle(cfg, recipe.state.nets, 7, 2)
    assert dataclasses.replace(bundle, networks=expected.networks) == expected
    assert bundle.recipe == cfg.recipe and (bundle.step, bundle.epoch) == (7, 2)
    assert bool(bundle.translates) != (bundle.samples is not None)  # translates or samples
    for key, entry in bundle.networks.items():
        assert entry.file == f"{key}.safetensors" and len(entry.sha256) == 64
        from safetensors.torch import load_file

        saved = load_file(str(folder / entry.file))
        original = modules[key].state_dict()  # the training nets, or (StackGAN) both generators chained
        assert sorted(saved) == sorted(original)
        assert all(torch.equal(saved[name], tensor.cpu()) for name, tensor in original.items())
        net = load_network(folder, bundle, key)  # rebuilt from the recorded architecture alone
        assert not net.training or bundle.test_time.dropout
    # The written config.json validates against the schema and says nothing it does not know.
    raw = json.loads((folder / "config.json").read_text())
    assert raw["format"] == "cyclekit-bundle" and raw["format_version"] == 2


def test_format_1_bundle_still_loads(tmp_path: Path):
    from cyclekit.inference.translator import Translator

    folder = write_format1_bundle(tmp_path / "old")
    bundle = read_bundle(folder)
    assert bundle.recipe == "cyclegan" and bundle.translates == {"AtoB": "G_AtoB", "BtoA": "G_BtoA"}
    assert (bundle.size_multiple, bundle.min_size, bundle.preprocess) == (4, 8, None)
    t = Translator.load(folder, device="cpu")
    assert sorted(t.targets) == ["A", "B"] and np.asarray(t(photo(30, 22))).shape == (30, 22, 3)
    # and a GAN bundle of format 1
    gan = tmp_path / "gan"
    gan.mkdir()
    (gan / "config.json").write_text(
        json.dumps(
            {
                "format": "cyclekit-bundle",
                "format_version": 1,
                "kind": "gan",
                "latent_dim": 2,
                "channels": None,
                "networks": {
                    "G": {"arch": "mlp_g", "options": {"latent_dim": 2}, "file": "G.safetensors", "sha256": ""}
                },
            }
        )
    )
    assert read_bundle(gan).samples.latent_dim == 2 and read_bundle(gan).samples.output == "points"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(format_version=3), "has bundle format 3; this cyclekit reads up to 2"),
        (lambda c: c.update(format_version="2"), "format_version must be an integer"),
        (lambda c: c.pop("networks"), "networks"),
        (lambda c: c.update(channels="3"), "channels: expected an integer"),
        (lambda c: c.update(std=0), "std must be non-zero"),
        (lambda c: c.update(size_multiple=0), "sizes >= 1"),
        (lambda c: c.update(domains=["A", "B"]), "domains: expected a mapping"),
        (lambda c: c.update(translates={"AtoC": "G_AtoB"}), "translates: unknown direction 'AtoC'"),
        (lambda c: c.update(translates={"AtoB": "G"}), "translates.AtoB: no network 'G'"),
        (lambda c: c.update(preprocess="resize_crop"), "preprocess: unknown mode 'resize_crop'"),
        (lambda c: c.update(colour="red"), "colour: unknown key"),
        (
            lambda c: c["networks"]["G_AtoB"].update(file="../outside.safetensors"),
            "networks.G_AtoB.file must be a file",
        ),
        (lambda c: c["networks"]["G_AtoB"].update(sha256="xyz"), "networks.G_AtoB.sha256 is not a sha256"),
        (lambda c: c["networks"]["G_AtoB"].pop("arch"), "networks.G_AtoB"),
    ],
)
def test_bad_bundle_config_is_one_line_naming_the_field(tmp_path: Path, change, message: str):
    folder = make_bundle(tmp_path / "b")
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CyclekitError, match=message.replace("(", r"\(").replace("'", ".")) as info:
        read_bundle(folder)
    assert "\n" not in str(info.value)
    photo(20, 20).save(tmp_path / "x.png")
    code, _, err = cli("translate", str(tmp_path / "x.png"), "--model", str(folder), "-o", str(tmp_path / "out"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_writer_checks_networks_match(tmp_path: Path):
    bundle = Bundle(recipe="x", networks={"G": NetworkEntry("unet", {})}, translates={"AtoB": "G"})
    with pytest.raises(ValueError, match="do not match"):
        write_bundle(tmp_path, bundle, {})


def test_training_state_refuses_a_checkpoint_missing_parts():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    state = TrainingState({"G": net}, {"opt_g": opt})
    saved = state.state_dict()
    assert sorted(saved) == ["G", "opt_g"] and state.lr() == 1e-3
    with pytest.raises(CyclekitError, match="checkpoint has no opt_g .*another recipe or configuration"):
        state.load_state_dict({"G": saved["G"]})
    fits = r"checkpoint \(G\) does not fit the configured network: weight has shape \[2, 3\] in the file, \[2, 2\] here"
    with pytest.raises(CyclekitError, match=fits):
        state.load_state_dict({"G": torch.nn.Linear(3, 2).state_dict(), "opt_g": saved["opt_g"]})
    with pytest.raises(ValueError, match="unique"):
        TrainingState({"G": net}, {"G": opt})
