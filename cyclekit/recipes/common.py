"""Small pieces every recipe uses: seeding, network specs, Adam + schedule, a resumable data
order, sample-grid and paired-evaluation helpers."""

from __future__ import annotations

import math
import random
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from cyclekit.config import Config, OptimConfig
from cyclekit.data.folders import PlanDataset
from cyclekit.errors import ConfigError
from cyclekit.gan.schedule import linear_decay_scheduler
from cyclekit.models import init_weights, model_options, resolve_options
from cyclekit.train import distributed
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


def size_needs(arch: str, options: Mapping[str, Any]) -> tuple[int, int]:
    """(size multiple, minimum side) the generator ``arch`` needs, from its built architecture.

    Built on the meta device (no memory) under a forked RNG: building initialises weights, and a
    draw from the global RNG here (e.g. while writing a bundle) would change the dropout masks of
    the following training steps and break exact resume."""
    from cyclekit.models import MODELS

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        net = MODELS[arch].build(resolve_options(arch, options))
    return net_size_needs(net)


def net_size_needs(net: torch.nn.Module) -> tuple[int, int]:
    """(size multiple, minimum side) of a built generator (1, 1 when it declares none)."""
    return int(getattr(net, "size_multiple", 1)), int(getattr(net, "min_size", 1))


def patchgan_min_size(options: Mapping[str, Any]) -> int:
    """Smallest input a PatchGAN gives any output for: n_layers halvings, then two stride-1 4x4
    convs that each remove one pixel."""
    return 3 * 2 ** int(options.get("n_layers", 3))


def check_crop_for_generator(config: Config, arch: str, options: Mapping[str, Any]) -> None:
    """A cropping preprocess must give crops the generator can take: multiples of its size
    multiple (a ResNet: 4; a U-Net: 2**n_downs), at least its minimum side."""
    data = config.data
    if data.preprocess not in ("resize_and_crop", "crop", "scale_width_and_crop"):
        return
    multiple, min_size = size_needs(arch, options)
    crop = data.crop_size
    if crop % multiple == 0 and crop >= min_size:
        return
    why = f"is not a multiple of {multiple}" if crop % multiple else f"is smaller than {min_size} px"
    fix = f"data.crop_size={max(min_size, crop // multiple * multiple)}"
    if arch == "unet":
        # A U-Net halves the image n_downs times: the crop decides how deep it can be.
        depth = max(1, (crop & -crop).bit_length() - 1)  # the largest n with 2**n dividing the crop
        fix += f", or model.generator.n_downs={depth} for {crop} px"
        why += f" (a U-Net with n_downs {options.get('n_downs')} halves it {options.get('n_downs')} times)"
    raise ConfigError(f"data.crop_size: {crop} {why}, which the {arch} generator needs; use {fix}")


def check_image_discriminator(config: Config, arch: str, options: Mapping[str, Any]) -> None:
    """Refuse crops a PatchGAN cannot judge and WGAN-GP with a batch-norm critic."""
    data = config.data
    if arch == "patchgan" and data.preprocess != "none" and data.crop_size < patchgan_min_size(options):
        need = patchgan_min_size(options)
        need_text = str(need) if need < 10**12 else f"3 x 2^{options.get('n_layers')}"  # huge n_layers
        raise ConfigError(
            f"data.crop_size: {data.crop_size} is too small for a PatchGAN with n_layers "
            f"{options.get('n_layers')}; it needs at least {need_text}"
        )
    if config.loss.gan_mode == "wgan-gp" and options.get("norm") == "batch":
        # The gradient penalty is per sample; batch norm couples samples (Gulrajani et al. 2017, Sec. 4).
        raise ConfigError("model.discriminator.norm: wgan-gp needs a discriminator without batch norm")


def adam_with_schedule(
    params: Iterable[torch.nn.Parameter], lr: float, optim: OptimConfig, constant: int, decay: int
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    params = list(params)
    # The fused kernel updates all parameters in one pass: measured 1.035x per CycleGAN step at
    # 64 px on a 2-core CPU (interleaved medians, twice); the for-each variant measured 0.98x, so
    # it stays off. Fused runs on CPU and CUDA float32 only.
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in params)
    opt = torch.optim.Adam(params, lr=lr, betas=(optim.beta1, optim.beta2), fused=True if fused else None)
    return opt, linear_decay_scheduler(opt, constant, decay)


def schedule_steps(config: Config, steps_per_epoch: int) -> tuple[int, int]:
    return config.train.epochs * steps_per_epoch, config.train.decay_epochs * steps_per_epoch


