"""Recipes own their players: each declares the networks its optimizers update and their paper's
settings, one builder makes the optimizers and schedules of any number of players, and a setting
no player reads is refused in one line. WGAN-GP trains with Adam at 1e-4, betas (0, 0.9)
(Gulrajani et al. 2017, Algorithm 1); an old WGAN-GP run folder, recorded with RMSprop, still
loads and resumes as it trained."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from cyclekit.config import parse_config
from cyclekit.data.sources import SOURCES
from cyclekit.errors import ConfigError
from cyclekit.players import Player
from cyclekit.recipe import Recipe
from cyclekit.recipes import RECIPES, config_from_dict, load_config
from cyclekit.recipes.common import build_players
from cyclekit.recipes.stackgan import StackganRecipe
from cyclekit.run import build_recipe, fingerprint, upgrade_fingerprint
from tests.helpers import cli, one_error

TINY = ["model.generator.ngf=4", "model.discriminator.ndf=4"]


def optimizers(preset: str, *extra: str) -> dict[str, torch.optim.Optimizer]:
    return build_recipe(load_config(preset, [*TINY, *extra])).state.optimizers


# ---------------------------------------------------------------------------------------------
# WGAN and WGAN-GP: the optimizer of each paper


def test_wgan_gp_trains_critic_and_generator_with_adam_1e4_betas_0_09():
    opts = optimizers("digits-wgan-gp")
    assert set(opts) == {"opt_g", "opt_d"}
    for name, opt in opts.items():
        assert type(opt) is torch.optim.Adam, name
        group = opt.state_dict()["param_groups"][0]  # what the checkpoint stores
        assert group["lr"] == 1e-4 and tuple(group["betas"]) == (0.0, 0.9), (name, group)
    # The same with constraint gp set on the clipped preset: the constraint decides the default.
    opts = optimizers("digits-wgan", "wgan.constraint=gp", "model.discriminator.norm=layer")
    assert all(type(o) is torch.optim.Adam and o.param_groups[0]["betas"] == (0.0, 0.9) for o in opts.values())


def test_wgan_with_clipping_keeps_rmsprop_5e5():
    for name, opt in optimizers("digits-wgan").items():
        assert type(opt) is torch.optim.RMSprop, name
        group = opt.state_dict()["param_groups"][0]
        assert group["lr"] == 5e-5 and group["alpha"] == 0.99 and "betas" not in group
    config = load_config("digits-wgan")
    assert (config.optim.beta1, config.optim.beta2, config.options.gp_weight) == (None, None, None)


def test_explicit_optimizer_settings_win_over_the_players_defaults():
    opts = optimizers("digits-wgan-gp", "optim.lr=3e-4", "optim.lr_d=2e-4", "optim.beta1=0.5")
    assert opts["opt_g"].param_groups[0]["lr"] == 3e-4 and opts["opt_d"].param_groups[0]["lr"] == 2e-4
    assert all(o.param_groups[0]["betas"] == (0.5, 0.9) for o in opts.values())
    opts = optimizers("digits-wgan-gp", "optim.kind=rmsprop", "optim.lr=5e-5")
    assert all(type(o) is torch.optim.RMSprop and o.param_groups[0]["lr"] == 5e-5 for o in opts.values())
    assert load_config("digits-wgan", ["optim.kind=adam"]).optim.beta1 == 0.5  # Adam's usual betas otherwise


def test_optimizer_epsilon_is_a_setting_of_both_kinds():
    """optim.eps reaches Adam and RMSprop (PyTorch's 1e-8 unless set); mnist-sgan sets 1e-4, the
    effective epsilon of improved-gan's Adam (1e-8 under the root)."""
    assert all(o.param_groups[0]["eps"] == 1e-8 for o in optimizers("digits-wgan-gp").values())
    assert all(o.param_groups[0]["eps"] == 1e-4 for o in optimizers("digits-wgan-gp", "optim.eps=1e-4").values())
    assert all(o.param_groups[0]["eps"] == 1e-6 for o in optimizers("digits-wgan", "optim.eps=1e-6").values())
    assert load_config("mnist-sgan").optim.eps == 1e-4
    assert load_config("digits-wgan").optim.eps == 1e-8  # recorded in config.yaml as what trained


@pytest.mark.parametrize(
    "preset, settings, error",
    [
        ("digits-wgan", ["optim.beta1=0.9"], "error: optim.beta1: not read by RMSprop (optim.kind rmsprop)"),
        ("digits-wgan", ["optim.beta2=0.99"], "error: optim.beta2: not read by RMSprop"),
        ("digits-wgan-gp", ["optim.kind=rmsprop", "optim.beta1=0.5"], "error: optim.beta1: not read by RMSprop"),
        ("digits-wgan-gp", ["optim.alpha=0.9"], "error: optim.alpha: not read by Adam (optim.kind adam)"),
        ("digits-wgan", ["wgan.gp_weight=5"], "error: wgan.gp_weight: 5.0 is read only with constraint gp"),
        ("digits-wgan", ["optim.alpha=1.5"], "error: optim.alpha: must be in [0, 1)"),
        ("digits-wgan", ["optim.eps=0"], "error: optim.eps: must be in (0, 1)"),
    ],
)
def test_settings_no_player_reads_are_refused_in_one_line(tmp_path: Path, preset: str, settings: list, error: str):
    sets = [a for s in settings for a in ("--set", s)]
    code, _, err = cli("train", preset, "--out", str(tmp_path), "--quiet", *sets)
    assert code == 1 and one_error(err).startswith(error), err
    assert not any(tmp_path.iterdir())  # refused when the config loads, before any run folder


@dataclass(frozen=True)
class _SoloOptions:
    """A one-player recipe's (empty) section."""


class _Solo(Recipe):
    """A recipe with one player (an autoencoder, say): there is no discriminator learning rate."""

    name = "solo"
    description = "one network, one optimizer"
    Options = _SoloOptions
    default_kind = "digits"
    needs = (("image",),)
    networks = {"generator": "the one network"}
    defaults = {"model": {"generator": {"name": "mlp_g"}}}

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        return (Player("g", ("G",)),)

    @classmethod
    def build_networks(cls, config: Any) -> dict[str, torch.nn.Module]:
        return {"G": torch.nn.Linear(2, 2)}

    @classmethod
    def make_bundle(cls, config: Any, nets: Any, step: int, epoch: int) -> Any:
        raise NotImplementedError

    def __init__(self, config: Any, data: Any = None) -> None:
        raise NotImplementedError

    steps_per_epoch = batches = train_step = write_samples = data_summary = __init__  # type: ignore[assignment]


def test_lr_d_in_a_recipe_with_one_player_is_refused():
    recipes = {"solo": _Solo}
    config = parse_config({"recipe": "solo", "optim": {"lr": 1e-3}}, recipes, SOURCES)
    assert (config.optim.lr, config.optim.lr_d) == (1e-3, None)
    with pytest.raises(ConfigError) as info:
        parse_config({"recipe": "solo", "optim": {"lr_d": 1e-4}}, recipes, SOURCES)
    assert str(info.value) == "optim.lr_d: no player of recipe solo reads it; its one player is g (G: optim.lr)"


# ---------------------------------------------------------------------------------------------
# one builder for any number of players


def test_a_third_player_is_one_line_and_the_builder_makes_its_optimizer_and_schedule():
    config = load_config("digits-wgan-gp", ["optim.lr_d=3e-4"])
    nets = {"G": torch.nn.Linear(4, 8), "D": torch.nn.Linear(8, 1), "H": torch.nn.Linear(8, 2)}
    head = Player("h", ("H",))  # CUT's projection head: updated at the generator's rate
    players = (*RECIPES["wgan"].players(config.options), head)
    opts, scheds = build_players(config, players, nets, steps_per_epoch=10)
    assert list(opts) == ["opt_g", "opt_d", "opt_h"] and list(scheds) == ["sched_g", "sched_d", "sched_h"]
    assert [p for g in opts["opt_h"].param_groups for p in g["params"]] == list(nets["H"].parameters())
    assert [o.param_groups[0]["lr"] for o in opts.values()] == [1e-4, 3e-4, 1e-4]
    assert all(type(o) is torch.optim.Adam and o.param_groups[0]["betas"] == (0.0, 0.9) for o in opts.values())
    # A player over two networks (CycleGAN's) steps both; a constant-rate player has no scheduler.
    both = Player("gd", ("G", "D"), schedule="constant")
    opts, scheds = build_players(config, (both,), nets, steps_per_epoch=10)
    assert list(opts["opt_gd"].param_groups[0]["params"]) == [*nets["G"].parameters(), *nets["D"].parameters()]
    assert scheds == {}
    with pytest.raises(ValueError, match="player x: no network Q"):
        build_players(config, (Player("x", ("Q",)),), nets, steps_per_epoch=10)


def test_every_recipe_declares_players_over_its_own_networks():
    for name in ("demo", "facades-small", "dcgan-small", "gan-ring", "digits-cgan", "digits-acgan", "digits-sgan",
                 "digits-wgan", "digits-wgan-gp", "digits-began", "scenes-stackgan"):  # fmt: skip
        config = load_config(name)
        spec = RECIPES[config.recipe]
        players = spec.players(config.options)
        nets = spec.build_networks(config)
        assert sorted(k for p in players for k in p.nets) == sorted(nets), name
    # StackGAN: a generator and a discriminator player per stage, each at a constant rate (the
    # checkpoint's opt_g1, opt_d1, opt_g2, opt_d2, and no schedules).
    stack = StackganRecipe.players(load_config("scenes-stackgan").options)
    assert [(p.name, p.nets, p.lr_key, p.schedule) for p in stack] == [
        ("g1", ("G1",), "lr", "constant"),
        ("d1", ("D1",), "lr_d", "constant"),
        ("g2", ("G2",), "lr", "constant"),
        ("d2", ("D2",), "lr_d", "constant"),
    ]
    assert [p.nets for p in RECIPES["cyclegan"].players(None)] == [("G_AtoB", "G_BtoA"), ("D_A", "D_B")]
    assert load_config("digits-began").optim.lr == 1e-4  # BEGAN's players' default (Berthelot et al. 2017)


# ---------------------------------------------------------------------------------------------
# the preset, and old configs and run folders


def test_the_digits_wgan_gp_preset():
    config = load_config("digits-wgan-gp")
    clipped = load_config("digits-wgan")
    assert config.options.constraint == "gp" and config.options.gp_weight == 10.0
    assert config.model.discriminator["norm"] == "layer"
    assert (config.optim.kind, config.optim.lr, config.optim.beta1, config.optim.beta2) == ("adam", 1e-4, 0.0, 0.9)
    assert config.data.size == clipped.data.size == 16 and config.data.batch_size == clipped.data.batch_size
    assert "about 4 minutes on a 2-core CPU" in config.description


def _old_dump(**wgan: Any) -> dict[str, Any]:
    """A WGAN config.yaml as cyclekit wrote it before players: every optim key, Adam's betas under
    RMSprop too, and gp_weight whatever the constraint."""
    raw = load_config("digits-wgan", TINY).to_dict()
    raw["optim"] = {"kind": "rmsprop", "lr": 5e-05, "lr_d": None, "beta1": 0.5, "beta2": 0.999}
    raw["wgan"].update({"gp_weight": 10.0, **wgan})
    return raw


def test_old_configs_with_recorded_defaults_load_with_a_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, "cyclekit.config"):
        config = config_from_dict(_old_dump())
    assert (config.optim.kind, config.optim.lr, config.optim.beta1, config.optim.alpha) == ("rmsprop", 5e-5, None, 0.99)
    assert config.options.gp_weight is None
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("optim.beta1, optim.beta2: dropped 0.5, 0.999") for m in said), said
    assert any(m.startswith("wgan.gp_weight: dropped 10.0") for m in said), said
    # A config that sets one beta on its own is the user's, not a recorded default: refused.
    raw = _old_dump()
    del raw["optim"]["beta2"]
    with pytest.raises(ConfigError, match=r"^optim.beta1: not read by RMSprop"):
        config_from_dict(raw)


