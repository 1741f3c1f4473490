"""What every recipe that samples labelled images shares (cGAN, ACGAN, SGAN, WGAN on the digits or
MNIST): the data from a labelled source, fixed noise (and labels) for the sample grids, a sampling
bundle that names its condition, and the honest yardstick of `cyclekit.evaluation.classifier` as
the run's scores. A recipe subclasses `ImageSampler`, says whether its generator is conditioned
on the class (``conditional``) and writes `train_step`, `build_networks` and its options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from cyclekit.config import Config
from cyclekit.data.folders import derive_seed
from cyclekit.data.protocol import Labelled, RunData
from cyclekit.data.sources import SOURCES
from cyclekit.device import resolve_device
from cyclekit.errors import ConfigError
from cyclekit.inference.bundle import Bundle, NetworkEntry, Sampling
from cyclekit.models import MODELS, build_model, capabilities, sizing
from cyclekit.recipe import Recipe
from cyclekit.recipes.common import net_spec
from cyclekit.train import distributed
from cyclekit.train.batches import n_batches, plan_batches

logger = logging.getLogger(__name__)

PER_CLASS = 10  # samples per class in a sample grid (one row per class)
N_SAMPLES = 64  # samples in an unconditional grid
EVAL_PER_CLASS = 200  # samples per class the yardstick scores
YARDSTICK_SEED = 0  # one classifier per data set, whatever the run's seed


def image_shape(config: Config) -> tuple[int, int, int]:
    shape = SOURCES[config.data.kind].image_shape(config.data)
    if shape is None:
        raise ConfigError(
            f"data.kind: recipe {config.recipe} samples images; the {config.data.kind} source gives points"
        )
    return shape


PLACEHOLDER_CLASSES = 2  # what a class-folder config without n_classes is checked with until its data is read


def n_classes(config: Config) -> int:
    """The number of classes: the generator's ``n_classes`` when given, else the source's (10 for
    the digits and MNIST). A class folder tree tells its own (`fit_to_data`, when a run opens its
    data, records it in model.generator.n_classes); until then the config is checked with a
    placeholder."""
    given = config.model.generator.get("n_classes")
    if isinstance(given, int):
        return given
    source = SOURCES[config.data.kind]
    known = source.n_classes(config.data)
    if known is not None:
        return known
    if "label" in source.batch_keys:
        return PLACEHOLDER_CLASSES  # labels whose classes the data tells (its `inspect`)
    raise ConfigError(f"model.generator.n_classes: required with data.kind {config.data.kind} (its class folders)")


def fit_to_data(config: Config, root: Path | None) -> Config:
    """``config`` with what it leaves to the data filled in from the located data (the source's
    `inspect`): image size and channels (data.size, data.channels left null) and, for a
    conditional generator, model.generator.n_classes; checked again as a whole. The run records
    the filled-in config, so a resume, `cyclekit eval` and a rebuilt bundle need no data."""
    from cyclekit.recipes import config_from_dict

    data = config.data
    found = SOURCES[data.kind].inspect(data.source, data, root)
    if not found:
        return config
    raw = config.to_dict()
    section, own = raw["data"], raw["data"].get(data.kind, {})
    filled: list[str] = []
    if "size" in found and own.get("size", 0) is None:
        own["size"] = found["size"]
        filled.append(f"data.size {found['size']}")
    if "channels" in found and section.get("channels", 0) is None:
        section["channels"] = found["channels"]
        filled.append(f"data.channels {found['channels']}")
    gen = raw["model"]["generator"]
    takes_classes = gen.get("name") in MODELS and sizing(gen["name"]).takes("n_classes")
    if "n_classes" in found and takes_classes:
        given = gen.get("n_classes")
        if given is None:
            gen["n_classes"] = found["n_classes"]
            filled.append(f"model.generator.n_classes {found['n_classes']}")
        elif given != found["n_classes"]:
            raise ConfigError(
                f"model.generator.n_classes: {given}, but {root} has {found['n_classes']} classes; "
                "leave it out to take the data's"
            )
    if not filled:
        return config
    try:
        fitted = config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc} ({', '.join(filled)} came from the data in {root}; set them to values that fit)"
        ) from None
    logger.info("from the data in %s: %s", root, ", ".join(filled))
    return fitted


class ImageSampler(Recipe):
    """The shared half of a labelled-image sampling recipe (see the module docstring)."""

    conditional: ClassVar[bool] = True  # the generator takes a class: G(z, y)
    semi_supervised: ClassVar[bool] = False  # trains on unlabelled items too (data.labels_per_class)
    needs = (("image", "label"),)
    default_kind = "digits"

    @classmethod
    def check(cls, config: Config) -> None:
        if "embedding" in SOURCES[config.data.kind].batch_keys:
            raise ConfigError(
                f"data.kind: recipe {cls.name} samples from class-labelled or plain image sources; "
                f"{config.data.kind} gives captioned images (train them with recipe stackgan)"
            )
        if getattr(config.data.source, "labels_per_class", None) is not None and not cls.semi_supervised:
            raise ConfigError(
                f"data.labels_per_class: recipe {cls.name} trains on labelled images only; "
                "keeping some labels is for the semi-supervised GAN (recipe sgan)"
            )

    @classmethod
    def check_conditional_pair(
        cls, config: Config, d_needs: str, *, heads: tuple[str, ...], d_condition: str = "none"
    ) -> None:
        """A class-conditional G(z, y), a D with the ``heads`` the recipe reads that takes the
        ``d_condition`` it gives (as the networks declare them; ``d_needs`` says it in words), and no
        wgan-gp (no gradient penalty step): the checks the class-conditional recipes share."""
        if config.options.gan_mode == "wgan-gp":
            raise ConfigError(
                f"{cls.name}.gan_mode: {cls.name} has no gradient penalty step; train Wasserstein GANs with recipe wgan"
            )
        d_caps = capabilities(*cls.net_spec(config, "discriminator"), key="model.discriminator")
        if d_caps.heads != heads or d_caps.condition.kind != d_condition:
            raise ConfigError(f"model.discriminator: {cls.name} needs {d_needs}")
        g_caps = capabilities(*cls.net_spec(config, "generator"), key="model.generator")
        if g_caps.takes != "latent" or g_caps.condition.kind != "class":
            raise ConfigError(f"model.generator: {cls.name} needs G(z, y): name cond_g")

    @classmethod
    def net_spec(cls, config: Config, part: str) -> tuple[str, dict[str, Any]]:
        """The network's name and options, with the sizes the data fixes filled in unless given."""
        c, size, _ = image_shape(config)
        if part == "discriminator":  # PacGAN (wgan.pack): packs of m samples side by side in the channel axis
            c *= getattr(config.options, "pack", 1)
        takes = sizing(getattr(config.model, part)["name"], key=f"model.{part}")
        data: dict[str, Any] = {"channels": c, "image_size": size, "image_shape": (c, size, size)}
        if part == "generator":
            data["latent_dim"] = config.options.latent_dim
        if takes.takes("n_classes"):  # a class-conditional network: one-hot of the data's classes
            data["n_classes"] = n_classes(config)
        return net_spec(config, part, **takes.fill(data))

    @classmethod
    def build_networks(cls, config: Config) -> dict[str, torch.nn.Module]:
        """G and D (untrained, on the CPU) from model.generator and model.discriminator, sized by the data."""
        return {
            "G": build_model(*cls.net_spec(config, "generator"), key="model.generator"),
            "D": build_model(*cls.net_spec(config, "discriminator"), key="model.discriminator"),
        }

    @classmethod
    def fit_to_data(cls, config: Config, root: Path | None) -> Config:
        """Size, channels and n_classes the config leaves to the data (see `fit_to_data`)."""
        return fit_to_data(config, root)

    def __init__(self, config: Config, data: RunData) -> None:
        self.device = resolve_device(config.train.device)
        self.data = data
        self.config = config
        self.options = config.options
        self.dataset = data.train
        # Class names come from a labelled source; an unconditional sampler also trains on a
        # source without labels (an image folder), with no classes and no yardstick.
        self.labelled = data.labelled
        self._unscored = self._why_unscored()  # decided (the test split's layout checked when opened) before training
        self.class_names: list[str] = list(data.class_names) if self.labelled else []
        world = distributed.current().world
        if len(self.dataset) < config.data.batch_size * world:
            raise ConfigError(
                f"data.batch_size: {config.data.batch_size} is larger than the dataset ({len(self.dataset)} images)"
            )
        self.state = self.training_state(config, self.build_networks(config))
        # Fixed noise and labels for the sample grids, from their own generator (never the training RNG).
        gen = torch.Generator().manual_seed(derive_seed(config.seed, 7))
        k = len(self.class_names)
        self.fixed_y = torch.arange(k).repeat_interleave(PER_CLASS) if self.conditional else None
        n = k * PER_CLASS if self.conditional else N_SAMPLES
        self.fixed_z = torch.randn(n, config.options.latent_dim, generator=gen)

    def training_state(self, config: Config, nets: dict[str, torch.nn.Module]) -> Any:
        from cyclekit.recipes.common import generator_and_discriminator

        players = self.players(config.options)
        return generator_and_discriminator(config, nets, self.device, self.steps_per_epoch(), players)

    # -- loop protocol --------------------------------------------------------------------------

    def data_summary(self) -> str:
        text = self.dataset.summary()
        if self.root is not None and str(self.root) not in text:
            text += f", from {self.root}"
        return text

    def unscored_reason(self) -> str | None:
        """Why the run will have no yardstick scores (no labels, or no test split); None when it will."""
        return self._unscored

    def _why_unscored(self) -> str | None:
        data = self.config.data
        if not self.labelled:
            return f"the {data.kind} data has no labels, and the yardstick that scores a run needs labelled test images"
        if self.data.test is None:
            return (
                f"{self.root} has no test split ({self.data.source.test_layout}), which the yardstick "
                "that scores the run needs"
            )
        return None

    def steps_per_epoch(self) -> int:
        return n_batches(len(self.dataset), self.config.data.batch_size, drop_last=True)

    def batches(self, epoch: int, start: int) -> Iterator[dict[str, Tensor]]:
        data = self.config.data
        plan = self.dataset.epoch_plan(epoch)
        yield from plan_batches(
            self.dataset, plan, data.batch_size, start, data.workers, drop_last=True, device=self.device, epoch=epoch
        )

    def noise(self, n: int) -> Tensor:
        """Latent noise for ``n`` generated samples (from the training RNG)."""
        return torch.randn(n, self.config.options.latent_dim, device=self.device)

    def random_labels(self, n: int) -> Tensor:
        """Labels for generated samples, uniform over the classes (from the training RNG)."""
        return torch.randint(len(self.class_names), (n,), device=self.device)

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        G = self.state.nets["G"]
        was_training = G.training
        G.eval()
        try:
            z = z.to(self.device)
            out = [
                (G(zc, yc.to(self.device)) if y is not None else G(zc)).cpu()
                for zc, yc in zip(z.split(256), (y if y is not None else z).split(256), strict=True)
            ]
            return torch.cat(out)
        finally:
            G.train(was_training)

    def write_samples(self, folder: Path, step: int, epoch: int) -> list[Path]:
        from cyclekit.data.images import save_grid

        path = folder / f"step_{step:07d}.png"
        folder.mkdir(parents=True, exist_ok=True)
        samples = self.generate(self.fixed_z, self.fixed_y)
        if self.conditional:
            save_grid(samples, path, nrow=PER_CLASS, row_labels=self.class_names)
        else:
            save_grid(samples, path, nrow=8)
        return [path]

    # -- bundle ---------------------------------------------------------------------------------

    @classmethod
    def make_bundle(
        cls, config: Config, nets: Mapping[str, torch.nn.Module], step: int, epoch: int
    ) -> tuple[Bundle, dict[str, torch.nn.Module]]:
        """A sampling bundle of ``nets["G"]``, naming its classes when it is conditioned on them."""
        shape = image_shape(config)
        classes = tuple(str(i) for i in range(n_classes(config))) if cls.conditional else ()
        bundle = Bundle(
            recipe=cls.name,
            networks={"G": NetworkEntry(*cls.net_spec(config, "generator"))},
            samples=Sampling("G", config.options.latent_dim, "image", classes=classes, stages=(shape[1],)),
            channels=shape[0],
            train_size=shape[1],
            step=step,
            epoch=epoch,
            run=config.name,
        )
        return bundle, {"G": nets["G"]}

    def write_bundle(self, folder: Path, step: int, epoch: int) -> None:
        """The bundle of `make_bundle`, its classes named as the training data names them (class
        folders, an MNIST folder's classes.txt), so sampling and export use the same names."""
        from cyclekit.inference.bundle import with_class_names, write_bundle

        bundle, modules = self.make_bundle(self.config, self.state.nets, step, epoch)
        write_bundle(folder, with_class_names(bundle, self.class_names), modules)

    # -- scores ---------------------------------------------------------------------------------

    def yardstick(self) -> Any:
        """The classifier yardstick of this run's data (`data_yardstick`); None without a test split
        or without labels."""
        if not self.labelled:
            return None
        if not hasattr(self, "_yardstick"):  # once per run: the data is hashed, the classifier loaded
            self._yardstick = data_yardstick(self.config, self.data, self.class_names)
        return self._yardstick

    def evaluate(self, run_dir: Path) -> dict[str, Any]:
        """The yardstick's scores of samples from fixed noise (`yardstick_scores`: conditional
        accuracy for a conditional generator, EVAL_PER_CLASS samples of each class), next to the
        recipe's own; without a yardstick (no labels or no test split), only the recipe's own."""
        stick = self.yardstick()
        if stick is None:
            return self.extra_scores(run_dir)
        return yardstick_scores(stick, self.config, self.generate, self.conditional) | self.extra_scores(run_dir)

    def extra_scores(self, run_dir: Path) -> dict[str, Any]:
        """A recipe's own scores beside the yardstick's (SGAN: its discriminator as a classifier)."""
        return {}


