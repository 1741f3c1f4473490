"""Baselines for cyclekit's MNIST presets: the MNIST scripts of eriklindernoren/PyTorch-GAN,
re-created in plain PyTorch and scored with cyclekit's own yardstick.

What it reproduces
------------------
For each of dcgan, cgan, acgan, wgan, wgan_gp, began and sgan, the training script
``implementations/<name>/<name>.py`` of https://github.com/eriklindernoren/PyTorch-GAN (its
master branch as stored after the 2019 reformatting): the same networks (including their quirks:
``BatchNorm(n, 0.8)`` sets eps = 0.8; acgan's and sgan's auxiliary heads end in a softmax that
their cross-entropy loss applies a second softmax to), the same losses, optimizers, default
hyperparameters (batch size, learning rate, betas, latent size, image size), weight
initialisation where the script has one, and the same update order within a batch (which network
steps first, which tensors are detached, which z is reused). Noise, generated labels and the
gradient-penalty mixing weights are drawn with numpy's ``normal``/``randint``/``random`` as the
scripts do, from a ``RandomState`` seeded with ``--seed``; ``torch.manual_seed(seed)`` seeds the
initialisation and dropout. A *step* is one iteration of their inner loop over batches (for wgan
and wgan_gp a critic update, with a generator update every 5th batch of an epoch).

What differs
------------
- Data: their ``torchvision.datasets.MNIST`` with ``Resize(img_size)``, ``ToTensor()`` and
  ``Normalize(0.5, 0.5)`` is replaced (torchvision is not installed here) by the idx files read
  by cyclekit, resized once up front with ``F.interpolate(bilinear, antialias=True)`` and rounded
  to uint8 as PIL's resize returns it (on the MNIST test images this differs from PIL's bilinear
  resize by one grey level in about 4% of pixels and never by more), then scaled to [-1, 1] per
  batch. Every epoch is shuffled like ``DataLoader(shuffle=True)``, last short batch included,
  but from a ``torch.Generator`` seeded with ``--seed``. Their per-batch PIL decoding is thus not
  inside the timed loop.
- CPU only, float32, one process; no per-batch printing (a line every ``--log-every`` steps on
  stderr), no periodic sample images, and the accuracy they only print (acgan, sgan) is not
  computed. began's ``M = (...).data[0]`` (an IndexError on a 0-d tensor in PyTorch >= 0.5) is
  computed with ``.item()``.
- sgan: their script labels every training image (all 60,000 labels: a fully supervised
  auxiliary classifier with a fake class). ``--labels-per-class K`` keeps K labels per class,
  picked with the seed exactly as cyclekit's ``data.mnist.labels_per_class`` picks them (the same
  100 images as the mnist-sgan preset for K = 10), and departs from their script: the auxiliary
  cross-entropy of the real term is then taken on a batch of ``batch_size`` images drawn (without
  replacement) from the labelled subset each step, while the adversarial term still sees the
  whole training set.

Scoring
-------
After training, ``--samples`` images are generated (conditional GANs: equally many per class,
with their class labels; the generator in eval mode, as cyclekit scores its generators, or with
``--sample-mode train`` in training-mode batches as their sample grids are drawn), resized to
28 px (bilinear, antialiased) when the GAN trains at another size, and scored by
``cyclekit.recipes.sampler.yardstick_scores`` with the yardstick ``data_yardstick`` gives the
mnist presets: the MNIST data opened as ``cyclekit train mnist-cgan --data-root DIR`` opens it,
so the cache id (``yardsticks/mnist-<hash>.pt``, trained on the 60,000 training images and
measured on the 10,000 test images) is the one those runs record. The noise is the one cyclekit
draws for its scores (seeded from ``--seed``). For sgan, its discriminator's accuracy on the
10,000 test images is reported too (argmax over the 10 real classes, eval mode).

How to run the comparison (equal training time)
-----------------------------------------------
1. Measure the cyclekit preset alone on an idle machine::

       cyclekit bench mnist-cgan --data-root DIR --steps 40

   Its training time is ``train_s_per_step x train.epochs x (60000 // data.batch_size)`` (the
   preset's epochs and batch size; cyclekit drops the last short batch).
2. Train and score the baseline for the same time, alone on the same machine::

       python scripts/pytorch_gan_baselines.py cgan --data-root DIR --out results/baselines --seconds S

   or, when the machine's load varies, measure this script's ``seconds_per_step`` alone (a short
   ``--steps 200`` run) and give ``--steps S / seconds_per_step`` instead.

One JSON object is printed on stdout and written to OUT/<gan>.json; OUT/<gan>.png holds a sample
grid (one row per class for cgan and acgan). ``--no-score`` skips the yardstick (training only).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit.data.folders import derive_seed
from cyclekit.data.images import save_grid
from cyclekit.data.labelled import keep_labels_per_class
from cyclekit.errors import CyclekitError, did_you_mean

REPO = "https://github.com/eriklindernoren/PyTorch-GAN"
MNIST_SIZE = 28  # the yardstick's image size
N_CLASSES = 10
YARDSTICK_PRESET = "mnist-cgan"  # any mnist preset at 28 px with every label opens the same data


@dataclass(frozen=True)
class Spec:
    """One upstream script's defaults."""

    upstream: str
    img_size: int
    latent_dim: int
    conditional: bool  # the generator takes a class label
    summary: str  # the hyperparameters followed, in one line
    batch_size: int = 64


