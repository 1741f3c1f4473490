"""Unconditional GANs: the MLP GAN of Goodfellow et al. 2014 and DCGAN (Radford et al. 2016).

One step: update D on a real batch and a generated one, then update G through D, using the GAN
core's loss and step helpers (the same ones the CycleGAN recipe uses).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cyclekit.bundle import save_bundle
from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.ring import sample_ring, save_samples, score_ring
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError, DataError
from cyclekit.gan.losses import check_mode
from cyclekit.gan.pack import Packed
from cyclekit.gan.steps import discriminator_loss, generator_adversarial_loss, optimizer_step
from cyclekit.models import build_model, init_weights, model_options
from cyclekit.recipes.common import adam_with_schedule, n_batches, plan_batches, schedule_steps

N_SAMPLES = 64  # images in a sample grid
N_RING_SAMPLES = 2000  # points in a ring scatter / score


class GanRecipe:
    """Vanilla GAN / DCGAN on the 2-D ring, an image folder, or MNIST."""

    def __init__(self, config: Config, data_root: Path | None = None, cache_dir: Path | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.train.device)
        data = config.data
        check_mode(config.loss.gan_mode)
        self.image_shape: tuple[int, int, int] | None = None
        if data.kind == "ring":
            self.dataset = None
            self.n_items = data.epoch_size
        elif data.kind == "folder":
            self.dataset = _image_folder(config, data_root)
            self.n_items = len(self.dataset)
            self.image_shape = (data.channels, data.crop_size, data.crop_size)
        else:  # mnist
            self.dataset = _mnist(config, cache_dir)
            self.n_items = len(self.dataset)
            self.image_shape = (1, 28, 28)
        if self.n_items < data.batch_size:
            raise ConfigError(f"data.batch_size: {data.batch_size} is larger than the dataset ({self.n_items} samples)")
        self.g_arch, self.g_opts = _net_spec(config, "generator", self.image_shape)
        self.d_arch, self.d_opts = _net_spec(config, "discriminator", self.image_shape)
        self.G = build_model(self.g_arch, self.g_opts, key="model.generator").to(self.device)
        self.D = build_model(self.d_arch, self.d_opts, key="model.discriminator").to(self.device)
        self.packed_d = Packed(self.D, config.model.pack)
        init_weights(self.G, config.model.init, config.model.init_gain)
        init_weights(self.D, config.model.init, config.model.init_gain)
        constant, decay = schedule_steps(config, self.steps_per_epoch())
        self.opt_g, self.sched_g = adam_with_schedule(
            self.G.parameters(), config.optim.lr, config.optim, constant, decay
        )
        self.opt_d, self.sched_d = adam_with_schedule(
            self.D.parameters(), config.optim.lr_d or config.optim.lr, config.optim, constant, decay
        )
        # Fixed noise for samples, from its own generator so sampling never moves the training RNG.
        gen = torch.Generator().manual_seed(derive_seed(config.seed, 7))
        n = N_RING_SAMPLES if self.image_shape is None else N_SAMPLES
        self.fixed_z = torch.randn(n, config.model.latent_dim, generator=gen)

    # -- loop protocol --------------------------------------------------------------------------

    def steps_per_epoch(self) -> int:
        return n_batches(self.n_items, self.config.data.batch_size, drop_last=True)

    def batches(self, epoch: int, start: int) -> Iterator[torch.Tensor]:
        data, seed = self.config.data, self.config.seed
        if self.dataset is None:
            for i in range(start, self.steps_per_epoch()):
                gen = torch.Generator().manual_seed(derive_seed(seed, epoch, i))
                yield sample_ring(data.batch_size, gen)
            return
        plan = self.dataset.epoch_plan(epoch)
        yield from plan_batches(self.dataset, plan, data.batch_size, start, data.workers, drop_last=True)

    def train_step(self, real: torch.Tensor, step: int) -> dict[str, float]:
        cfg = self.config
        real = real.to(self.device)
        n = real.shape[0]
        for _ in range(cfg.optim.d_steps):
            fake = self.G(torch.randn(n, cfg.model.latent_dim, device=self.device))
            loss_d, parts = discriminator_loss(
                self.packed_d, real, fake, cfg.loss.gan_mode, cfg.loss.gp_weight, scale=cfg.loss.d_scale
            )
            optimizer_step(self.opt_d, loss_d)
        loss_g = generator_adversarial_loss(self.packed_d, fake, cfg.loss.gan_mode)
        optimizer_step(self.opt_g, loss_g)
        self.sched_g.step()
        self.sched_d.step()
        out = {"loss_D": loss_d.item(), "loss_G": loss_g.item(), "D_real": parts["real"], "D_fake": parts["fake"]}
        if "gp" in parts:
            out["gp"] = parts["gp"]
        return out

    def lr(self) -> float:
        return self.opt_g.param_groups[0]["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "sched_d": self.sched_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.sched_g.load_state_dict(state["sched_g"])
        self.sched_d.load_state_dict(state["sched_d"])

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        was_training = self.G.training
        self.G.eval()
        try:
            return self.G(z.to(self.device)).cpu()
        finally:
            self.G.train(was_training)

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        path = folder / f"step_{step:07d}.png"
        save_samples(self.generate(self.fixed_z), path)
        return [path]

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        meta = {
            "kind": "gan",
            "latent_dim": self.config.model.latent_dim,
            "step": step,
            "epoch": epoch,
            "data": self.config.data.kind,
            "channels": self.image_shape[0] if self.image_shape else None,
        }
        save_bundle(folder, meta, {"G": (self.g_arch, self.g_opts, self.G)})

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """Ring: mode coverage / sample quality of the fixed-noise samples, saved as eval.json."""
        if self.image_shape is not None:
            return {}
        score = score_ring(self.generate(self.fixed_z))
        result = {
            "modes_covered": score.modes_covered,
            "of_modes": 8,
            "high_quality": round(score.high_quality, 4),
            "n_samples": score.n_samples,
        }
        (run_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        return result


def _net_spec(config: Config, part: str, image_shape: tuple[int, int, int] | None) -> tuple[str, dict]:
    """Fill in the sizes the data fixes (latent size, channels, image size) unless set explicitly."""
    spec = dict(getattr(config.model, part))
    arch = spec.pop("name")
    if arch.startswith("dcgan") and image_shape is not None:
        spec.setdefault("channels", image_shape[0])
        spec.setdefault("image_size", image_shape[1])
    if arch in ("dcgan_g", "mlp_g"):
        spec.setdefault("latent_dim", config.model.latent_dim)
    m = config.model.pack
    if arch.startswith("mlp") and image_shape is not None:
        shape = list(image_shape)
        if part == "discriminator":
            shape[0] *= m  # packed samples arrive side by side in the channel axis
        spec.setdefault("image_shape", shape)
    elif arch == "mlp_d":
        spec.setdefault("in_features", 2 * m)
    if arch == "dcgan_d" and m > 1:
        spec["channels"] = spec["channels"] * m
    return arch, model_options(arch, spec, key=f"model.{part}")


def _image_folder(config: Config, data_root: Path | None) -> Any:
    from cyclekit.data.folders import ImageFolder
    from cyclekit.data.transforms import build_transform

    root = data_root or (Path(config.data.root) if config.data.root else None)
    if root is None:
        raise DataError("this preset trains on an image folder: pass --data-root DIR (or set data.root)")
    data = config.data
    transform = build_transform(data.preprocess, data.load_size, data.crop_size, data.flip, data.channels)
    return ImageFolder(
        root, transform, channels=data.channels, strict=data.strict, recursive=data.recursive, seed=config.seed
    )


class _MnistDataset(torch.utils.data.Dataset):
    def __init__(self, images: Any, seed: int) -> None:
        self.images = torch.as_tensor(images)
        self.seed = seed

    def epoch_plan(self, epoch: int) -> list[tuple[int, int]]:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return [(i, 0) for i in torch.randperm(len(self.images), generator=gen).tolist()]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        index = item[0] if isinstance(item, tuple) else item
        return self.images[index].float().div(127.5).sub(1.0).unsqueeze(0)


def _mnist(config: Config, cache_dir: Path | None) -> _MnistDataset:
    from cyclekit.data.catalogue import load_mnist

    images, _ = load_mnist(cache_dir, split="train")
    return _MnistDataset(images, config.seed)
