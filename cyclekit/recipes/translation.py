"""What every recipe that translates images shares (CycleGAN, Pix2Pix), as `ImageSampler` is for
the recipes that sample: the preamble (device, datasets, the evaluation transform, the networks
with their players as one training state), the fixed test images of the sample grids, the grid
itself, the networks sized from the data (each network's declared `sizing` takes the image
channels) and the translation bundle of the directions a recipe translates. A recipe subclasses
`TranslationRecipe`, names its networks (``nets``: checkpoint name -> model slot) and writes its
own maths: `train_step`, `sample_rows` and `make_bundle` (through `translation_bundle`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from cyclekit.config import Config
from cyclekit.data.protocol import RunData
from cyclekit.device import resolve_device
from cyclekit.errors import DataError
from cyclekit.models import build_model, sizing
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import (
    N_FIXED,
    check_crop_for_generator,
    check_image_discriminator,
    net_size_needs,
    net_spec,
    players_state,
    save_rows,
)
from cyclekit.train.batches import n_batches, plan_batches

if TYPE_CHECKING:
    from cyclekit.inference.bundle import Bundle, TestTime

Spec = tuple[str, dict[str, Any]]


class TranslationRecipe(Recipe):
    """The shared half of an image-to-image translation recipe (see the module docstring)."""

    translates = True
    # checkpoint name -> the model slot it is built from (model.<slot>), in the order the
    # checkpoint, the players and the weight initialisation take them
    nets: ClassVar[Mapping[str, str]] = {"G": "generator", "D": "discriminator"}
    # The discriminator judges this many images stacked on the channels: 1, or 2 for a conditional
    # discriminator that sees the source image beside the target (Pix2Pix's D(x, y)).
    judged_images: ClassVar[int] = 1
    # The sample grids and the fixed test images: True, aligned pairs (input | output | target);
    # False, each domain's own first test images.
    paired: ClassVar[bool] = False

    options: Any
    eval_transform: Any
    fixed_a: list[Tensor]  # the fixed test images of the sample grids, per domain (aligned when paired)
    fixed_b: list[Tensor]

    # -- class side ------------------------------------------------------------------------------

    @classmethod
    def net_specs(cls, config: Config) -> tuple[Spec, Spec]:
        """(generator, discriminator) names and options, the image channels filled in where each
        network's declared `sizing` takes them (unless the config sets them)."""
        c = config.data.channels
        return cls._sized(config, "generator", c), cls._sized(config, "discriminator", cls.judged_images * c)

    @staticmethod
    def _sized(config: Config, part: str, channels: int) -> Spec:
        takes = sizing(getattr(config.model, part)["name"], key=f"model.{part}")
        return net_spec(config, part, **takes.fill({"channels": channels}))

    @classmethod
    def check(cls, config: Config) -> None:
        """Crops the generator can take and the discriminator can judge."""
        (g_arch, g_opts), (d_arch, d_opts) = cls.net_specs(config)
        check_crop_for_generator(config, g_arch, g_opts)
        check_image_discriminator(config, d_arch, d_opts, config.options.gan_mode)

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        """The networks of ``nets`` (untrained, on the CPU): what a checkpoint's weights load into."""
        specs = dict(zip(("generator", "discriminator"), cls.net_specs(config), strict=True))
        return {name: build_model(*specs[part], key=f"model.{part}") for name, part in cls.nets.items()}

    @classmethod
    def translation_bundle(
        cls,
        config: Config,
        networks: Mapping[str, torch.nn.Module],
        translates: Mapping[str, str],
        step: int,
        epoch: int,
        test_time: TestTime | None = None,
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """The bundle of the generators ``networks`` (name -> trained module), translating
        ``translates`` (direction -> network name), with the data's domains, channels and sizes."""
        from cyclekit.inference.bundle import Bundle, NetworkEntry

        data = config.data
        (g_arch, g_opts), _ = cls.net_specs(config)
        multiple, min_size = net_size_needs(next(iter(networks.values())))
        entry = NetworkEntry(g_arch, g_opts)
        extra = {"test_time": test_time} if test_time is not None else {}
        bundle = Bundle(
            recipe=cls.name,
            networks={name: entry for name in networks},
            translates=dict(translates),
            channels=data.channels,
            size_multiple=multiple,
            min_size=min_size,
            domains={"A": data.domain_a, "B": data.domain_b},
            **extra,
            train_size=data.crop_size,
            load_size=data.load_size if data.preprocess != "none" else None,
            preprocess=data.preprocess,
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, dict(networks)

    # -- instance side ---------------------------------------------------------------------------

    def __init__(self, config: Config, data: RunData) -> None:
        from cyclekit.data.transforms import build_eval_transform

        self.config = cfg = config
        self.options = config.options or self.Options()
        self.data = data
        self.device = resolve_device(cfg.train.device)
        (self.g_arch, self.g_opts), (self.d_arch, self.d_opts) = self.net_specs(cfg)
        self.dataset = data.train
        self.test = data.test  # built with the evaluation transform; None without a test split
        d = cfg.data
        self.eval_transform = build_eval_transform(d.preprocess, d.load_size, d.crop_size, d.channels)
        self.fixed_a, self.fixed_b = self._fixed_pairs() if self.paired else self._fixed_sides()
        config_keys = {name: f"model.{part}" for name, part in self.nets.items()}
        self.state = players_state(
            cfg,
            self.players(cfg.options),
            self.build_networks(cfg),
            self.device,
            self.steps_per_epoch(),
            self.state_extras(),
            config_keys=config_keys,
        )

    def state_extras(self) -> dict[str, Any]:
        """What the training state holds besides networks, optimizers and schedules (CycleGAN's
        image pools); made before the networks are built."""
        return {}

    def _fixed_pairs(self) -> tuple[list[Tensor], list[Tensor]]:
        """The first few test pairs (training pairs when there is no test split)."""
        from cyclekit.data.protocol import PairStack, first_items

        fixed_from: Any = self.test if self.test is not None else self.dataset
        if not isinstance(fixed_from, PairStack):  # a source with no files: its first items
            a, b = first_items(fixed_from, ("A", "B"), N_FIXED)
            return a, b
        a, b = fixed_from.stack(range(min(N_FIXED, len(fixed_from))), self.eval_transform)
        return list(a), list(b)

    def _fixed_sides(self) -> tuple[list[Tensor], list[Tensor]]:
        """The first few test images per domain (training images when there is no test split);
        lists, as with preprocess none or scale_width their sizes may differ."""
        from cyclekit.data.images import load_image
        from cyclekit.data.protocol import DomainFiles, first_items

        out = []
        train, test = self.dataset, self.test
        if not isinstance(train, DomainFiles):  # a source with no files: its first items
            shown = test if test is not None else train
            a, b = first_items(shown, ("A", "B"), N_FIXED)
            return a, b
        held = (test.paths_a, test.paths_b) if isinstance(test, DomainFiles) else ([], [])
        sides = ((train.paths_a, held[0]), (train.paths_b, held[1]))
        for paths, files in sides:
            picked = []
            for path in list(files) + list(paths):
                try:
                    picked.append(self.eval_transform(load_image(path, self.config.data.channels)))
                except DataError:
                    continue
                if len(picked) == N_FIXED:
                    break
            out.append(picked)
        return out[0], out[1]

    # -- loop protocol --------------------------------------------------------------------------

    def data_summary(self) -> str:
        return self.dataset.summary()

    def steps_per_epoch(self) -> int:
        # An unpaired epoch is max(|A|, |B|) samples, a paired one a pass over the pairs: len() of either.
        return n_batches(len(self.dataset), self.config.data.batch_size, drop_last=False)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Any]]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        return plan_batches(
            self.dataset, plan, data.batch_size, start, data.workers, drop_last=False, device=self.device, epoch=epoch
        )

    # -- outputs --------------------------------------------------------------------------------

    def sample_rows(self) -> list[Tensor]:
        """The sample grid's images, three a row (the recipe's own: what it shows of the fixed images)."""
        raise NotImplementedError

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        """One grid per call, three images a row (`sample_rows`)."""
        return save_rows(self.sample_rows(), folder / f"step_{step:07d}.png", columns=3)