SPECS: dict[str, Spec] = {
    "dcgan": Spec(
        "implementations/dcgan/dcgan.py",
        img_size=32,
        latent_dim=100,
        conditional=False,
        summary="conv G/D, BCE, Adam 2e-4 (0.5, 0.999), batch 64, z 100, 32 px, N(0, 0.02) init; G step then D step",
    ),
    "cgan": Spec(
        "implementations/cgan/cgan.py",
        img_size=32,
        latent_dim=100,
        conditional=True,
        summary="MLP G (embedding 10 + z) / MLP D with dropout 0.4, MSE (LSGAN), Adam 2e-4 (0.5, 0.999), batch 64, "
        "z 100, 32 px, default init; G step then D step",
    ),
    "acgan": Spec(
        "implementations/acgan/acgan.py",
        img_size=32,
        latent_dim=100,
        conditional=True,
        summary="conv G (embedding x z) / conv D with softmax class head, BCE + CE, Adam 2e-4 (0.5, 0.999), batch 64, "
        "z 100, 32 px, N(0, 0.02) init; G step then D step",
    ),
    "wgan": Spec(
        "implementations/wgan/wgan.py",
        img_size=28,
        latent_dim=100,
        conditional=False,
        summary="MLP G / MLP critic, Wasserstein loss, RMSprop 5e-5, weight clip 0.01, G every 5th batch, batch 64, "
        "z 100, 28 px, default init",
    ),
    "wgan_gp": Spec(
        "implementations/wgan_gp/wgan_gp.py",
        img_size=28,
        latent_dim=100,
        conditional=False,
        summary="MLP G / MLP critic, Wasserstein loss + 10 x gradient penalty, Adam 2e-4 (0.5, 0.999), G every 5th "
        "batch, batch 64, z 100, 28 px, default init",
    ),
    "began": Spec(
        "implementations/began/began.py",
        img_size=32,
        latent_dim=62,
        conditional=False,
        summary="conv G / auto-encoder D, L1 losses, gamma 0.75, lambda_k 0.001, Adam 2e-4 (0.5, 0.999), batch 64, "
        "z 62, 32 px, N(0, 0.02) init (BatchNorm1d left at default); G step then D step",
    ),
    "sgan": Spec(
        "implementations/sgan/sgan.py",
        img_size=32,
        latent_dim=100,
        conditional=False,
        summary="conv G / conv D with 11-way softmax head (10 classes + fake), BCE + CE, Adam 2e-4 (0.5, 0.999), "
        "batch 64, z 100, 32 px, N(0, 0.02) init; G step then D step",
    ),
}


