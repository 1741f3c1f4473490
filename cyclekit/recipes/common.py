"""Small pieces every recipe uses: seeding, network specs, optimizers + schedule, sample-grid and
paired-evaluation helpers. (The resumable data order is `cyclekit.train.batches`.)"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.schedule import linear_decay_scheduler
from cyclekit.models import capabilities, init_weights, model_options
from cyclekit.players import Player, Settings
from cyclekit.players import generator_and_discriminator as default_players
from cyclekit.train.state import TrainingState

N_FIXED = 4  # test images (pairs) per side in the sample grids of the translation recipes


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def net_spec(config: Config, part: str, **fill: Any) -> tuple[str, dict[str, Any]]:
    """(arch, all options resolved) of ``model.<part>``; ``fill`` supplies what the data fixes
    (channels, image size, ...) unless the config sets it. Raises ConfigError naming the key."""
    spec = dict(getattr(config.model, part))
    arch = spec.pop("name")
    for key, value in fill.items():
        spec.setdefault(key, value)
    return arch, model_options(arch, spec, key=f"model.{part}")


def net_size_needs(net: torch.nn.Module) -> tuple[int, int]:
    """(size multiple, minimum side) of a built generator (1, 1 when it declares none)."""
    return int(getattr(net, "size_multiple", 1)), int(getattr(net, "min_size", 1))


def check_crop_for_generator(config: Config, arch: str, options: Mapping[str, Any]) -> None:
    """A cropping preprocess must give crops the generator can take: multiples of its size
    multiple (a ResNet: 4; a U-Net: 2**n_downs), at least its minimum side."""
    data = config.data
    if data.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return
    caps = capabilities(arch, options, key="model.generator")
    multiple, min_size = caps.size_multiple, caps.min_size
    crop = data.crop_size
    if crop % multiple == 0 and crop >= min_size:
        return
    why = f"is not a multiple of {multiple}" if crop % multiple else f"is smaller than {min_size} px"
    fix = f"data.crop_size={max(min_size, crop // multiple * multiple)}"
    if caps.depth_option is not None:
        # A network whose depth is an option (a U-Net's n_downs) halves the image that many times:
        # the crop decides how deep it can be.
        opt, n = caps.depth_option, options.get(caps.depth_option)
        depth = max(1, (crop & -crop).bit_length() - 1)  # the largest n with 2**n dividing the crop
        fix += f", or model.generator.{opt}={depth} for {crop} px"
        why += f" (a {caps.label} with {opt} {n} halves it {n} times)"
    raise ConfigError(f"data.crop_size: {crop} {why}, which the {arch} generator needs; use {fix}")


def check_image_discriminator(config: Config, arch: str, options: Mapping[str, Any], gan_mode: str) -> None:
    """Refuse crops smaller than the discriminator's declared minimum side (a PatchGAN's: n_layers
    halvings, then two stride-1 4x4 convs that each remove one pixel) and WGAN-GP with a batch-norm
    critic."""
    data = config.data
    caps = capabilities(arch, options, key="model.discriminator")
    need = caps.min_size
    if data.preprocess != "none" and data.crop_size < need:
        what = f"the {arch} discriminator"
        if caps.depth_option is not None:
            what = f"a {caps.label} with {caps.depth_option} {options.get(caps.depth_option)}"
        need_text = str(need) if need < 10**12 else f"more than 2^{need.bit_length() - 1}"  # absurd depths
        raise ConfigError(f"data.crop_size: {data.crop_size} is too small for {what}; it needs at least {need_text}")
    if gan_mode == "wgan-gp" and options.get("norm") == "batch":
        # The gradient penalty is per sample; batch norm couples samples (Gulrajani et al. 2017, Sec. 4).
        raise ConfigError("model.discriminator.norm: wgan-gp needs a discriminator without batch norm")


def make_optimizer(params: Iterable[torch.nn.Parameter], settings: Settings) -> torch.optim.Optimizer:
    """Adam or RMSprop, as ``settings`` (one player's, `OptimConfig.settings`) say."""
    params = list(params)
    if settings.kind == "rmsprop":
        assert settings.alpha is not None
        return torch.optim.RMSprop(params, lr=settings.lr, alpha=settings.alpha, eps=settings.eps)
    assert settings.betas is not None
    # The fused kernel updates all parameters in one pass: measured 1.035x per CycleGAN step at
    # 64 px on a 2-core CPU (interleaved medians, twice); the for-each variant measured 0.98x, so
    # it stays off. Fused runs on CPU and CUDA float32 only.
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    return torch.optim.Adam(
        params, lr=settings.lr, betas=settings.betas, eps=settings.eps, fused=True if fused else None
    )


def schedule_steps(config: Config, steps_per_epoch: int) -> tuple[int, int]:
    return config.train.epochs * steps_per_epoch, config.train.decay_epochs * steps_per_epoch


def build_players(
    config: Config, players: Sequence[Player], nets: Mapping[str, torch.nn.Module], steps_per_epoch: int
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.optim.lr_scheduler.LambdaLR]]:
    """The optimizers (``opt_<player>``) and lr schedules (``sched_<player>``, for players with the
    linear schedule: train.epochs constant, then train.decay_epochs down to zero) of any number of
    players, each over the parameters of its networks in the order it names them, with the
    settings `config.optim` resolves for it."""
    constant, decay = schedule_steps(config, steps_per_epoch)
    optimizers: dict[str, torch.optim.Optimizer] = {}
    schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
    for player in players:
        missing = [k for k in player.nets if k not in nets]
        if missing:
            raise ValueError(f"player {player.name}: no network {missing[0]} (networks: {', '.join(nets)})")
        params = [p for k in player.nets for p in nets[k].parameters()]
        opt = optimizers[f"opt_{player.name}"] = make_optimizer(params, config.optim.settings(player))
        if player.schedule == "linear":
            schedulers[f"sched_{player.name}"] = linear_decay_scheduler(opt, constant, decay)
    return optimizers, schedulers


