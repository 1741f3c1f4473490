"""What a network can do, declared by the network itself, so recipes ask instead of naming models.

Two levels, both known without data and without building anything (or, for feature taps, from a
network built on the meta device):

- `Sizing`, a class attribute (``sizing``): what the data decides. It maps data quantities to the
  option that takes them, and lists the only image sides the network can be built for. It is read
  before the options are, because the data fills those options in.

  Data quantities: ``channels`` (image channels, packed samples included), ``image_size`` (the
  side), ``image_shape`` ([C, H, W]), ``features`` (the length of a flat sample: 2 for the ring),
  ``latent_dim`` (the noise), ``n_classes`` (the class count), ``embed_dim`` (the embedding length).

- `Capabilities`, from a classmethod ``capabilities(options)`` on the network class: what this
  network, with these options, takes and gives: the input it takes (image, latent noise, flat
  points), its size multiple and minimum side, its fixed image side, the condition it takes (none,
  a class one-hot, an embedding vector), its heads (the outputs of ``forward``, in order) and how
  many layers `FeatureTaps.features` can tap.

A network built by a plain function, without declarations, gets a generic declaration: the data
fills nothing in, and the size multiple and minimum side are read from a copy built on the meta
device (its ``size_multiple`` and ``min_size`` attributes, 1 when absent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from torch import Tensor

ConditionKind = Literal["none", "class", "embedding"]
Takes = Literal["image", "latent", "points"]

# Heads: what forward returns, in order. "image" (an image, or a batch of images), "points" (flat
# samples), "logit" (one real/fake logit per sample), "patch_logits" (a map of logits, one per
# patch), "classes" (K class logits), "reconstruction" (the input reconstructed: an autoencoder),
# "mu" and "log_sigma" (conditioning augmentation's distribution).


@dataclass(frozen=True)
class Condition:
    """The condition a network takes besides its main input: none, a class index (one-hot of
    ``size`` classes inside the network) or an embedding vector of ``size`` values."""

    kind: ConditionKind = "none"
    size: int = 0


NO_CONDITION = Condition()


@dataclass(frozen=True)
class Sizing:
    """What the data decides of a network, known from its class alone (see the module docstring)."""

    # data quantity -> the option (or options) taking it
    options: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    image_sizes: tuple[int, ...] = ()  # the only image sides it can be built for; () = not fixed
    rule: str = ""  # how those sides are made, for messages: "8 x 2^k"

    def takes(self, quantity: str) -> bool:
        return quantity in self.options

    def fill(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (data quantity -> value) as the options that take them; the rest left out."""
        filled: dict[str, Any] = {}
        for quantity, value in values.items():
            names = self.options.get(quantity, ())
            for name in (names,) if isinstance(names, str) else names:
                filled[name] = value
        return filled

    def sizes_text(self) -> str:
        """The fixed sides in words: "8 x 2^k: 16, 32, 64 or 128"."""
        sides = [str(s) for s in self.image_sizes]
        listed = sides[0] if len(sides) == 1 else f"{', '.join(sides[:-1])} or {sides[-1]}"
        return f"{self.rule}: {listed}" if self.rule else listed


NO_SIZING = Sizing()


@dataclass(frozen=True)
class Capabilities:
    """What one network with its options takes and gives (see the module docstring)."""

    takes: Takes = "image"
    heads: tuple[str, ...] = ("image",)
    condition: Condition = NO_CONDITION
    size_multiple: int = 1  # image sides must be multiples of this
    min_size: int = 1  # the smallest image side it takes
    image_size: int | None = None  # the one side it takes or gives (fixed-size networks)
    label: str = ""  # how messages name its kind: "U-Net", "PatchGAN"
    depth_option: str | None = None  # the option setting its halvings (and so its size multiple / minimum)
    feature_taps: int = 0  # `features(x, layers)` taps layers 0 .. feature_taps - 1


@runtime_checkable
class Declares(Protocol):
    """A network class that declares what it can do."""

    sizing: ClassVar[Sizing]

    @classmethod
    def capabilities(cls, options: Any) -> Capabilities: ...


@runtime_checkable
class FeatureTaps(Protocol):
    """A network whose intermediate activations can be tapped by index into its layer list (as the
    contrastive CUT recipe taps the ResNet generator's layers 0, 4, 8, 12 and 16)."""

    def features(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """The outputs of the given layers, in the order asked."""
        ...

    def feature_channels(self, layers: Sequence[int]) -> list[int]:
        """The channel counts of those outputs, without running anything."""
        ...


def check_layers(layers: Sequence[int], count: int, what: str) -> list[int]:
    """``layers`` as a list of ints, each a valid index into ``count`` layers (ValueError naming ``what``)."""
    layers = [int(i) for i in layers]
    if not layers:
        raise ValueError(f"{what}: no layers asked for")
    bad = [i for i in layers if not 0 <= i < count]
    if bad:
        raise ValueError(f"{what}: layer {bad[0]} is not one of its {count} layers (0 .. {count - 1})")
    return layers