class UsageError(Exception):
    """A bad command line: printed as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# networks (as the upstream scripts build them)


def init_normal(module: nn.Module) -> None:
    """Their ``weights_init_normal``: conv weights N(0, 0.02) (biases kept), BatchNorm2d weights
    N(1, 0.02) and biases 0. (sgan's version matches every BatchNorm; its networks have only 2-d ones.)"""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.constant_(module.bias, 0.0)


class ConvGenerator(nn.Module):
    """dcgan/acgan/began/sgan's G: linear to 128 x (size/4)^2, then two nearest 2x upsamplings
    with 3x3 convs (BatchNorm with eps 0.8, LeakyReLU 0.2) and a 3x3 conv to one channel, tanh.
    ``n_classes``: a label embedding of latent size (acgan multiplies it into z; sgan's script
    builds one and never uses it, kept so the parameters are the same)."""

    def __init__(self, latent_dim: int, img_size: int, n_classes: int = 0) -> None:
        super().__init__()
        self.label_emb = nn.Embedding(n_classes, latent_dim) if n_classes else None
        self.init_size = img_size // 4
        self.l1 = nn.Sequential(nn.Linear(latent_dim, 128 * self.init_size**2))
        self.conv_blocks = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 128, 3, stride=1, padding=1),
            nn.BatchNorm2d(128, eps=0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, stride=1, padding=1),
            nn.BatchNorm2d(64, eps=0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, 1, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is not None:
            assert self.label_emb is not None
            z = self.label_emb(labels) * z
        out = self.l1(z).view(len(z), 128, self.init_size, self.init_size)
        return self.conv_blocks(out)


class ConvDiscriminator(nn.Module):
    """dcgan/acgan/sgan's D: four stride-2 3x3 convs (16, 32, 64, 128), each LeakyReLU 0.2 and
    Dropout2d 0.25, the last three followed by BatchNorm (eps 0.8); a sigmoid validity head and,
    with ``n_aux``, a softmax class head."""

    def __init__(self, img_size: int, n_aux: int = 0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out, bn in ((1, 16, False), (16, 32, True), (32, 64, True), (64, 128, True)):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Dropout2d(0.25)]
            if bn:
                layers.append(nn.BatchNorm2d(c_out, eps=0.8))
        self.conv_blocks = nn.Sequential(*layers)
        features = 128 * (img_size // 2**4) ** 2
        self.adv_layer = nn.Sequential(nn.Linear(features, 1), nn.Sigmoid())
        self.aux_layer = nn.Sequential(nn.Linear(features, n_aux), nn.Softmax(dim=1)) if n_aux else None

    def forward(self, img: Tensor) -> Any:
        out = self.conv_blocks(img).flatten(1)
        validity = self.adv_layer(out)
        if self.aux_layer is None:
            return validity
        return validity, self.aux_layer(out)


def mlp_block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if normalize:
        layers.append(nn.BatchNorm1d(n_out, eps=0.8))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class MlpGenerator(nn.Module):
    """cgan/wgan/wgan_gp's G: 128 (no norm), 256, 512, 1024 (BatchNorm1d eps 0.8), LeakyReLU 0.2,
    linear to the image, tanh. ``n_classes``: cgan's label embedding (n_classes wide) put before z."""

    def __init__(self, latent_dim: int, img_size: int, n_classes: int = 0) -> None:
        super().__init__()
        self.label_emb = nn.Embedding(n_classes, n_classes) if n_classes else None
        self.img_size = img_size
        self.model = nn.Sequential(
            *mlp_block(latent_dim + n_classes, 128, normalize=False),
            *mlp_block(128, 256),
            *mlp_block(256, 512),
            *mlp_block(512, 1024),
            nn.Linear(1024, img_size**2),
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if labels is not None:
            assert self.label_emb is not None
            z = torch.cat((self.label_emb(labels), z), -1)
        return self.model(z).view(len(z), 1, self.img_size, self.img_size)


class MlpCritic(nn.Module):
    """wgan/wgan_gp's critic: 512, 256 (LeakyReLU 0.2), a linear score."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(img_size**2, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
        )

    def forward(self, img: Tensor) -> Tensor:
        return self.model(img.flatten(1))


class CganDiscriminator(nn.Module):
    """cgan's D: the flat image and a label embedding (10 wide), 512, 512, 512 with dropout 0.4
    before the second and third LeakyReLU, a linear score (no sigmoid: the loss is MSE)."""

    def __init__(self, img_size: int, n_classes: int) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, n_classes)
        self.model = nn.Sequential(
            nn.Linear(n_classes + img_size**2, 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512),
            nn.Dropout(0.4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 1),
        )

    def forward(self, img: Tensor, labels: Tensor) -> Tensor:
        return self.model(torch.cat((img.flatten(1), self.label_embedding(labels)), -1))


class BeganDiscriminator(nn.Module):
    """began's auto-encoder D: a stride-2 conv to 64 channels (ReLU), a 32-wide bottleneck
    (BatchNorm1d eps 0.8) back to 64 x (size/2)^2 (BatchNorm1d, ReLU), a nearest 2x upsampling
    and a 3x3 conv to the image."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 64, 3, 2, 1), nn.ReLU())
        self.down_size = img_size // 2
        down_dim = 64 * self.down_size**2
        self.fc = nn.Sequential(
            nn.Linear(down_dim, 32),
            nn.BatchNorm1d(32, eps=0.8),
            nn.ReLU(inplace=True),
            nn.Linear(32, down_dim),
            nn.BatchNorm1d(down_dim),
            nn.ReLU(inplace=True),
        )
        self.up = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(64, 1, 3, 1, 1))

    def forward(self, img: Tensor) -> Tensor:
        out = self.fc(self.down(img).flatten(1))
        return self.up(out.view(len(img), 64, self.down_size, self.down_size))


# ---------------------------------------------------------------------------------------------
# training steps (one per upstream script)


@dataclass
class Setup:
    G: nn.Module
    D: nn.Module
    step: Callable[[int, Tensor, Tensor], dict[str, float]]  # (batch index in the epoch, images, labels)
    notes: dict[str, Any]


class Noise:
    """What their scripts draw with numpy's global RNG, from one seeded RandomState."""

    def __init__(self, seed: int, latent_dim: int) -> None:
        self.rng = np.random.RandomState(seed)
        self.latent_dim = latent_dim

    def z(self, n: int) -> Tensor:
        return torch.from_numpy(self.rng.normal(0, 1, (n, self.latent_dim))).float()

    def labels(self, n: int) -> Tensor:
        return torch.from_numpy(self.rng.randint(0, N_CLASSES, n)).long()

    def uniform(self, shape: tuple[int, ...]) -> Tensor:
        return torch.from_numpy(self.rng.random_sample(shape)).float()


def adam(module: nn.Module) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=2e-4, betas=(0.5, 0.999))


def setup_dcgan(spec: Spec, noise: Noise, **_: Any) -> Setup:
    G, D = ConvGenerator(spec.latent_dim, spec.img_size), ConvDiscriminator(spec.img_size)
    G.apply(init_normal)
    D.apply(init_normal)
    opt_G, opt_D, bce = adam(G), adam(D), nn.BCELoss()

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        n = len(real)
        valid, fake = torch.ones(n, 1), torch.zeros(n, 1)
        opt_G.zero_grad()
        gen = G(noise.z(n))
        g_loss = bce(D(gen), valid)
        g_loss.backward()
        opt_G.step()
        opt_D.zero_grad()
        d_loss = (bce(D(real), valid) + bce(D(gen.detach()), fake)) / 2
        d_loss.backward()
        opt_D.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    return Setup(G, D, step, {})


def setup_cgan(spec: Spec, noise: Noise, **_: Any) -> Setup:
    # No weights_init in their cgan.py: PyTorch's default initialisation.
    G = MlpGenerator(spec.latent_dim, spec.img_size, N_CLASSES)
    D = CganDiscriminator(spec.img_size, N_CLASSES)
    opt_G, opt_D, mse = adam(G), adam(D), nn.MSELoss()

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        n = len(real)
        valid, fake = torch.ones(n, 1), torch.zeros(n, 1)
        opt_G.zero_grad()
        z, gen_labels = noise.z(n), noise.labels(n)
        gen = G(z, gen_labels)
        g_loss = mse(D(gen, gen_labels), valid)
        g_loss.backward()
        opt_G.step()
        opt_D.zero_grad()
        d_loss = (mse(D(real, labels), valid) + mse(D(gen.detach(), gen_labels), fake)) / 2
        d_loss.backward()
        opt_D.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    return Setup(G, D, step, {})


def setup_acgan(spec: Spec, noise: Noise, **_: Any) -> Setup:
    G = ConvGenerator(spec.latent_dim, spec.img_size, N_CLASSES)
    D = ConvDiscriminator(spec.img_size, n_aux=N_CLASSES)
    G.apply(init_normal)
    D.apply(init_normal)
    opt_G, opt_D = adam(G), adam(D)
    bce, ce = nn.BCELoss(), nn.CrossEntropyLoss()  # CE on softmax outputs, as theirs

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        n = len(real)
        valid, fake = torch.ones(n, 1), torch.zeros(n, 1)
        opt_G.zero_grad()
        z, gen_labels = noise.z(n), noise.labels(n)
        gen = G(z, gen_labels)
        validity, pred_label = D(gen)
        g_loss = 0.5 * (bce(validity, valid) + ce(pred_label, gen_labels))
        g_loss.backward()
        opt_G.step()
        opt_D.zero_grad()
        real_pred, real_aux = D(real)
        d_real = (bce(real_pred, valid) + ce(real_aux, labels)) / 2
        fake_pred, fake_aux = D(gen.detach())
        d_fake = (bce(fake_pred, fake) + ce(fake_aux, gen_labels)) / 2
        d_loss = (d_real + d_fake) / 2
        d_loss.backward()
        opt_D.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    return Setup(G, D, step, {})


N_CRITIC = 5


def setup_wgan(spec: Spec, noise: Noise, **_: Any) -> Setup:
    G, D = MlpGenerator(spec.latent_dim, spec.img_size), MlpCritic(spec.img_size)
    opt_G = torch.optim.RMSprop(G.parameters(), lr=5e-5)
    opt_D = torch.optim.RMSprop(D.parameters(), lr=5e-5)
    clip = 0.01
    last: dict[str, float] = {}

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        opt_D.zero_grad()
        z = noise.z(len(real))
        fake = G(z).detach()
        d_loss = -torch.mean(D(real)) + torch.mean(D(fake))
        d_loss.backward()
        opt_D.step()
        for p in D.parameters():
            p.data.clamp_(-clip, clip)
        last["d_loss"] = d_loss.item()
        if i % N_CRITIC == 0:  # i: the batch index within the epoch, as theirs
            opt_G.zero_grad()
            g_loss = -torch.mean(D(G(z)))  # the critic step's z again
            g_loss.backward()
            opt_G.step()
            last["g_loss"] = g_loss.item()
        return dict(last)

    return Setup(G, D, step, {})


def setup_wgan_gp(spec: Spec, noise: Noise, **_: Any) -> Setup:
    G, D = MlpGenerator(spec.latent_dim, spec.img_size), MlpCritic(spec.img_size)
    opt_G, opt_D = adam(G), adam(D)
    lambda_gp = 10.0
    last: dict[str, float] = {}

    def gradient_penalty(real: Tensor, fake: Tensor) -> Tensor:
        alpha = noise.uniform((len(real), 1, 1, 1))
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        score = D(mixed)
        (grads,) = torch.autograd.grad(
            score, mixed, grad_outputs=torch.ones(len(real), 1), create_graph=True, retain_graph=True
        )
        return ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        opt_D.zero_grad()
        z = noise.z(len(real))
        fake = G(z)  # not detached in theirs: the critic loss also back-propagates into G (then zeroed)
        d_loss = -torch.mean(D(real)) + torch.mean(D(fake)) + lambda_gp * gradient_penalty(real, fake.detach())
        d_loss.backward()
        opt_D.step()
        opt_G.zero_grad()
        last["d_loss"] = d_loss.item()
        if i % N_CRITIC == 0:
            g_loss = -torch.mean(D(G(z)))
            g_loss.backward()
            opt_G.step()
            last["g_loss"] = g_loss.item()
        return dict(last)

    return Setup(G, D, step, {})


def setup_began(spec: Spec, noise: Noise, **_: Any) -> Setup:
    G, D = ConvGenerator(spec.latent_dim, spec.img_size), BeganDiscriminator(spec.img_size)
    G.apply(init_normal)
    D.apply(init_normal)  # D's BatchNorm1d layers keep PyTorch's initialisation, as in theirs
    opt_G, opt_D = adam(G), adam(D)
    gamma, lambda_k = 0.75, 0.001
    state = {"k": 0.0}

    def step(i: int, real: Tensor, labels: Tensor) -> dict[str, float]:
        opt_G.zero_grad()
        gen = G(noise.z(len(real)))
        g_loss = torch.mean(torch.abs(D(gen) - gen))
        g_loss.backward()
        opt_G.step()
        opt_D.zero_grad()
        gen = gen.detach()
        loss_real = torch.mean(torch.abs(D(real) - real))
        loss_fake = torch.mean(torch.abs(D(gen) - gen))
        d_loss = loss_real - state["k"] * loss_fake
        d_loss.backward()
        opt_D.step()
        diff = torch.mean(gamma * loss_real - loss_fake).item()
        state["k"] = min(max(state["k"] + lambda_k * diff, 0.0), 1.0)
        convergence = loss_real.item() + abs(diff)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "M": convergence, "k": state["k"]}

    return Setup(G, D, step, {"began_k": state})


