"""A recipe's players: who owns which optimizer.

A player is one optimizer and its learning-rate schedule, updating one or more of the recipe's
networks (named as the checkpoint stores them). A recipe declares its players (`Recipe.players`,
from its own options: WGAN's constraint decides its optimizer), and one builder
(`cyclekit.recipes.common.build_players`) makes the optimizers and schedules of any number of them,
stored in the checkpoint as ``opt_<name>`` and ``sched_<name>``. A third player, a network sized
from another one (CUT's projection head), is one more line in a recipe::

    Player("h", ("H",))  # updated with the generator's learning rate (optim.lr)

What a player declares is its paper's optimizer: the defaults of the `optim:` section, which a
config overrides key by key (see `cyclekit.config.resolve_optim`): ``optim.kind``, ``optim.beta1``,
``optim.beta2``, ``optim.alpha`` and ``optim.eps`` for every player, ``optim.lr`` for the players that read it (the
generator's side) and ``optim.lr_d`` for the discriminator's (the critic's). A key no player reads
(Adam's betas under RMSprop, ``lr_d`` in a recipe without a discriminator) is refused.

This module is a bottom layer: plain declarations, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cyclekit.errors import ConfigError

OptimKind = Literal["adam", "rmsprop"]
OPTIM_KINDS: tuple[str, ...] = ("adam", "rmsprop")
# linear: train.epochs at the initial rate, then train.decay_epochs down to zero (a `sched_<name>`
# in the checkpoint); constant: no scheduler at all (StackGAN's stages).
Schedule = Literal["linear", "constant"]
# The optimizer keys each kind reads besides lr and lr_d.
READS: dict[str, tuple[str, ...]] = {"adam": ("beta1", "beta2", "eps"), "rmsprop": ("alpha", "eps")}


@dataclass(frozen=True)
class Player:
    """One optimizer of a recipe: the networks it updates, its paper's settings and its schedule."""

    name: str  # the checkpoint's opt_<name> (and sched_<name>)
    nets: tuple[str, ...]  # the networks it updates, in order, under their checkpoint names
    lr_key: Literal["lr", "lr_d"] = "lr"  # the optim key that sets its learning rate
    kind: OptimKind = "adam"
    lr: float = 2e-4  # Adam 2e-4: Radford et al. 2016; Zhu et al. 2017; Isola et al. 2017
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's (beta1 0.5: Radford et al. 2016)
    alpha: float = 0.99  # RMSprop's smoothing constant (PyTorch's default)
    schedule: Schedule = "linear"
    eps: float = 1e-8  # added to the root of the second moment (PyTorch's default, Adam and RMSprop)

    def __post_init__(self) -> None:
        # A recipe's declaration, not user input: a wrong one is the recipe's bug, said in one line.
        if not self.name or not self.nets:
            raise ConfigError(f"player {self.name!r}: needs a name and at least one network")
        if self.kind not in OPTIM_KINDS:
            raise ConfigError(f"player {self.name}: unknown optimizer {self.kind!r}")


@dataclass(frozen=True)
class Settings:
    """What one player's optimizer is built with, resolved from the config."""

    kind: OptimKind
    lr: float
    betas: tuple[float, float] | None  # Adam
    alpha: float | None  # RMSprop
    eps: float = 1e-8  # Adam's and RMSprop's epsilon


def generator_and_discriminator(
    kind: OptimKind = "adam", lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), alpha: float = 0.99
) -> tuple[Player, Player]:
    """The two players of most recipes: ``g`` updates G (optim.lr), ``d`` updates D (optim.lr_d,
    else optim.lr), with one paper's optimizer."""
    return (
        Player("g", ("G",), "lr", kind, lr, betas, alpha),
        Player("d", ("D",), "lr_d", kind, lr, betas, alpha),
    )