def data_yardstick(config: Config, data: RunData, class_names: list[str]) -> Any:
    """The classifier yardstick of a run's labelled data (every label kept): trained once per data
    set, with a fixed seed, and kept in the cache (``yardsticks/<kind>-<content hash>.pt``), so
    every run on the same data is measured with the same classifier. None without a test split.
    Its ``identity`` (the cache file's stem as id, a hash of the data alone, the classifier's
    settings and image counts) is what `yardstick_scores` records as ``yardstick``."""
    import hashlib

    from cyclekit.data.catalogue import default_cache_dir
    from cyclekit.errors import CyclekitError
    from cyclekit.evaluation import classifier
    from cyclekit.evaluation.classifier import Yardstick

    train, test = data.build("train", all_labels=True), data.test
    if test is None:
        return None
    assert isinstance(train, Labelled) and isinstance(test, Labelled)
    (x, y), (xt, yt) = train.tensors(), test.tensors()
    c = classifier  # its training settings are part of the key: other settings, another classifier
    settings = (c.STATE_VERSION, c.STEPS, c.MIN_EPOCHS, c.BATCH_SIZE, c.LR, c.DROPOUT, c.SHIFT, YARDSTICK_SEED)
    digest = hashlib.sha256(f"{settings} {class_names}".encode())
    data_digest = hashlib.sha256()  # the data alone: which images and labels, whatever classifier
    for t in (train.images, train.labels, test.images, test.labels):
        raw = t.contiguous().numpy().tobytes()
        digest.update(raw)
        data_digest.update(raw)
    path = default_cache_dir() / "yardsticks" / f"{config.data.kind}-{digest.hexdigest()[:16]}.pt"
    stick = None
    if path.is_file():
        try:
            stick = Yardstick.load(path)
        except CyclekitError:
            path.unlink()  # damaged: cyclekit's own file, rebuilt below
    if stick is None:
        stick = Yardstick.fit(x, y, xt, yt, len(class_names), YARDSTICK_SEED, class_names)
        path.parent.mkdir(parents=True, exist_ok=True)
        stick.save(path)
    # Who scored a run, recorded with its scores (see `evaluate`): the cache file's stem names
    # classifier settings and data; the data hash the images and labels alone.
    stick.identity = {
        "id": path.stem,
        "data_hash": data_digest.hexdigest()[:16],
        "classifier": (
            f"SmallClassifier steps>={c.STEPS} min_epochs {c.MIN_EPOCHS} batch {c.BATCH_SIZE} lr {c.LR} "
            f"dropout {c.DROPOUT} shift {c.SHIFT} seed {YARDSTICK_SEED} (format {c.STATE_VERSION})"
        ),
        "train_images": len(x),
        "test_images": len(xt),
    }
    return stick