def test_an_old_wgan_gp_run_folder_keeps_rmsprop_and_resumes_bit_exactly(tmp_path: Path):
    """A WGAN-GP run trained before players (RMSprop 5e-5, recorded so in its config.yaml and its
    checkpoint's fingerprint) resumes with the optimizer it trained with, to the same weights as
    a run that never stopped."""
    old = _old_dump(constraint="gp")
    old["model"]["discriminator"]["norm"] = "layer"
    old["train"].update({"epochs": 1, "log_every": 5, "checkpoint_every": 5, "progress": False})
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(old))
    config = config_from_dict(yaml.safe_load(path.read_text()))
    assert config.optim.kind == "rmsprop" and config.optim.lr == 5e-5 and config.options.constraint == "gp"

    said: list[str] = []

    def train(out: str, steps: int, *extra: str) -> Path:
        code, text, err = cli("train", *extra, "--out", str(tmp_path / out), "--name", "r", "--quiet",
                              "--set", f"train.max_steps={steps}")  # fmt: skip
        assert code == 0, err
        said.append(text)
        return tmp_path / out / "r"

    straight = train("a", 10, str(path))
    run = train("b", 5, str(path))
    # Make it the run folder the earlier cyclekit left: its config.yaml and checkpoint fingerprint.
    (run / "config.yaml").write_text(yaml.safe_dump({**old, "name": "r"}))
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=False)
    stored = dict(state["fingerprint"])
    stored.update(version=4, optim=dict(old["optim"]), options={**stored["options"], "gp_weight": 10.0})
    assert upgrade_fingerprint(stored) == fingerprint(config)
    state["fingerprint"] = stored
    torch.save(state, ckpt)
    resumed = train("b", 10, "--resume", str(run))
    assert "resumed at step 5" in said[-1], said[-1]
    assert type(build_recipe(config).state.optimizers["opt_d"]) is torch.optim.RMSprop

    def rows(folder: Path) -> list[dict[str, Any]]:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(r).items() if k != "sec"} for r in lines]

    assert rows(resumed) == rows(straight)
    a, b = (torch.load(x / "checkpoints" / "last.pt", weights_only=True)["recipe"] for x in (straight, resumed))
    assert all(torch.equal(a["D"][k], b["D"][k]) for k in a["D"]) and "alpha" in b["opt_d"]["param_groups"][0]
