"""Config: presets load, overrides apply, and every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclekit.config import Config, apply_overrides, dump_config, list_presets, load_config
from cyclekit.errors import ConfigError


def test_every_preset_loads():
    names = list_presets()
    assert {"gan-ring", "dcgan", "mnist-dcgan", "horse2zebra", "demo"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name


def test_reference_defaults():
    cfg = load_config("horse2zebra")
    assert (cfg.data.load_size, cfg.data.crop_size, cfg.data.batch_size) == (286, 256, 1)
    assert (cfg.loss.gan_mode, cfg.loss.lambda_cycle, cfg.loss.lambda_identity) == ("lsgan", 10.0, 0.5)
    assert (cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 0.5, 0.999)
    assert (cfg.train.epochs, cfg.train.decay_epochs, cfg.train.pool_size) == (100, 100, 50)


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
        ("traing.epochs=3", "traing: unknown key"),
        ("train.epochs=three", "train.epochs: expected an integer"),
        ("data.flip=maybe", "data.flip: expected true or false"),
        ("optim.lr=-1", "optim.lr: must be > 0"),
        ("data.crop_size=300", "data.crop_size: 300 is larger than data.load_size 286"),
        ("loss.gan_mode=wgan", "loss.gan_mode: expected one of"),
        ("data.channels=2", "data.channels: must be 1 or 3"),
        ("train", "--set train: expected KEY=VALUE"),
        ("train.epochs.x=1", "train.epochs is not a section"),
        ("model.generator.name=null", "model.generator.name: required"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config("horse2zebra", [override])


def test_contradictions_are_caught():
    with pytest.raises(ConfigError, match="data.kind: recipe cyclegan"):
        load_config("horse2zebra", ["data.kind=ring"])
    with pytest.raises(ConfigError, match="wgan-gp needs a discriminator without batch norm"):
        load_config("dcgan", ["loss.gan_mode=wgan-gp"])


def test_unknown_preset_lists_known(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown preset 'horse2zebr'; known presets: .*horse2zebra"):
        load_config("horse2zebr")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_without_presets_folder_asks_for_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import cyclekit.config

    monkeypatch.setattr(cyclekit.config, "CONFIG_DIR", tmp_path / "configs")
    with pytest.raises(ConfigError, match="no presets in .*configs; pass a YAML config path"):
        load_config("horse2zebra")


def test_bad_yaml_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(str(top))


def test_dump_round_trip(tmp_path: Path):
    cfg = load_config("gan-ring", ["seed=5", "optim.lr=3e-4"])
    path = tmp_path / "config.yaml"
    dump_config(cfg, path)
    again = load_config(str(path))
    assert again == cfg
    assert isinstance(again, Config)


def test_apply_overrides_does_not_mutate_input():
    raw = {"train": {"epochs": 1}}
    out = apply_overrides(raw, ["train.epochs=2", "new.section.key=1"])
    assert raw == {"train": {"epochs": 1}} and out["train"]["epochs"] == 2
    assert out["new"]["section"]["key"] == 1
