"""Config: presets load, overrides apply, and every mistake names its key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cyclekit.config import Config, apply_overrides, dump_config, list_presets
from cyclekit.errors import ConfigError
from cyclekit.recipes import RECIPES, load_config


def test_every_preset_loads():
    names = list_presets()
    assert {"gan-ring", "dcgan", "mnist-dcgan", "horse2zebra", "demo", "facades", "maps"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name


def test_reference_defaults():
    cfg = load_config("horse2zebra")
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
    opts = cfg.options
    assert (opts.gan_mode, opts.lambda_cycle, opts.lambda_identity, opts.d_scale) == ("lsgan", 10.0, 0.5, 0.5)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.train.epochs, cfg.train.decay_epochs, opts.pool_size) == (100, 100, 50)


def test_pix2pix_reference_defaults():
    """Isola et al. 2017: vanilla GAN + L1 x 100, Adam 2e-4 (0.5, 0.999), 100 + 100 epochs, batch 1,
    286 -> 256 crop + flip, unet_256 with batch norm and dropout, 70x70 PatchGAN."""
    from cyclekit.recipes import config_from_dict

    cfg = config_from_dict({"recipe": "pix2pix"})
    assert cfg.data.kind == "paired" and cfg.options.gan_mode == "vanilla"
    assert (cfg.options.lambda_l1, cfg.options.d_scale, cfg.options.direction) == (100.0, 0.5, "AtoB")
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.train.epochs, cfg.train.decay_epochs, cfg.data.batch_size) == (100, 100, 1)
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.flip) == (286, 256, True)
    assert cfg.model.generator == {"name": "unet", "n_downs": 8}
    assert cfg.model.discriminator == {"name": "patchgan", "norm": "batch"}
    facades = load_config("facades")
    assert facades.options.direction == "BtoA" and facades.data.dataset == "pix2pix-facades"
    assert load_config("maps").options.direction == "AtoB"


def test_overrides_apply_with_types():
    cfg = load_config(
        "horse2zebra",
        ["optim.lr=1e-4", "train.epochs=3", "data.flip=false", "model.generator.ngf=32", "train.max_steps=10"],
    )
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.train.epochs == 3 and cfg.train.max_steps == 10
    assert cfg.data.flip is False
    assert cfg.model.generator["ngf"] == 32


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "train.epoch: unknown key"),
        ("optim.d_steps=5", "optim.d_steps: not used by recipe cyclegan (it is gan.d_steps)"),
        ("model.latent_dim=5", "model.latent_dim: not used by recipe cyclegan (it is gan.latent_dim)"),
        ("gan.pack=2", "gan: options of recipe gan, but this config's recipe is cyclegan"),
        ("pix2pix.lambda_l1=1", "pix2pix: options of recipe pix2pix, but"),
        ("cyclegan.lambda_cycle=x", "cyclegan.lambda_cycle: expected a number"),
        ("cyclegan.pool_size=-1", "cyclegan.pool_size: must be >= 0"),
        ("cyclegan.pool=1", "cyclegan.pool: unknown key"),
        ("data.epoch_size=5", "data.epoch_size: not used with data.kind unpaired (read by: ring)"),
        ("data.layout=folders", "data.layout: not used with data.kind unpaired (read by: paired)"),
        ("model.generator.ngff=8", "model.generator.ngff: unknown option for 'resnet'"),
        ("model.generator.n_blocks=-1", "model.generator.n_blocks: must be >= 0"),
        ("model.discriminator.name=nope", "model.discriminator: unknown model 'nope'"),
        ("data.crop_size=16", "data.crop_size: 16 is too small for a PatchGAN"),
        (
            "recipe=pix3pix",
            "recipe: unknown recipe 'pix3pix' (did you mean pix2pix?); known: " + ", ".join(sorted(RECIPES)),
        ),
        ("optim.lr=.nan", "optim.lr: must be a finite number"),
        ("traing.epochs=3", "traing: unknown key"),
        ("train.epochs=three", "train.epochs: expected an integer"),
        ("data.flip=maybe", "data.flip: expected true or false"),
        ("optim.lr=-1", "optim.lr: must be > 0"),
        ("data.crop_size=300", "data.crop_size: 300 is larger than load_size 286"),
        ("cyclegan.gan_mode=wgan", "cyclegan.gan_mode: expected one of"),
        ("data.kind=ring", "data.kind: recipe cyclegan trains on batches of A, B; the ring source gives points"),
        ("data.channels=2", "data.channels: must be 1 or 3"),
        ("train", "--set train: expected KEY=VALUE"),
        ("train.epochs.x=1", "train.epochs is not a section"),
        ("model.generator.name=null", "model.generator.name: required"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("horse2zebra", [override])


def test_contradictions_are_caught():
    with pytest.raises(ConfigError, match="wgan-gp needs a discriminator without batch norm"):
        load_config("dcgan", ["gan.gan_mode=wgan-gp"])
    with pytest.raises(ConfigError, match="data.crop_size: 100 is not a multiple of 256"):
        load_config("facades", ["data.crop_size=100"])
    with pytest.raises(ConfigError, match="data.preprocess: none keeps image sizes"):
        load_config("facades", ["data.preprocess=none"])
    with pytest.raises(ConfigError, match="gan.pack: data.batch_size 256 is not divisible by pack 3"):
        load_config("gan-ring", ["gan.pack=3"])


@pytest.mark.parametrize(
    "preset, key, owner",
    [
        ("gan-ring", "loss.lambda_cycle=99", "cyclegan.lambda_cycle"),
        ("gan-ring", "train.pool_size=7", "cyclegan.pool_size"),
        ("demo", "optim.d_steps=5", "gan.d_steps"),
        ("facades", "loss.lambda_identity=1", "cyclegan.lambda_identity"),
        ("facades", "model.pack=2", "gan.pack"),
    ],
)
def test_a_key_of_another_recipe_is_refused_naming_its_owner(preset, key, owner):
    with pytest.raises(ConfigError, match=rf"{key.split('=')[0]}: not used by recipe \w+ \(it is {owner}"):
        load_config(preset, [key])


@pytest.mark.parametrize(
    "preset, section",
    [("gan-ring", "cyclegan"), ("gan-ring", "pix2pix"), ("demo", "gan"), ("demo", "pix2pix"), ("facades", "cyclegan")],
)
def test_an_unused_recipe_section_is_refused_for_each_recipe(preset, section):
    with pytest.raises(ConfigError, match=f"{section}: options of recipe {section}, but this config's recipe is"):
        load_config(preset, [f"{section}.d_scale=1"])


@pytest.mark.parametrize(
    "preset, key",
    [
        ("gan-ring", "data.domain_a=x"),
        ("gan-ring", "data.crop_size=32"),
        ("demo", "data.recursive=true"),
        ("facades", "data.demo_size=8"),
        ("dcgan", "data.pair_suffixes=[a, b]"),
    ],
)
def test_data_keys_the_data_kind_does_not_read_are_refused(preset, key):
    with pytest.raises(ConfigError, match=rf"{key.split('=')[0]}: not used with data.kind"):
        load_config(preset, [key])


def test_old_locations_of_recipe_keys_move_with_a_warning(caplog):
    with caplog.at_level("WARNING"):
        cfg = load_config("demo", ["loss.lambda_cycle=7", "train.pool_size=3"])
    assert (cfg.options.lambda_cycle, cfg.options.pool_size) == (7.0, 3)
    assert "loss.lambda_cycle is now cyclegan.lambda_cycle" in caplog.text


def test_a_cyclekit_0_1_config_dump_still_loads(tmp_path: Path):
    """A runs/<name>/config.yaml written before recipe sections (every key, flat sections)."""
    old = tmp_path / "config.yaml"
    old.write_text(
        "recipe: cyclegan\nname: old\nseed: 0\n"
        "data: {kind: unpaired, dataset: horse2zebra, epoch_size: 8192, recursive: false, demo_size: 64}\n"
        "model: {generator: {name: resnet}, discriminator: {name: patchgan}, init: normal, init_gain: 0.02, "
        "latent_dim: 100, pack: 1}\n"
        "loss: {gan_mode: lsgan, lambda_cycle: 10.0, lambda_identity: 0.5, gp_weight: 10.0, d_scale: 0.5}\n"
        "optim: {lr: 0.0002, beta1: 0.5, beta2: 0.999, d_steps: 1}\n"
        "train: {epochs: 100, decay_epochs: 100, pool_size: 50}\n"
    )
    cfg = load_config(str(old))
    assert cfg.options.pool_size == 50 and cfg.options.d_scale == 0.5 and cfg.data.dataset == "horse2zebra"


def test_model_options_fail_before_any_data_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A bad network option is a config error at load time: no dataset is located, scanned or fetched."""
    import cyclekit.data.download as download

    def no_data(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("the dataset was touched")

    monkeypatch.setattr(download, "find_dataset", no_data)
    monkeypatch.setattr(download, "fetch_dataset", no_data)
    from tests.helpers import cli

    code, _, err = cli("train", "horse2zebra", "--set", "model.generator.ngff=8", "--out", str(tmp_path))
    assert code == 1 and err.strip() == (
        "error: model.generator.ngff: unknown option for 'resnet' (did you mean ngf?); valid: in_channels, "
        "out_channels, ngf, "
        "n_blocks, norm, padding, dropout, upsample"
    )
    assert not (tmp_path / "horse2zebra").exists()


def test_unknown_preset_lists_known(tmp_path: Path):
    with pytest.raises(
        ConfigError, match=r"unknown preset 'horse2zebr' \(did you mean horse2zebra\?\); known presets: "
    ):
        load_config("horse2zebr")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_presets_ship_inside_the_package():
    import cyclekit.config

    assert cyclekit.config.PRESET_DIR == Path(cyclekit.config.__file__).parent / "presets"
    assert (cyclekit.config.PRESET_DIR / "demo.yaml").is_file()


def test_bad_yaml_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(str(top))


@pytest.mark.parametrize("preset", ["gan-ring", "demo", "facades", "dcgan"])
def test_dump_round_trip(tmp_path: Path, preset: str):
    cfg = load_config(preset, ["seed=5", "optim.lr=3e-4"])
    path = tmp_path / "config.yaml"
    dump_config(cfg, path)
    again = load_config(str(path))
    assert again == cfg
    assert isinstance(again, Config)
    text = path.read_text()
    assert f"\n{cfg.recipe}:\n" in text  # the recipe's own section, under its name
    assert "epoch_size" not in text or cfg.data.kind == "ring"  # only the data kind's keys


def test_apply_overrides_does_not_mutate_input():
    raw = {"train": {"epochs": 1}}
    out = apply_overrides(raw, ["train.epochs=2", "new.section.key=1"])
    assert raw == {"train": {"epochs": 1}} and out["train"]["epochs"] == 2
    assert out["new"]["section"]["key"] == 1


# --------------------------------------------------------------------------------------------
# loss options live in the recipe's section; network slots are the recipe's


def test_the_old_loss_section_moves_into_the_recipe_section(caplog: pytest.LogCaptureFixture):
    with caplog.at_level("WARNING", logger="cyclekit.config"):
        cfg = load_config("demo", ["loss.gan_mode=vanilla", "loss.gp_weight=5"])
    assert (cfg.options.gan_mode, cfg.options.gp_weight) == ("vanilla", 5.0)
    assert "loss.gan_mode is now cyclegan.gan_mode" in caplog.text
    assert "loss" not in cfg.to_dict() and cfg.to_dict()["cyclegan"]["gan_mode"] == "vanilla"
    # wgan's penalty weight moves too (read with the gradient penalty); its objective has no gan_mode
    assert load_config("digits-wgan-gp", ["loss.gp_weight=3"]).options.gp_weight == 3.0
    with pytest.raises(ConfigError, match=r"loss.gan_mode: not used by recipe wgan \(it is cyclegan.gan_mode"):
        load_config("digits-wgan", ["loss.gan_mode=hinge"])
    with pytest.raises(ConfigError, match=r"loss.focal: unknown key; loss options live in the recipe's section"):
        load_config("demo", ["loss.focal=2"])


def test_an_old_run_folder_keeps_loading_with_the_loss_values_it_held():
    """Run folders written before the move hold loss.gan_mode / loss.gp_weight even for recipes
    that never read them (sgan: vanilla, cgan: gp_weight 10): those exact values are dropped,
    anything else is refused, since the recipe would ignore it."""
    from cyclekit.recipes import config_from_dict

    old = {"recipe": "sgan", "loss": {"gan_mode": "vanilla", "gp_weight": 10.0}}
    assert config_from_dict(old).recipe == "sgan"
    with pytest.raises(ConfigError, match="loss.gan_mode: not used by recipe sgan"):
        config_from_dict({"recipe": "sgan", "loss": {"gan_mode": "lsgan"}})
    cfg = config_from_dict({"recipe": "cgan", "loss": {"gan_mode": "lsgan", "gp_weight": 10.0}})
    assert cfg.options.gan_mode == "lsgan"
    with pytest.raises(ConfigError, match="loss.gp_weight: not used by recipe cgan"):
        config_from_dict({"recipe": "cgan", "loss": {"gp_weight": 1.0}})


def test_a_checkpoint_fingerprint_of_the_old_loss_layout_upgrades():
    from cyclekit.run import fingerprint, upgrade_fingerprint

    cfg = load_config("demo")
    now = fingerprint(cfg)
    options = dict(now["options"])
    v3 = {**now, "version": 3, "options": options, "loss": {"gan_mode": options.pop("gan_mode"), "gp_weight": 10.0}}
    del options["gp_weight"]
    assert upgrade_fingerprint(v3) == now
    v3["loss"]["gan_mode"] = "hinge"
    assert upgrade_fingerprint(v3) != now


def test_network_slots_are_the_recipes():
    from cyclekit.recipes import RECIPES, config_from_dict

    assert all(set(r.networks) == {"generator", "discriminator"} for n, r in RECIPES.items() if n != "stackgan")
    stages = {f"stage{k}_{part}" for k in (1, 2) for part in ("generator", "discriminator")}
    assert set(RECIPES["stackgan"].networks) == stages
    cfg = load_config("demo")
    assert cfg.model.generator["name"] == "resnet" and set(cfg.model.nets) == {"generator", "discriminator"}
    assert list(cfg.to_dict()["model"]) == ["generator", "discriminator", "init", "init_gain"]
    with pytest.raises(ConfigError, match=r"model.stage2: not a network of recipe cyclegan; valid keys: generator"):
        load_config("demo", ["model.stage2.name=resnet"])
    with pytest.raises(ConfigError, match=r"model.generatr: not a network of recipe cyclegan \(did you mean"):
        load_config("demo", ["model.generatr.ngf=8"])
    with pytest.raises(ConfigError, match=r"model.discriminator: expected a network name and its options"):
        load_config("demo", ["model.discriminator=patchgan"])
    with pytest.raises(ConfigError, match=r"model.init_gain: must be > 0"):
        config_from_dict({"recipe": "gan", "model": {"init_gain": 0}})