def players_state(
    config: Config,
    players: Sequence[Player],
    nets: Mapping[str, torch.nn.Module],
    device: torch.device,
    steps_per_epoch: int,
    extras: Mapping[str, Any] | None = None,
    config_keys: Mapping[str, str] | None = None,
) -> TrainingState:
    """``nets`` on ``device``, initialised as `model.init` says, with the optimizers and schedules
    of ``players`` (`build_players`), as one training state."""
    nets = {k: net.to(device) for k, net in nets.items()}
    for net in nets.values():
        init_weights(net, config.model.init, config.model.init_gain)
    optimizers, schedulers = build_players(config, players, nets, steps_per_epoch)
    return TrainingState(nets, optimizers, schedulers, extras, config_keys=config_keys)


def generator_and_discriminator(
    config: Config,
    nets: Mapping[str, torch.nn.Module],
    device: torch.device,
    steps_per_epoch: int,
    players: Sequence[Player] | None = None,
) -> TrainingState:
    """``nets`` {G, D} with their players (by default ``g`` and ``d``, `Recipe.players`) as the
    training state {G, D, opt_g, opt_d, sched_g, sched_d}."""
    return players_state(
        config,
        players if players is not None else default_players(),
        nets,
        device,
        steps_per_epoch,
        config_keys={"G": "model.generator", "D": "model.discriminator"},
    )


@torch.no_grad()
def run_eval(net: torch.nn.Module, images: Sequence[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """``net`` on each CxHxW image alone (batch 1, as at test time; sizes may differ), in eval
    mode, restoring its mode. Returns CxHxW CPU tensors."""
    was = net.training
    net.eval()
    try:
        return [net(x.unsqueeze(0).to(device)).cpu()[0] for x in images]
    finally:
        net.train(was)


def save_rows(rows: Sequence[torch.Tensor], path: Path, columns: int) -> list[Path]:
    """Save CxHxW images as a grid ``columns`` wide; differing sizes (preprocess none) are padded."""
    from cyclekit.data.images import save_grid

    if len({tuple(t.shape) for t in rows}) > 1:
        h = max(t.shape[1] for t in rows)
        w = max(t.shape[2] for t in rows)
        rows = [F.pad(t, (0, w - t.shape[2], 0, h - t.shape[1]), value=-1.0) for t in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_grid([torch.stack(list(rows))], path, nrow=columns)
    return [path]