def setup_sgan(
    spec: Spec, noise: Noise, *, images: Tensor, labels: Tensor, labels_per_class: int | None, seed: int, **_: Any
) -> Setup:
    """``images`` (uint8, at the GAN's size) and ``labels``: the training set, for the labelled
    subset of ``labels_per_class``."""
    # Their generator builds a label embedding it never uses: kept, so the parameters are theirs.
    G = ConvGenerator(spec.latent_dim, spec.img_size, N_CLASSES)
    D = ConvDiscriminator(spec.img_size, n_aux=N_CLASSES + 1)  # class N_CLASSES: "fake"
    G.apply(init_normal)
    D.apply(init_normal)
    opt_G, opt_D = adam(G), adam(D)
    bce, ce = nn.BCELoss(), nn.CrossEntropyLoss()
    notes: dict[str, Any] = {}
    labelled: tuple[Tensor, Tensor] | None = None  # (images in [-1, 1], labels) of the labelled subset
    if labels_per_class is None:
        notes["sgan_labels"] = f"every training label ({len(labels):,}), as their sgan.py"
    else:
        names = [str(c) for c in range(N_CLASSES)]
        index = torch.nonzero(keep_labels_per_class(labels, labels_per_class, seed, class_names=names) >= 0).flatten()
        labelled = (to_unit(images[index]), labels[index])
        notes["sgan_labels"] = (
            f"{labels_per_class} per class ({len(index)} images, picked with seed {seed} as cyclekit's "
            "data.mnist.labels_per_class): departs from their sgan.py, which uses every label; the real "
            f"images' class term is taken on {spec.batch_size} labelled images a step"
        )
        notes["labelled_images"] = len(index)
    pick = torch.Generator().manual_seed(derive_seed(seed, 17))

    def step(i: int, real: Tensor, real_labels: Tensor) -> dict[str, float]:
        n = len(real)
        valid, fake = torch.ones(n, 1), torch.zeros(n, 1)
        fake_class = torch.full((n,), N_CLASSES, dtype=torch.long)
        opt_G.zero_grad()
        gen = G(noise.z(n))
        validity, _ = D(gen)
        g_loss = bce(validity, valid)
        g_loss.backward()
        opt_G.step()
        opt_D.zero_grad()
        real_pred, real_aux = D(real)
        if labelled is not None:  # --labels-per-class: the class term on labelled images only
            chosen = torch.randperm(len(labelled[1]), generator=pick)[:n]
            _, real_aux = D(labelled[0][chosen])
            real_labels = labelled[1][chosen]
        d_real = (bce(real_pred, valid) + ce(real_aux, real_labels)) / 2
        fake_pred, fake_aux = D(gen.detach())
        d_fake = (bce(fake_pred, fake) + ce(fake_aux, fake_class)) / 2
        d_loss = (d_real + d_fake) / 2
        d_loss.backward()
        opt_D.step()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    return Setup(G, D, step, notes)


