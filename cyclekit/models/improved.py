"""The MNIST networks of Salimans et al. 2016 ("Improved Techniques for Training GANs", Sec. 5 and
their code, openai/improved-gan, mnist_svhn_cifar10/train_mnist_feature_matching.py), for the
semi-supervised GAN (recipe sgan, preset mnist-sgan).

Discriminator (a permutation-invariant classifier): the image in [0, 1], flattened, Gaussian noise
of std 0.3 -> five weight-normalised dense layers of 1000, 500, 250, 250 and 250 ReLU units, each
followed by Gaussian noise of std 0.5 -> a weight-normalised dense layer to the K class logits
(fake implicit). The noise is active in training only. Weight normalisation as their
``nn.DenseLayer``: W = theta * scale / ||theta|| per output unit, the scale fixed (not trained)
in the hidden layers and trained in the last one, and set with the bias by a data-dependent
initialisation (`data_init`: each layer's pre-activations get zero mean and unit variance on a
batch of real images). Feature matching matches the last hidden layer's mean activation.

Generator: z (100-d) -> dense 500, batch norm without gain, softplus -> dense 500, the same ->
dense 784 with a trained weight-norm scale, sigmoid. Their z is uniform on [0, 1]: here G takes
cyclekit's standard normal z and maps it through the normal CDF, which makes it exactly uniform,
so the sampling contract (z ~ N(0, I)) of bundles and ONNX exports is unchanged. Outputs are
mapped from [0, 1] to cyclekit's [-1, 1], and the discriminator maps its input back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cyclekit.errors import ConfigError
from cyclekit.models._checks import positive
from cyclekit.models.capabilities import Capabilities, Sizing

D_HIDDEN = (1000, 500, 250, 250, 250)
G_HIDDEN = (500, 500)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ConfigError(f"image_shape: must be [C, H, W] with positive sizes, got {list(shape)}")


def _check_widths(name: str, widths: tuple[int, ...]) -> None:
    if not widths or any(w <= 0 for w in widths):
        raise ConfigError(f"{name}: widths must be > 0, at least one, got {list(widths)}")


@dataclass(frozen=True)
class ImprovedDiscriminatorOptions:
    """Options of `ImprovedGANDiscriminator` (Salimans et al. 2016's MNIST D)."""

    image_shape: tuple[int, ...] = (1, 28, 28)
    n_classes: int = 10
    hidden: tuple[int, ...] = D_HIDDEN
    input_noise: float = 0.3  # std of the Gaussian noise on the [0, 1] image
    hidden_noise: float = 0.5  # std of the Gaussian noise after each hidden layer

    def __post_init__(self) -> None:
        positive(self, "n_classes")
        _check_shape(self.image_shape)
        _check_widths("hidden", self.hidden)
        for name in ("input_noise", "hidden_noise"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ImprovedGeneratorOptions:
    """Options of `ImprovedGANGenerator` (Salimans et al. 2016's MNIST G)."""

    latent_dim: int = 100
    image_shape: tuple[int, ...] = (1, 28, 28)
    hidden: tuple[int, ...] = G_HIDDEN

    def __post_init__(self) -> None:
        positive(self, "latent_dim")
        _check_shape(self.image_shape)
        _check_widths("hidden", self.hidden)


class WeightNormDense(nn.Module):
    """A dense layer W = theta * scale / ||theta|| (Salimans and Kingma 2016), per output unit.

    ``scale`` is a trained parameter when ``train_scale``, else a buffer: saved and loaded with the
    weights but never updated by the optimizer (improved-gan's hidden layers).
    """

    def __init__(self, n_in: int, n_out: int, train_scale: bool = False) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.randn(n_out, n_in) * 0.1)
        scale = torch.ones(n_out)
        if train_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def weight(self) -> Tensor:
        return self.theta * (self.scale / self.theta.norm(dim=1).clamp_min(1e-12)).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight(), self.bias)

    @torch.no_grad()
    def data_init(self, x: Tensor) -> Tensor:
        """Scale and bias so that this batch's pre-activations have zero mean and unit variance
        per unit (improved-gan's ``init=True`` pass); returns those normalised pre-activations."""
        a = F.linear(x, self.weight())
        mean = a.mean(0)
        std = (a - mean).pow(2).mean(0).sqrt().clamp_min(1e-8)
        self.scale.div_(std)
        self.bias.copy_(-mean / std)
        return (a - mean) / std


