"""The recipe contract, in one place: every member that config loading, the training loop, the
run, bench and evaluation use. A recipe subclasses `Recipe`, fills in the class attributes and
implements the abstract methods; `cyclekit.recipes.RECIPES` maps names to such classes.

Class side (read when a config loads, before any data): ``name``, ``description``, ``Options``
(the frozen dataclass of the recipe's own config section), ``default_kind`` and ``needs`` (the
batch keys a step reads, as alternatives; a data source must give one of them), ``networks``
(its network slots, `model.<slot>`), ``defaults`` (raw config values the recipe starts from),
`fixed_keys`, `players`, ``translates`` (the bundle translates images, or samples) and `check`.
A recipe declares only what it is today: where its options lived in earlier cyclekits (and
what old configs recorded) is `cyclekit.migrate`'s, in tables by recipe name.
`build_networks` and `make_bundle` work from a config alone (rebuilding a bundle from a
checkpoint needs no data).

Instance side (one training process): built from the config and the run's data, a
`cyclekit.data.protocol.RunData` that the run located and opened once through the data source
(`cyclekit.run.open_data`: train and test splits as typed datasets; a recipe never finds
data itself and never compares data-kind names: it asks the source's capabilities). Members:
``config``, ``device``, ``state`` (everything a checkpoint holds), ``data`` (and ``root``, the
data folder read, or None), and the loop's methods: `steps_per_epoch`,
`batches`, `train_step`, `write_samples`, `write_bundle`, `data_summary`, `unscored_reason`; `evaluate` scores the
trained run (the run's results.json), empty by default, after `load_bundle` for `cyclekit eval`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from cyclekit.config import Config
from cyclekit.players import Player, generator_and_discriminator
from cyclekit.train.state import TrainingState

if TYPE_CHECKING:
    from cyclekit.data.protocol import RunData
    from cyclekit.inference.bundle import Bundle


class Recipe(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type]
    default_kind: ClassVar[str]
    needs: ClassVar[tuple[tuple[str, ...], ...]]
    defaults: ClassVar[Mapping[str, Any]] = {}
    # The network slots (model.<slot>: a network name and its options) -> what each one is.
    networks: ClassVar[Mapping[str, str]] = {"generator": "the generator", "discriminator": "the discriminator"}
    # True: the bundle translates images, scored on the data's test split (`cyclekit eval`);
    # False: it samples, scored by `evaluate`.
    translates: ClassVar[bool] = False

    config: Config
    device: torch.device
    state: TrainingState
    data: RunData

    # -- class side ------------------------------------------------------------------------------

    @classmethod
    def check(cls, config: Config) -> None:
        """Validate the model options against the data (run when the config loads); none by default."""
        return None

    @classmethod
    def fixed_keys(cls, options: Any) -> dict[str, tuple[Any, str]]:
        """Shared config keys the recipe's own options decide ("train.epochs" -> (value, which
        options)): set from them when the config loads, an error when a config says otherwise.
        None by default; StackGAN's stages add up to train.epochs."""
        return {}

    @classmethod
    def fit_to_data(cls, config: Config, root: Path | None) -> Config:
        """``config`` with what it leaves to the located data (``root``) filled in, before the
        datasets are built (the run records that config). As given by default; the labelled
        samplers take a class folder tree's image size, channels and number of classes."""
        return config

    @classmethod
    def players(cls, options: Any) -> tuple[Player, ...]:
        """The recipe's players (`cyclekit.players`): each an optimizer, the networks it updates
        (checkpoint names), its paper's settings (the `optim:` defaults, which may depend on the
        recipe's ``options``) and its schedule. By default G (optim.lr) and D (optim.lr_d), Adam
        2e-4, betas (0.5, 0.999), the linear schedule. Read when the config loads (its optim keys
        are checked against them) and by `cyclekit.recipes.common.build_players`."""
        return generator_and_discriminator()

    @classmethod
    @abstractmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        """The untrained networks, on the CPU, under the names a checkpoint stores them."""

    @classmethod
    @abstractmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """The inference bundle of ``nets`` and the networks it holds."""

    # -- instance side ---------------------------------------------------------------------------

    @abstractmethod
    def __init__(self, config: Config, data: RunData) -> None:
        """Build the networks, optimizers and schedules for ``data`` (opened by the run)."""

    @property
    def root(self) -> Path | None:
        """The folder the run's data is read from; None for a source that reads none."""
        data = self.__dict__.get("data")
        return data.root if data is not None else None

    @abstractmethod
    def steps_per_epoch(self) -> int: ...

    @abstractmethod
    def batches(self, epoch: int, start: int) -> Iterable[Any]:
        """The batches of ``epoch`` from batch index ``start`` on, in a fixed order for the seed."""

    @abstractmethod
    def train_step(self, batch: Any, step: int) -> Mapping[str, Tensor | float]:
        """One optimisation step; returns the losses to log, as tensors (no device sync)."""

    @abstractmethod
    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        """Sample grids of ``step`` into ``folder``, named ``step_{step:07d}*.png``."""

    @abstractmethod
    def data_summary(self) -> str:
        """Where the training data is and how much of it, for the start line."""

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        """The inference bundle of the current weights, replacing ``folder`` as a whole."""
        from cyclekit.inference.bundle import write_bundle

        write_bundle(folder, *self.make_bundle(self.config, self.state.nets, step, epoch))

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """Scores of the trained run beyond the translation metrics (results.json); none by default."""
        return {}

    def unscored_reason(self) -> str | None:
        """Why this run will end without scores (e.g. its data has no test split), known before it
        trains: said at the start and at the end of the run. None: it will be scored (or the
        recipe does not know in advance)."""
        return None

    def load_bundle(self, folder: Path, bundle: Bundle) -> None:
        """Put a sampling bundle's trained weights into this recipe's networks, for `evaluate`
        (`cyclekit eval RUN`): by default the network it samples from, kept under the same name.
        StackGAN's bundle holds its two generators chained as one network."""
        from cyclekit.inference.bundle import load_network

        assert bundle.samples is not None
        generator = load_network(folder, bundle, bundle.samples.network, self.device)
        self.state.nets[bundle.samples.network].load_state_dict(generator.state_dict())