def yardstick_scores(
    stick: Any, config: Config, generate: Callable[[Tensor, Tensor | None], Tensor], conditional: bool
) -> dict[str, Any]:
    """The yardstick's scores of ``generate``'s samples from fixed noise (from the run's seed):
    conditional accuracy (a conditional generator, EVAL_PER_CLASS samples of each class), classes
    covered and the Frechet distance in the classifier's feature space, next to the classifier's
    own test accuracy, and which yardstick it was (``yardstick``: its id, data hash, settings)."""
    k = stick.n_classes
    gen = torch.Generator().manual_seed(derive_seed(config.seed, 11))
    z = torch.randn(k * EVAL_PER_CLASS, config.options.latent_dim, generator=gen)
    y = torch.arange(k).repeat_interleave(EVAL_PER_CLASS) if conditional else None
    scores = stick.score(generate(z, y), y)
    out: dict[str, Any] = {}
    if "conditional_accuracy" in scores:
        out["conditional_accuracy"] = round(scores["conditional_accuracy"], 4)
    ceiling = round(scores["ceiling"], 4)
    identity = getattr(stick, "identity", {})
    out |= {
        "classifier_test_accuracy": ceiling,
        "classes_covered": scores["classes_covered"],
        "of_classes": k,
        "frechet_classifier": round(scores["frechet"], 4),
        "class_histogram": scores["class_histogram"],
        "samples_scored": len(z),
        "note": scores["note"],
        "yardstick": {
            "id": identity.get("id"),
            "data_hash": identity.get("data_hash"),
            "classifier_test_accuracy": ceiling,
            "classifier": identity.get("classifier"),
            "train_images": identity.get("train_images"),
            "test_images": identity.get("test_images"),
        },
    }
    return out