class _Dense(nn.Module):
    """A plain dense layer with its own Glorot-uniform weights (Lasagne's default), kept apart
    from nn.Linear so cyclekit's DCGAN weight init (N(0, 0.02)) leaves it as the paper has it."""

    def __init__(self, n_in: int, n_out: int, bias: bool) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (n_in + n_out))
        self.weight = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class _Shift(nn.Module):
    """A learned per-unit offset: the beta of a batch norm without gain (improved-gan's ``g=None``)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(n))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.beta


def _noise(x: Tensor, std: float, training: bool) -> Tensor:
    return x + std * torch.randn_like(x) if training and std > 0 else x


class ImprovedGANDiscriminator(nn.Module):
    """Image -> K class logits, the "fake" class implicit; see the module docstring."""

    sizing: ClassVar[Sizing] = Sizing({"image_shape": "image_shape", "n_classes": "n_classes"})

    @classmethod
    def capabilities(cls, options: ImprovedDiscriminatorOptions) -> Capabilities:
        return Capabilities(
            heads=("classes",), image_size=options.image_shape[-1], label="Salimans et al. MNIST discriminator"
        )

    def __init__(self, config: ImprovedDiscriminatorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ImprovedDiscriminatorOptions()
        widths = [math.prod(cfg.image_shape), *cfg.hidden]
        self.hidden = nn.ModuleList(WeightNormDense(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.out = WeightNormDense(widths[-1], cfg.n_classes, train_scale=True)

    def _input(self, x: Tensor) -> Tensor:
        shape = tuple(self.config.image_shape)
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"ImprovedGANDiscriminator: expected input of shape (N, {', '.join(map(str, shape))}), "
                f"got {tuple(x.shape)}"
            )
        return _noise((x.flatten(1) + 1) / 2, self.config.input_noise, self.training)

    def _body(self, x: Tensor) -> Tensor:
        h = self._input(x)
        for i, layer in enumerate(self.hidden):
            h = F.relu(layer(h))
            if i < len(self.hidden) - 1:
                h = _noise(h, self.config.hidden_noise, self.training)
        return h

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer's activations (before its noise): what feature matching matches."""
        return self._body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(_noise(self._body(x), self.config.hidden_noise, self.training))

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """improved-gan's data-dependent initialisation on a batch of real images ``x`` (noise on,
        as theirs): layer by layer, scale and bias give unit-variance, zero-mean pre-activations."""
        h = self._input(x)
        for i, layer in enumerate([*self.hidden, self.out]):
            a = layer.data_init(h)
            if i < len(self.hidden):
                h = _noise(F.relu(a), self.config.hidden_noise, self.training)


class ImprovedGANGenerator(nn.Module):
    """z ~ N(0, I) -> image in [-1, 1]; see the module docstring."""

    sizing: ClassVar[Sizing] = Sizing({"latent_dim": "latent_dim", "image_shape": "image_shape"})

    @classmethod
    def capabilities(cls, options: ImprovedGeneratorOptions) -> Capabilities:
        return Capabilities(takes="latent", image_size=options.image_shape[-1], label="Salimans et al. MNIST generator")

    def __init__(self, config: ImprovedGeneratorOptions | None = None) -> None:
        super().__init__()
        self.config = cfg = config or ImprovedGeneratorOptions()
        layers: list[nn.Module] = []
        width = cfg.latent_dim
        for h in cfg.hidden:
            # improved-gan: batch_norm(DenseLayer(..., softplus), g=None): the dense layer's bias is
            # dropped, the batch norm has a beta and no gain, then softplus (their BN's eps is 1e-6).
            layers += [
                _Dense(width, h, bias=False),
                nn.BatchNorm1d(h, eps=1e-6, affine=False),
                _Shift(h),
                nn.Softplus(),
            ]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = WeightNormDense(width, math.prod(cfg.image_shape), train_scale=True)
        with torch.no_grad():  # Lasagne's Glorot-uniform theta for the output layer
            bound = math.sqrt(6.0 / (width + math.prod(cfg.image_shape)))
            self.out.theta.uniform_(-bound, bound)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"ImprovedGANGenerator: expected z of shape (N, {self.config.latent_dim}), got {tuple(z.shape)}"
            )
        uniform = 0.5 * (1 + torch.erf(z / math.sqrt(2)))  # N(0, 1) -> U(0, 1), the paper's noise
        x = torch.sigmoid(self.out(self.body(uniform)))
        return (2 * x - 1).view(z.shape[0], *self.config.image_shape)
