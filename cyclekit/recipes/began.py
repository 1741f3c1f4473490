"""BEGAN (Berthelot, Schumm and Metz 2017): Boundary Equilibrium GAN. The discriminator is an
autoencoder, and its loss of an image is how badly it reconstructs it, L(v) = |v - D(v)|
(pixel-wise L1, the mean). D learns to reconstruct real images and not generated ones; G learns
to make images D reconstructs well:

    L_D = L(x) - k_t L(G(z_D))
    L_G = L(G(z_G))
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1)

k_t (from 0) is a proportional controller that keeps E[L(G(z))] = gamma E[L(x)]: the diversity
ratio gamma trades diversity (high) for quality (low). M = L(x) + |gamma L(x) - L(G(z_G))|, the
convergence measure of Sec. 3.4.1, falls as the generator improves; it and k_t are logged with the
losses (``M``, ``k``). Adam, lr 1e-4, beta1 0.5; optionally the learning rate halves whenever M
stalls (``began.lr_decay_window``: off by default).

One loop step updates D once on a real batch and G(z_D), then G once on fresh noise z_G, then
k_t. In a multi-process run, L(x) and L(G(z_G)) are averaged over the processes before k_t is
updated, so every process keeps the same k_t. k_t and the plateau tracker are part of the
checkpoint (the training state's ``balance``), so a resumed run continues exactly.

Noise is z ~ N(0, 1) (the paper draws z uniform in [-1, 1]; the sampling bundles, `cyclekit
sample` and the ONNX export all use normal noise, and G's first layer is fully connected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cyclekit.config import Config
from cyclekit.errors import ConfigError
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.models import build_model, sizing
from cyclekit.players import Player, generator_and_discriminator
from cyclekit.recipes.sampler import ImageSampler, image_shape
from cyclekit.train import distributed
from cyclekit.train.state import TrainingState

SUMMARY_FRACTION = 0.05  # M_first / M_last in the scores: the mean of this fraction of the logged values


@dataclass(frozen=True)
class BeganOptions:
    """The `began:` section."""

    latent_dim: int = 64  # N_z (h = N_z = 64 in most of the paper's experiments, Sec. 4)
    gamma: float = 0.5  # the diversity ratio E[L(G(z))] / E[L(x)], in (0, 1] (0.5 and 0.7 in the paper, Fig. 2)
    lambda_k: float = 0.001  # the proportional gain of k_t (Sec. 3.4)
    k_init: float = 0.0  # k_0 (Sec. 3.4: 0)
    # Learning-rate decay on a plateau of M: M is averaged over windows of this many steps, and both
    # learning rates are multiplied by lr_decay_factor after a window whose mean is not below the best
    # earlier window's (Sec. 4.1: "decayed by a factor of 2 when the measure of convergence stalls").
    # 0: no decay.
    lr_decay_window: int = 0
    lr_decay_factor: float = 0.5  # both learning rates times this at each decay (the paper: halved)
    lr_min: float = 2e-5  # the decay stops here (or at the configured lr, if that is lower)

    def __post_init__(self) -> None:
        if self.latent_dim <= 0:
            raise ConfigError(f"latent_dim: must be > 0, got {self.latent_dim}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma: must be in (0, 1], got {self.gamma}")
        if self.lambda_k < 0:
            raise ConfigError(f"lambda_k: must be >= 0, got {self.lambda_k}")
        if not 0 <= self.k_init <= 1:
            raise ConfigError(f"k_init: must be in [0, 1], got {self.k_init}")
        if self.lr_decay_window < 0:
            raise ConfigError(f"lr_decay_window: must be >= 0 (0: no decay), got {self.lr_decay_window}")
        if not 0 < self.lr_decay_factor < 1:
            raise ConfigError(f"lr_decay_factor: must be in (0, 1), got {self.lr_decay_factor}")
        if self.lr_min < 0:
            raise ConfigError(f"lr_min: must be >= 0, got {self.lr_min}")


class Balance:
    """The equilibrium state a checkpoint keeps besides the networks and optimizers: k_t, and the
    window of M the plateau decay averages (its running sum, its length so far, the best window
    mean yet). Tensors stay on the device, so a step never waits for it; the window is read once
    when it is full."""

    def __init__(self, k: float, device: torch.device) -> None:
        self.device = device
        self.k = torch.tensor(float(k), device=device)
        self.window_sum = torch.zeros((), device=device)
        self.window_n = 0
        self.best = math.inf

    def state_dict(self) -> dict[str, Any]:
        return {
            "k": self.k.detach().cpu().clone(),
            "window_sum": self.window_sum.detach().cpu().clone(),
            "window_n": self.window_n,
            "best": self.best,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        k, window = state["k"], state["window_sum"]
        if not (isinstance(k, Tensor) and k.dim() == 0 and isinstance(window, Tensor) and window.dim() == 0):
            raise ValueError("balance: k and window_sum must be scalar tensors")
        self.k = k.to(self.device, torch.float32)
        self.window_sum = window.to(self.device, torch.float32)
        self.window_n = int(state["window_n"])
        self.best = float(state["best"])


def _reconstruction_error(D: torch.nn.Module, v: Tensor) -> Tensor:
    """L(v) per sample: the mean absolute pixel difference between v and D(v)."""
    return (D(v) - v).abs().flatten(1).mean(1)


class BeganRecipe(ImageSampler):
    name = "began"
    description = "boundary equilibrium GAN: autoencoder D, L1 reconstruction, k_t balance (Berthelot et al. 2017)"
    Options = BeganOptions
    conditional = False
    needs = (("image",),)
    networks = {"generator": "G(z), the shape of D's decoder", "discriminator": "the autoencoder D(x) -> x"}
    defaults: dict[str, Any] = {
        "model": {
            "generator": {"name": "began_g"},
            "discriminator": {"name": "began_d"},
            # No batch norm and ELUs: Xavier initialisation (the reference TensorFlow code's
            # default), not the DCGAN N(0, 0.02), under which the deep ELU stacks start near zero.
            "init": "xavier",
            "init_gain": 1.0,
        },
    }

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """G and D with Adam at 1e-4, beta1 0.5 (Berthelot et al. 2017, Sec. 4); `_plateau` may decay
        both rates (the linear schedules' base rates)."""
        return generator_and_discriminator(lr=1e-4)

    @classmethod
    def check(cls, config: Config) -> None:
        super().check(config)
        c, size, _ = image_shape(config)
        size_key = "data.crop_size" if config.data.has("crop_size") else "data.size"
        for part in ("generator", "discriminator"):
            arch, opts = cls._checked_spec(config, part, size, size_key)
            got = cls._output_shape(arch, opts, part, (c, size, size), config.options.latent_dim)
            if got != (c, size, size):
                what = "an autoencoder: D(x) must have the shape of x" if part == "discriminator" else "images"
                raise ConfigError(
                    f"model.{part}: began needs {what} ({c} x {size} x {size}); {arch} with these options gives "
                    f"{' x '.join(map(str, got)) or 'a scalar'}"
                )

    @classmethod
    def _checked_spec(cls, config: Config, part: str, size: int, size_key: str) -> tuple[str, dict[str, Any]]:
        """The network's spec; a data size the network cannot be built for (its declared sides)
        named by its data key."""
        arch = getattr(config.model, part)["name"]
        fixed = sizing(arch, key=f"model.{part}")
        if fixed.takes("image_size") and fixed.image_sizes and size not in fixed.image_sizes:
            raise ConfigError(
                f"{size_key}: {size} px does not fit the {arch} network, whose side is {fixed.sizes_text()} px"
            )
        return cls.net_spec(config, part)

    @staticmethod
    def _output_shape(
        arch: str, opts: dict[str, Any], part: str, shape: tuple[int, int, int], latent_dim: int
    ) -> tuple[int, ...]:
        """The per-sample output shape of the network, built and run on the meta device (no memory,
        the global RNG untouched)."""

        def first_line(exc: Exception) -> str:
            return (str(exc).strip().splitlines() or [type(exc).__name__])[0]

        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            try:
                net = build_model(arch, opts, key=f"model.{part}")
            except (ValueError, RuntimeError, OverflowError) as exc:  # e.g. sizes beyond any tensor
                why = first_line(exc)
                raise ConfigError(f"model.{part}: {arch} cannot be built with these options: {why}") from None
            x = torch.empty(2, latent_dim) if part == "generator" else torch.empty(2, *shape)
            try:
                out = net(x)
            except (ValueError, RuntimeError) as exc:
                takes = f"z of began.latent_dim {latent_dim}" if part == "generator" else "the data's images"
                raise ConfigError(f"model.{part}: {arch} does not take {takes}: {first_line(exc)}") from None
        return tuple(out.shape[1:]) if isinstance(out, Tensor) else ()

    def training_state(self, config: Config, nets: dict[str, torch.nn.Module]) -> TrainingState:
        state = super().training_state(config, nets)
        self.balance = Balance(config.options.k_init, self.device)
        state.extras["balance"] = self.balance
        return state

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        opts: BeganOptions = self.options
        real = batch["image"].to(self.device, non_blocking=True)
        n = real.shape[0]
        fwd, nets = self.state.forward, self.state.nets
        k = self.balance.k
        # D: reconstruct x, fail to reconstruct G(z_D). began_d has no batch norm, so one call on
        # both batches is the same as two.
        with torch.no_grad():
            fake = nets["G"](self.noise(n))
        errors = _reconstruction_error(fwd["D"], torch.cat([real, fake]))
        loss_real, loss_fake = errors[:n].mean(), errors[n:].mean()
        loss_d = loss_real - k * loss_fake
        optimizer_step(self.state.optimizers["opt_d"], loss_d, self.state.scaler)
        # G: make images D reconstructs well (the gradient flows through v and D(v)).
        with frozen(nets["D"]):
            loss_g = _reconstruction_error(fwd["D"], fwd["G"](self.noise(n))).mean()
        optimizer_step(self.state.optimizers["opt_g"], loss_g, self.state.scaler)
        # The balance, with the processes' mean losses in a multi-process run (the same k_t everywhere).
        measured = torch.stack([loss_real.detach(), loss_g.detach()]).float()
        ctx = distributed.current()
        if ctx.enabled:
            measured = ctx.mean(measured)
        l_real, l_gen = measured[0], measured[1]
        balance = opts.gamma * l_real - l_gen
        self.balance.k = (k + opts.lambda_k * balance).clamp(0.0, 1.0)
        convergence = l_real + balance.abs()
        if opts.lr_decay_window:
            self._plateau(convergence)
        self.state.step_schedulers()
        return {
            "loss_D": loss_d.detach(),
            "loss_G": loss_g.detach(),
            "D_real": loss_real.detach(),  # L(x)
            "D_fake": loss_fake.detach(),  # L(G(z_D))
            "M": convergence,
            "k": self.balance.k,  # k_{t+1}, after this step's update
        }

    def _plateau(self, convergence: Tensor) -> None:
        """Add M to the window; at its end, decay both learning rates if its mean is not below the
        best earlier window's. The schedules' base rates change, so the linear schedule (if any)
        goes on from the decayed rate and the checkpoint keeps it."""
        b, opts = self.balance, self.options
        b.window_sum = b.window_sum + convergence
        b.window_n += 1
        if b.window_n < opts.lr_decay_window:
            return
        mean = float(b.window_sum) / b.window_n  # one device sync per window
        b.window_sum, b.window_n = torch.zeros((), device=self.device), 0
        if mean < b.best:
            b.best = mean
            return
        for sched in self.state.schedulers.values():
            sched.base_lrs = [max(base * opts.lr_decay_factor, min(opts.lr_min, base)) for base in sched.base_lrs]

    def extra_scores(self, run_dir: Path) -> dict[str, Any]:
        """M at the start and the end of training (each the mean of the first / last 5% of its
        logged values, at least one: single steps are noisy) and the last k_t."""
        from cyclekit.records import read_metrics

        rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if isinstance(r, dict)]
        m = [float(r["M"]) for r in rows if isinstance(r.get("M"), (int, float))]
        k = [float(r["k"]) for r in rows if isinstance(r.get("k"), (int, float))]
        if not m:
            return {}
        span = max(1, round(SUMMARY_FRACTION * len(m)))
        return {
            "M_first": round(sum(m[:span]) / span, 4),
            "M_last": round(sum(m[-span:]) / span, 4),
            "M_logged": len(m),
            "k_last": round(k[-1], 5) if k else None,
        }
