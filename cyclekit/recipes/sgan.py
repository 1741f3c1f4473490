"""Semi-supervised GAN (Odena 2016; Salimans et al. 2016, Sec. 5): D is a K-class classifier whose
"fake" class is implicit, trained on a few labelled images, many unlabelled ones and G's samples.

D outputs K logits l_1..l_K and no fake logit (Salimans et al.: fixing the fake class's logit at 0
loses nothing), so D(real | x) = Z(x) / (Z(x) + 1) with Z(x) = sum_k exp(l_k(x)): the real/fake
logit is logsumexp_k l_k(x). Its loss is

    L_D = CE(l(x_lab), y)  +  [ -log D(real | x_unl) - log(1 - D(real | G(z))) ]

with a labelled mini-batch drawn for every step from the `data.labels_per_class` subset (seeded by
the step, so a resumed run draws the same ones) and the whole training set as unlabelled data. G
matches the mean of D's intermediate features on real and generated batches (feature matching,
Salimans et al. Sec. 3.1, which they found best for semi-supervised learning); `sgan.generator_loss:
adversarial` uses the non-saturating loss instead. The trained D is the classifier: its test
accuracy is reported next to the yardstick classifier trained on the same few labels alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.protocol import Labelled, RunData
from cyclekit.errors import ConfigError
from cyclekit.gan.steps import frozen, optimizer_step
from cyclekit.models import capabilities
from cyclekit.recipes.sampler import ImageSampler

DATA_INIT_BATCH = 500  # improved-gan initialises its MNIST D on 500 training images


@dataclass(frozen=True)
class SganOptions:
    """The `sgan:` section."""

    latent_dim: int = 100  # z in R^100 (Salimans et al. 2016 use 100-d uniform noise)
    labelled_batch: int = 64  # labelled images per step, drawn from the labels_per_class subset
    # feature_matching: Salimans et al. 2016, Sec. 3.1; adversarial: the non-saturating GAN loss
    generator_loss: Literal["feature_matching", "adversarial"] = "feature_matching"
    lambda_supervised: float = 1.0  # weight of the supervised cross-entropy in D's loss
    # Real images (labelled and unlabelled) shifted by up to this many px, as the yardstick's
    # classifier is trained: with 10 labels per class D overfits without it. 0: off.
    shift: int = 2
    # D's weights averaged for testing, as Salimans et al.'s code tests its D: after each D step
    # avg += average * (w - avg), from D's initial weights (their code: 1e-4, from zeros). The
    # scores then give D's test accuracy with the averaged weights too. 0: off.
    average: float = 0.0

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ConfigError(f"shift: must be >= 0, got {self.shift}")
        if not 0 <= self.average < 1:
            raise ConfigError(f"average: must be in [0, 1) (0: off), got {self.average}")
        for name in ("latent_dim", "labelled_batch"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.lambda_supervised < 0:
            raise ConfigError(f"lambda_supervised: must be >= 0, got {self.lambda_supervised}")


class SganRecipe(ImageSampler):
    name = "sgan"
    description = "semi-supervised GAN: D classifies K classes, fake implicit; few labels (Salimans et al. 2016)"
    Options = SganOptions
    conditional = False  # G(z): the classes live in D
    semi_supervised = True
    # D(real | x) = Z / (Z + 1) is the vanilla GAN's objective (Salimans et al. 2016, Sec. 5): no gan_mode
    networks = {
        "generator": "G(z)",
        "discriminator": "D(x) -> K class logits, fake implicit: cond_d with head classes, or improved_d",
    }
    defaults: dict[str, Any] = {
        "model": {"generator": {"name": "dcgan_g"}, "discriminator": {"name": "cond_d", "head": "classes"}},
    }

    @classmethod
    def check(cls, config: Config) -> None:
        super().check(config)
        d_caps = capabilities(*cls.net_spec(config, "discriminator"), key="model.discriminator")
        if d_caps.heads != ("classes",) or d_caps.condition.kind != "none":
            raise ConfigError(
                "model.discriminator: sgan needs D(x) -> K class logits: cond_d with head classes, or improved_d"
            )
        cls.net_spec(config, "generator")

    def __init__(self, config: Config, data: RunData) -> None:
        super().__init__(config, data)
        images, labels = self.dataset.tensors()
        keep = labels >= 0
        if not keep.any():
            raise ConfigError("data: sgan needs some labelled images (data.labels_per_class, or a labelled source)")
        self.labelled_images, self.labelled_labels = images[keep], labels[keep]
        self._data_init(images)
        self.average = None
        if config.options.average:
            self.average = WeightAverage(self.state.nets["D"], config.options.average)
            self.state.extras["d_average"] = self.average  # in the checkpoint: a resume goes on exactly

    def _data_init(self, images: Tensor) -> None:
        """A discriminator with a data-dependent initialisation (improved-gan's weight-normalised
        MNIST D, `improved_d`) gets it here, on DATA_INIT_BATCH training images picked by the
        run's seed: the same on every process, and replaced by a checkpoint's weights on resume."""
        init = getattr(self.state.nets["D"], "data_init", None)
        if not callable(init):
            return
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(derive_seed(self.config.seed, 19)))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the init's noise leaves the training RNG as it was
            torch.manual_seed(derive_seed(self.config.seed, 23))
            init(images[pick[:DATA_INIT_BATCH]].to(self.device))

    def labelled_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """The step's labelled mini-batch: drawn from (seed, step) alone, so a resume sees the same."""
        gen = torch.Generator().manual_seed(derive_seed(self.config.seed, 13, step))
        pick = torch.randint(len(self.labelled_labels), (self.config.options.labelled_batch,), generator=gen)
        images = _shift(self.labelled_images[pick], self.config.options.shift, gen)
        return images.to(self.device), self.labelled_labels[pick].to(self.device)

    def train_step(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        opts = self.config.options
        shifts = torch.Generator().manual_seed(derive_seed(self.config.seed, 17, step))
        real = _shift(batch["image"], opts.shift, shifts).to(self.device, non_blocking=True)
        x_lab, y_lab = self.labelled_batch(step)
        n = real.shape[0]
        fwd = self.state.forward
        fake = fwd["G"](self.noise(n))
        supervised = F.cross_entropy(fwd["D"](x_lab), y_lab)
        real_logit = torch.logsumexp(fwd["D"](real), dim=1)
        fake_logit = torch.logsumexp(fwd["D"](fake.detach()), dim=1)
        # -log D(real|x) = softplus(-lse), -log(1 - D(real|G(z))) = softplus(lse)
        unsupervised = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
        loss_d = opts.lambda_supervised * supervised + unsupervised
        optimizer_step(self.state.optimizers["opt_d"], loss_d, self.state.scaler)
        D = self.state.nets["D"]
        if self.average is not None:
            self.average.update(D)
        with frozen(D):
            if opts.generator_loss == "feature_matching":
                loss_g = (D.features(real).mean(0) - D.features(fake).mean(0)).pow(2).mean()
            else:
                loss_g = F.softplus(-torch.logsumexp(fwd["D"](fake), dim=1)).mean()
        optimizer_step(self.state.optimizers["opt_g"], loss_g, self.state.scaler)
        self.state.step_schedulers()
        return {
            "loss_D": loss_d.detach(),
            "loss_G": loss_g.detach(),
            "loss_D_supervised": supervised.detach(),
            "loss_D_unsupervised": unsupervised.detach(),
            "D_real": real_logit.detach().mean(),
            "D_fake": fake_logit.detach().mean(),
        }

    def extra_scores(self, run_dir: Path) -> dict[str, Any]:
        """D as a classifier on the test split, next to the yardstick classifier trained on only
        the same labelled images (the bar semi-supervised learning must clear)."""
        from cyclekit.evaluation.classifier import supervised_baseline

        test = self.data.test
        if not isinstance(test, Labelled):
            return {}
        x_test, y_test = test.tensors()
        D = self.state.nets["D"]
        images, labels = self.dataset.tensors()
        baseline = supervised_baseline(images, labels, x_test, y_test, len(self.class_names), self.config.seed)
        scores = {"discriminator_test_accuracy": round(_accuracy(D, x_test, y_test, self.device), 4)}
        if self.average is not None:
            with self.average.swapped_in(D):
                scores["discriminator_averaged_test_accuracy"] = round(_accuracy(D, x_test, y_test, self.device), 4)
        return scores | {
            "supervised_only_test_accuracy": round(baseline, 4),  # the yardstick's classifier on the same labels
            "labelled_images": len(self.labelled_labels),
        }


def _shift(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Each image moved by its own random offset in -k..k px (edges replicated), on the CPU."""
    if k == 0:
        return x
    x = x.cpu()
    n, c, h, w = x.shape
    padded = F.pad(x, (k,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * k + 1, (2, n, 1), generator=generator)
    rows = (dy + torch.arange(h))[:, None, :, None]
    cols = (dx + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def _accuracy(D: torch.nn.Module, x: Tensor, y: Tensor, device: torch.device) -> float:
    """D as a classifier (eval mode: no dropout or noise) on ``x``; D's mode is restored."""
    was_training = D.training
    D.eval()
    try:
        with torch.no_grad():
            predicted = torch.cat([D(chunk.to(device)).argmax(1).cpu() for chunk in x.split(512)])
    finally:
        D.train(was_training)
    return float((predicted == y).double().mean())


class WeightAverage:
    """An exponential moving average of a network's floating-point weights and buffers (Polyak
    averaging, as Salimans et al. test their MNIST D), kept on the network's device and saved in
    the checkpoint (`state_dict` / `load_state_dict`)."""

    def __init__(self, net: torch.nn.Module, rate: float) -> None:
        self.rate = rate
        self.values = {k: v.detach().clone() for k, v in net.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        for key, value in net.state_dict().items():
            if key in self.values:
                self.values[key].lerp_(value.detach(), self.rate)

    @contextlib.contextmanager
    def swapped_in(self, net: torch.nn.Module) -> Iterator[None]:
        """``net`` with the averaged weights inside the block, its own weights back after."""
        own = {k: v.detach().clone() for k, v in net.state_dict().items() if k in self.values}
        net.load_state_dict(self.values, strict=False)
        try:
            yield
        finally:
            net.load_state_dict(own, strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "values": {k: v.detach().cpu().clone() for k, v in self.values.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        values = state["values"]
        if not isinstance(values, dict) or set(values) != set(self.values):
            raise ValueError("d_average: the averaged weights do not match the discriminator")
        for key, value in values.items():
            if not isinstance(value, Tensor) or value.shape != self.values[key].shape:
                raise ValueError(f"d_average: weight {key!r} does not match the discriminator")
            self.values[key] = value.to(self.values[key].device, self.values[key].dtype)