SETUPS: dict[str, Callable[..., Setup]] = {
    "dcgan": setup_dcgan,
    "cgan": setup_cgan,
    "acgan": setup_acgan,
    "wgan": setup_wgan,
    "wgan_gp": setup_wgan_gp,
    "began": setup_began,
    "sgan": setup_sgan,
}


# ---------------------------------------------------------------------------------------------
# data


def resize_u8(images: Tensor, size: int) -> Tensor:
    """uint8 N x 1 x 28 x 28 -> uint8 N x 1 x size x size, bilinear and antialiased, rounded as
    PIL's resize (torchvision's Resize on MNIST's PIL images) returns uint8."""
    if images.shape[-1] == size:
        return images
    out = torch.empty((len(images), 1, size, size), dtype=torch.uint8)
    for start in range(0, len(images), 4096):
        x = images[start : start + 4096].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start : start + 4096] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def to_unit(images: Tensor) -> Tensor:
    """uint8 -> float in [-1, 1]: ToTensor (/255) then Normalize(0.5, 0.5)."""
    return (images.float() / 255.0 - 0.5) / 0.5


def epochs_of_batches(
    images: Tensor, labels: Tensor, batch_size: int, seed: int
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """(epoch, batch index, images in [-1, 1], labels) as ``DataLoader(shuffle=True)`` gives them:
    a fresh permutation each epoch, the last short batch kept; endless."""
    gen = torch.Generator().manual_seed(seed)
    epoch = 0
    while True:
        order = torch.randperm(len(images), generator=gen)
        for i, index in enumerate(order.split(batch_size)):
            yield epoch, i, to_unit(images[index]), labels[index]
        epoch += 1


def open_mnist(root: Path) -> Any:
    """The MNIST run data as cyclekit's mnist presets open it (``cyclekit.run.open_data``)."""
    from cyclekit.recipes import load_config
    from cyclekit.run import open_data

    config = load_config(YARDSTICK_PRESET, ["train.device=cpu"])
    config, data = open_data(config, root)
    return config, data


# ---------------------------------------------------------------------------------------------
# sampling and scores


def make_generate(
    G: nn.Module, img_size: int, mode: str, batch_size: int, seed: int, out_size: int = MNIST_SIZE
) -> Callable[[Tensor, Tensor | None], Tensor]:
    """``generate(z, y)``: images in [-1, 1] at ``out_size`` px (resized when G's ``img_size``
    differs). ``mode`` eval: G in eval mode (running BatchNorm statistics, as cyclekit scores its
    generators); train: training-mode batches of ``batch_size`` in a shuffled order (batch
    statistics, as their scripts draw their sample grids)."""

    @torch.no_grad()
    def generate(z: Tensor, y: Tensor | None = None) -> Tensor:
        out = torch.empty(len(z), 1, img_size, img_size)
        if mode == "eval":
            G.eval()
            chunks = list(torch.arange(len(z)).split(256))
        else:
            G.train()
            order = torch.randperm(len(z), generator=torch.Generator().manual_seed(derive_seed(seed, 13)))
            chunks = list(order.split(batch_size))
        for index in chunks:
            out[index] = G(z[index], y[index]) if y is not None else G(z[index])
        if img_size != out_size:
            out = F.interpolate(out, size=(out_size, out_size), mode="bilinear", align_corners=False, antialias=True)
        return out.clamp_(-1, 1)

    return generate


def yardstick_scores(
    config: Any, data: Any, generate: Callable[[Tensor, Tensor | None], Tensor], conditional: bool, **noise: int
) -> dict[str, Any]:
    """cyclekit's ``yardstick_scores`` with the mnist presets' yardstick (``data_yardstick``);
    ``noise``: seed, latent_dim and per_class (samples per class)."""
    from cyclekit.recipes import sampler

    stick = sampler.data_yardstick(config, data, data.class_names)
    if stick is None:
        raise CyclekitError(f"{data.root} has no MNIST test files (t10k-*), which the yardstick needs; use --no-score")
    shim = SimpleNamespace(seed=noise["seed"], options=SimpleNamespace(latent_dim=noise["latent_dim"]))
    saved = sampler.EVAL_PER_CLASS
    sampler.EVAL_PER_CLASS = noise["per_class"]  # --samples (cyclekit's own runs score 200 per class)
    try:
        return sampler.yardstick_scores(stick, shim, generate, conditional)  # type: ignore[arg-type]
    finally:
        sampler.EVAL_PER_CLASS = saved


@torch.no_grad()
def sgan_test_accuracy(D: nn.Module, images: Tensor, labels: Tensor, img_size: int) -> float:
    """sgan's D as a classifier on the test images: argmax over the 10 real classes, eval mode."""
    D.eval()
    correct = 0
    for index in torch.arange(len(images)).split(500):
        _, probs = D(to_unit(resize_u8(images[index], img_size)))
        correct += int((probs[:, :N_CLASSES].argmax(1) == labels[index]).sum())
    return correct / len(images)


def write_grid(
    generate: Callable[[Tensor, Tensor | None], Tensor], conditional: bool, latent: int, seed: int, path: Path
) -> None:
    """A sample grid as cyclekit's samplers draw one: 10 per class (a row each) or 64 in rows of 8."""
    gen = torch.Generator().manual_seed(derive_seed(seed, 7))
    if conditional:
        y = torch.arange(N_CLASSES).repeat_interleave(10)
        z = torch.randn(len(y), latent, generator=gen)
        save_grid(generate(z, y), path, nrow=10, row_labels=[str(c) for c in range(N_CLASSES)])
    else:
        z = torch.randn(64, latent, generator=gen)
        save_grid(generate(z, None), path, nrow=8)


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train one eriklindernoren/PyTorch-GAN MNIST script's GAN for a time or a number of steps "
        "and score it with cyclekit's MNIST yardstick.",
    )
    parser.add_argument("gan", help=f"one of {', '.join(SPECS)}")
    parser.add_argument("--data-root", type=Path, required=True, help="folder of the MNIST idx files (optionally .gz)")
    parser.add_argument("--out", type=Path, required=True, help="folder for <gan>.json and <gan>.png")
    parser.add_argument("--seconds", type=float, help="training wall time in seconds")
    parser.add_argument("--steps", type=int, help="training steps (batches); with --seconds, whichever comes first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2000, help="generated images scored (a multiple of 10)")
    parser.add_argument("--sample-mode", choices=("eval", "train"), default="eval", help="G's BatchNorm when sampling")
    parser.add_argument(
        "--labels-per-class",
        type=int,
        help="sgan only: keep this many labels per class (their script uses all; cyclekit's mnist-sgan 10)",
    )
    parser.add_argument("--no-score", action="store_true", help="train only: skip the yardstick")
    parser.add_argument("--log-every", type=int, default=100, help="a progress line on stderr every N steps (0: none)")
    args = parser.parse_args(argv)
    if args.gan not in SPECS:
        raise UsageError(f"unknown GAN {args.gan!r}{did_you_mean(args.gan, SPECS)}; known: {', '.join(SPECS)}")
    if args.seconds is None and args.steps is None:
        raise UsageError("give --seconds S or --steps N (or both: whichever comes first)")
    if (args.seconds is not None and args.seconds <= 0) or (args.steps is not None and args.steps < 1):
        raise UsageError("--seconds must be > 0 and --steps >= 1")
    if args.samples < 2 * N_CLASSES or args.samples % N_CLASSES:
        raise UsageError(
            f"--samples must be a multiple of {N_CLASSES} and at least {2 * N_CLASSES}, got {args.samples}"
        )
    if args.labels_per_class is not None and (args.gan != "sgan" or args.labels_per_class < 1):
        raise UsageError("--labels-per-class is for sgan only, and at least 1")
    if not args.data_root.is_dir():
        raise UsageError(f"--data-root: no such folder: {args.data_root}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = SPECS[args.gan]
    torch.manual_seed(args.seed)
    config, data = open_mnist(args.data_root)
    train_u8, train_labels = data.train.images, data.train.labels  # 28 px uint8, every label
    images = resize_u8(train_u8, spec.img_size)
    noise = Noise(args.seed, spec.latent_dim)
    setup = SETUPS[args.gan](
        spec, noise, images=images, labels=train_labels, labels_per_class=args.labels_per_class, seed=args.seed
    )
    setup.G.train()
    setup.D.train()
    batches = epochs_of_batches(images, train_labels, spec.batch_size, derive_seed(args.seed, 3))
    steps, seen, losses = 0, 0, {}
    started = time.perf_counter()
    for epoch, i, real, labels in batches:
        losses = setup.step(i, real, labels)
        steps += 1
        seen += len(real)
        elapsed = time.perf_counter() - started
        if args.log_every and steps % args.log_every == 0:
            shown = " ".join(f"{k} {v:.4f}" for k, v in losses.items())
            print(f"[{args.gan}] step {steps} epoch {epoch} batch {i} {elapsed:.1f} s {shown}", file=sys.stderr)
        if (args.steps is not None and steps >= args.steps) or (args.seconds is not None and elapsed >= args.seconds):
            break
    train_seconds = time.perf_counter() - started

    result: dict[str, Any] = {
        "gan": args.gan,
        "upstream": f"{REPO}/blob/master/{spec.upstream}",
        "hyperparameters": spec.summary,
        "steps": steps,
        "epochs": round(seen / len(images), 4),
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / steps, 5),
        "threads": torch.get_num_threads(),
        "img_size": spec.img_size,
        "batch_size": spec.batch_size,
        "latent_dim": spec.latent_dim,
        "seed": args.seed,
        "sample_mode": args.sample_mode,
        "last_losses": {k: round(v, 4) for k, v in losses.items()},
    }
    result |= {k: v for k, v in setup.notes.items() if k in ("sgan_labels", "labelled_images")}

    args.out.mkdir(parents=True, exist_ok=True)
    score_generate = make_generate(setup.G, spec.img_size, args.sample_mode, spec.batch_size, args.seed)
    grid_generate = make_generate(  # the grid at the GAN's own size
        setup.G, spec.img_size, args.sample_mode, spec.batch_size, args.seed, out_size=spec.img_size
    )
    write_grid(grid_generate, spec.conditional, spec.latent_dim, args.seed, args.out / f"{args.gan}.png")
    result["grid"] = str(args.out / f"{args.gan}.png")

    if args.gan == "sgan" and data.test is not None:
        result["discriminator_test_accuracy"] = round(
            sgan_test_accuracy(setup.D, data.test.images, data.test.labels, spec.img_size), 4
        )
    if not args.no_score:
        result |= yardstick_scores(
            config,
            data,
            score_generate,
            spec.conditional,
            seed=args.seed,
            latent_dim=spec.latent_dim,
            per_class=args.samples // N_CLASSES,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        args = parse_args(argv)
        result = run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CyclekitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    (args.out / f"{args.gan}.json").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