def generator_and_discriminator(
    config: Config, nets: Mapping[str, torch.nn.Module], device: torch.device, steps_per_epoch: int
) -> TrainingState:
    """``nets`` {G, D} on ``device``, initialised as `model.init` says, each with its Adam and lr
    schedule, as the training state {G, D, opt_g, opt_d, sched_g, sched_d}."""
    nets = {k: net.to(device) for k, net in nets.items()}
    for net in nets.values():
        init_weights(net, config.model.init, config.model.init_gain)
    constant, decay = schedule_steps(config, steps_per_epoch)
    optim = config.optim
    opt_g, sched_g = adam_with_schedule(nets["G"].parameters(), optim.lr, optim, constant, decay)
    opt_d, sched_d = adam_with_schedule(nets["D"].parameters(), optim.lr_d or optim.lr, optim, constant, decay)
    return TrainingState(
        nets,
        {"opt_g": opt_g, "opt_d": opt_d},
        {"sched_g": sched_g, "sched_d": sched_d},
        config_keys={"G": "model.generator", "D": "model.discriminator"},
    )


def plan_batches(
    base: Any,
    plan: Sequence[Any],
    batch_size: int,
    start_batch: int,
    workers: int,
    drop_last: bool,
    device: torch.device | None = None,
    epoch: int | None = None,
) -> Iterator[Any]:
    """Batches of `plan` (epoch ``epoch``'s plan of ``base``) from batch `start_batch` on, loaded by
    `workers` processes; for a CUDA ``device`` in pinned memory, so the recipes'
    ``.to(device, non_blocking=True)`` overlaps the copy. In a multi-process run, this rank's
    shard of the plan (see `Distributed.shard`).

    With workers and an ``epoch``, one DataLoader serves the whole run and its worker processes
    persist from epoch to epoch (see `_RunItems`); the batches are the same either way."""
    ctx = distributed.current()
    pin = device is not None and device.type == "cuda"
    if workers > 0 and epoch is not None and hasattr(base, "epoch_plan"):
        per_epoch = ctx.per_rank(len(plan))
        loader, sampler = _persistent_loader(base, per_epoch, batch_size, workers, drop_last, pin, ctx)
        sampler.start = epoch * per_epoch + start_batch * batch_size
        sampler.stop = (epoch + 1) * per_epoch
        return iter(loader)
    items = ctx.shard(plan)[start_batch * batch_size :]
    # A private generator: DataLoader draws a worker base seed when an iterator is created, and
    # from the global RNG that would shift the noise of every later step after a mid-epoch resume.
    loader = DataLoader(
        PlanDataset(base, items),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        drop_last=drop_last,
        persistent_workers=False,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    return iter(loader)


class _RunItems(Dataset):
    """Item ``g`` of a whole run: item ``g % n`` of this rank's shard of epoch ``g // n``'s plan.
    Plans come from (seed, epoch) alone, so each worker process rebuilds them itself: one
    DataLoader, and its workers, serve every epoch."""

    def __init__(self, base: Any, per_epoch: int, rank: int, world: int) -> None:
        self.base, self.per_epoch, self.rank, self.world = base, per_epoch, rank, world
        self._plan: tuple[int, list[Any]] = (-1, [])

    def __len__(self) -> int:
        return 2**62  # indices come from the sampler

    def __getitem__(self, g: int) -> Any:
        epoch, k = divmod(int(g), self.per_epoch)
        if self._plan[0] != epoch:
            shard = distributed.Distributed(self.rank, self.world).shard(self.base.epoch_plan(epoch))
            self._plan = (epoch, shard)
        item = self._plan[1][k]
        return self.base[tuple(item) if isinstance(item, list) else item]


class _RangeSampler(Sampler[int]):
    """Indices start..stop-1, set before each epoch's iterator is made."""

    def __init__(self) -> None:
        self.start = self.stop = 0

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _persistent_loader(
    base: Any, per_epoch: int, batch_size: int, workers: int, drop_last: bool, pin: bool, ctx: Any
) -> tuple[DataLoader, _RangeSampler]:
    key = (per_epoch, batch_size, workers, drop_last, pin, ctx.rank, ctx.world)
    cached = _LOADERS.get(base)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    sampler = _RangeSampler()
    loader = DataLoader(
        _RunItems(base, per_epoch, ctx.rank, ctx.world),
        batch_sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=workers,
        persistent_workers=True,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    _LOADERS[base] = (key, loader, sampler)
    return loader, sampler


# dataset -> (settings, its run-long DataLoader, sampler); weak, so a dataset's loader (and its
# worker processes) go when the dataset does.
_LOADERS: weakref.WeakKeyDictionary[Any, tuple[Any, DataLoader, _RangeSampler]] = weakref.WeakKeyDictionary()


def n_batches(n_items: int, batch_size: int, drop_last: bool) -> int:
    """Steps per epoch over ``n_items``: of this rank's shard in a multi-process run."""
    n_items = distributed.current().per_rank(n_items)
    return n_items // batch_size if drop_last else math.ceil(n_items / batch_size)


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
