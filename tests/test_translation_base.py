"""The translation base (cyclekit/recipes/translation.py) and the test images evaluation reads through
the data's Source (`Source.test_images`). CycleGAN and Pix2Pix end to end: test_train_cyclegan.py,
test_pix2pix.py; the scores themselves: test_eval.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclekit.data.sources import SOURCES, PairedSource
from cyclekit.data.testimages import EvalImages
from cyclekit.errors import DataError
from cyclekit.evaluation.evaluate import EvalData
from cyclekit.recipes import RECIPES, load_config
from cyclekit.recipes.cyclegan import CycleGanRecipe
from cyclekit.recipes.pix2pix import Pix2PixRecipe
from cyclekit.recipes.translation import TranslationRecipe
from tests.test_pix2pix import write_pairs


def test_the_translation_recipes_share_one_base():
    translating = {name for name, recipe in RECIPES.items() if recipe.translates}
    assert translating == {"cyclegan", "pix2pix"}
    assert all(issubclass(RECIPES[name], TranslationRecipe) for name in translating)


def test_networks_take_the_image_channels_their_sizing_declares():
    cyc = load_config("horse2zebra-small", ["data.channels=1"])
    (g, g_opts), (d, d_opts) = CycleGanRecipe.net_specs(cyc)
    assert (g, d) == ("resnet", "patchgan")
    assert (g_opts["in_channels"], g_opts["out_channels"], d_opts["in_channels"]) == (1, 1, 1)
    # Pix2Pix's conditional D judges concat(source, target): twice the channels.
    p2p = load_config("facades-small", ["data.channels=1"])
    (_, g_opts), (_, d_opts) = Pix2PixRecipe.net_specs(p2p)
    assert (g_opts["in_channels"], g_opts["out_channels"], d_opts["in_channels"]) == (1, 1, 2)
    nets = Pix2PixRecipe.build_networks(p2p)
    assert list(nets) == ["G", "D"] and list(CycleGanRecipe.build_networks(cyc)) == ["G_AtoB", "G_BtoA", "D_A", "D_B"]
    # What the config sets is kept.
    given = load_config("facades-small", ["model.discriminator.in_channels=6"])
    assert Pix2PixRecipe.net_specs(given)[1][1]["in_channels"] == 6


def test_bundles_translate_the_recipes_directions():
    cyc = load_config("horse2zebra-small", ["model.generator.ngf=4", "model.generator.n_blocks=1"])
    bundle, modules = CycleGanRecipe.make_bundle(cyc, CycleGanRecipe.build_networks(cyc), 3, 1)
    assert bundle.translates == {"AtoB": "G_AtoB", "BtoA": "G_BtoA"} and list(modules) == ["G_AtoB", "G_BtoA"]
    assert bundle.domains == {"A": "horse", "B": "zebra"} and bundle.train_size == 64 and bundle.size_multiple == 4
    p2p = load_config("facades-small", ["pix2pix.direction=BtoA", "model.generator.ngf=4"])
    bundle, modules = Pix2PixRecipe.make_bundle(p2p, Pix2PixRecipe.build_networks(p2p), 3, 1)
    assert bundle.translates == {"BtoA": "G"} and list(modules) == ["G"]
    assert bundle.test_time.dropout and bundle.test_time.batch_norm == "sample" and bundle.size_multiple == 64


def test_evaluation_reads_the_test_images_through_the_runs_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = write_pairs(tmp_path / "pairs", 2, 3)
    cfg = load_config("facades-small", ["data.load_size=36", "data.crop_size=32", "model.generator.n_downs=5"])
    seen = []
    original = PairedSource.test_images.__func__  # type: ignore[attr-defined]

    def spy(cls, options, data, at, max_images=None):  # noqa: ANN001
        seen.append((cls.name, options.crop_size, at, max_images))
        return original(cls, options, data, at, max_images)

    monkeypatch.setattr(PairedSource, "test_images", classmethod(spy))
    images = EvalData.of(cfg.data, root).read(2)
    assert seen == [("paired", 32, root, 2)]
    assert isinstance(images, EvalImages) and images.paired and len(images.images["A"]) == 2
    assert images.images["A"][0].shape == (3, 32, 32)
    # --size: the same data read at another size.
    assert EvalData.of(cfg.data, root, 16).read().images["B"][0].shape == (3, 16, 16)
    # A bundle without its run: the folder read as the unpaired source reads it.
    bare = EvalData.folder(root, 24, 3)
    assert (bare.data.kind, bare.load_size, bare.crop_size, bare.preprocess) == ("unpaired", 24, 24, "resize_and_crop")
    assert torch.equal(bare.read().images["A"][0], EvalData.of(cfg.data, root, 24).read().images["A"][0])


def test_a_source_without_two_domains_has_no_test_images_to_translate():
    cfg = load_config("digits-cgan")
    with pytest.raises(DataError, match="no test images of two domains"):
        SOURCES["digits"].test_images(cfg.data.source, cfg.data, None)


class _Frames:
    """Aligned A/B frames made in memory: a Dataset with no files (no paths_a, no stack)."""

    root = None

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.rand(n, 3, 32, 32, generator=g) * 2 - 1
        self.b = self.a.flip(1)

    def __len__(self) -> int:
        return len(self.a)

    def epoch_plan(self, epoch: int) -> list[int]:
        return list(range(len(self.a)))

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        return {"A": self.a[item], "B": self.b[item]}

    def summary(self) -> str:
        return f"{len(self.a)} frames made in memory"


@pytest.mark.parametrize("recipe", [CycleGanRecipe, Pix2PixRecipe])
def test_a_source_without_files_gives_the_grids_its_first_items(recipe: type[TranslationRecipe]):
    """The fixed images of the sample grids come through the Dataset protocol when a source holds
    no files (before: CycleGAN read paths_a/paths_b off the dataset, a traceback for such a source)."""
    from cyclekit.data.protocol import Dataset, RunData

    preset = "horse2zebra" if recipe is CycleGanRecipe else "facades"
    sets = ["data.load_size=32", "data.crop_size=32", "model.generator.ngf=8", "model.discriminator.ndf=8"]
    sets += ["model.generator.n_blocks=2"] if recipe is CycleGanRecipe else ["model.generator.n_downs=5"]
    cfg = load_config(preset, sets)
    frames = _Frames(6)
    assert isinstance(frames, Dataset)
    data = RunData(SOURCES[cfg.data.kind], cfg.data, None, 0, frames, None)
    made = recipe(cfg, data)
    assert len(made.fixed_a) == len(made.fixed_b) == 4  # N_FIXED of the 6 frames
    assert torch.equal(made.fixed_a[0], frames.a[0]) and torch.equal(made.fixed_b[0], frames.b[0])
    step = made.train_step(next(iter(made.batches(0, 0))), 0)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in step.values())
