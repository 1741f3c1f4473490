"""The reference code's published pretrained generators, fetched and imported into bundles.

The URLs are the ones the reference's scripts/download_cyclegan_model.sh and
download_pix2pix_model.sh use. Each file is one generator (a CycleGAN model maps one way: both
horse2zebra and zebra2horse are published), trained at 256 px. No checksums are published, so a
download is checked by importing it: a file that is not a generator of the expected family is
deleted and named, before anything is written (a bundle already in the output folder stays).
Fetching goes through `cyclekit.fetch`, as the datasets do: cached, resumed after an
interruption, atomic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cyclekit.data.catalogue import default_cache_dir
from cyclekit.errors import CyclekitError, did_you_mean
from cyclekit.fetch import DownloadError, ProgressFn, download_file
from cyclekit.inference.bundle import Bundle
from cyclekit.interop.reference import REFERENCE_TRAIN_SIZE, Imported, import_files, refuse_foreign_folder

CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    family: str  # cyclegan (ResNet, 9 blocks, instance norm) or pix2pix (U-Net 256, batch norm)
    source: str  # domain A: what it takes
    target: str  # domain B: what it makes
    url: str
    note: str = ""


def _cyclegan(name: str, source: str, target: str, note: str = "") -> PretrainedModel:
    return PretrainedModel(name, "cyclegan", source, target, CYCLEGAN_URL.format(name=name), note)


def _pix2pix(name: str, source: str, target: str, note: str = "") -> PretrainedModel:
    return PretrainedModel(name, "pix2pix", source, target, PIX2PIX_URL.format(name=name), note)


_MODELS = [
    _cyclegan("apple2orange", "apple", "orange"),
    _cyclegan("orange2apple", "orange", "apple"),
    _cyclegan("summer2winter_yosemite", "summer", "winter"),
    _cyclegan("winter2summer_yosemite", "winter", "summer"),
    _cyclegan("horse2zebra", "horse", "zebra"),
    _cyclegan("zebra2horse", "zebra", "horse"),
    _cyclegan("monet2photo", "monet", "photo"),
    _cyclegan("style_monet", "photo", "monet", "photo -> Monet painting"),
    _cyclegan("style_cezanne", "photo", "cezanne", "photo -> Cezanne painting"),
    _cyclegan("style_ukiyoe", "photo", "ukiyoe", "photo -> Ukiyo-e print"),
    _cyclegan("style_vangogh", "photo", "vangogh", "photo -> Van Gogh painting"),
    _cyclegan("sat2map", "satellite", "map"),
    _cyclegan("map2sat", "map", "satellite"),
    _cyclegan("cityscapes_photo2label", "photo", "label"),
    _cyclegan("cityscapes_label2photo", "label", "photo"),
    _cyclegan("facades_photo2label", "photo", "label"),
    _cyclegan("facades_label2photo", "label", "photo"),
    _cyclegan("iphone2dslr_flower", "iphone", "dslr", "shallow depth of field on flower photos"),
    _pix2pix("edges2shoes", "edges", "shoe"),
    _pix2pix("sat2map", "satellite", "map"),
    _pix2pix("map2sat", "map", "satellite"),
    _pix2pix("facades_label2photo", "label", "photo"),
    _pix2pix("day2night", "day", "night"),
]
# pix2pix and CycleGAN publish some names twice: the catalogue names are family/name, and a bare
# name means the CycleGAN model when it is ambiguous.
PRETRAINED: dict[str, PretrainedModel] = {f"{m.family}/{m.name}": m for m in _MODELS}


def get_pretrained(name: str) -> PretrainedModel:
    if name in PRETRAINED:
        return PRETRAINED[name]
    for family in ("cyclegan", "pix2pix"):
        if f"{family}/{name}" in PRETRAINED:
            return PRETRAINED[f"{family}/{name}"]
    names = sorted({m.name for m in _MODELS} | set(PRETRAINED))
    raise CyclekitError(f"unknown pretrained model {name!r}{did_you_mean(name, names)}; see `cyclekit pretrained list`")


def pretrained_cache(cache_dir: Path) -> Path:
    return cache_dir / "pretrained"


def weights_path(model: PretrainedModel, cache_dir: Path) -> Path:
    return pretrained_cache(cache_dir) / model.family / f"{model.name}.pth"


def bundle_path(model: PretrainedModel, cache_dir: Path) -> Path:
    return pretrained_cache(cache_dir) / model.family / model.name


def is_downloaded(model: PretrainedModel, cache_dir: Path) -> bool:
    return (bundle_path(model, cache_dir) / "config.json").is_file()


def download_pretrained(
    name: str,
    cache_dir: Path | None = None,
    output: Path | None = None,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> tuple[Path, Bundle]:
    """Fetch ``name``'s weights into the cache (once) and import them into a bundle: ``output``,
    or the cache's bundle folder. Returns the bundle folder and the bundle.

    The generator is checked (the model's family) before anything is written: a refused download
    leaves ``output`` as it was. ``output`` may hold an earlier import; another bundle (a run's)
    only with ``overwrite``."""
    model = get_pretrained(name)
    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    target = output if output is not None else bundle_path(model, cache_dir)
    refuse_foreign_folder(target, overwrite)
    expected = "unet" if model.family == "pix2pix" else "resnet"

    def right_family(imported: Sequence[Imported]) -> None:
        got = imported[0].architecture.arch
        if got != expected:
            raise CyclekitError(f"{model.url} held a {got} generator, not the {model.family} model's {expected}")

    weights = weights_path(model, cache_dir)
    fetched_now = not weights.is_file()
    try:
        download_file(model.url, weights, progress=progress)
    except DownloadError as exc:
        raise CyclekitError(
            f"could not download {model.family}/{model.name} from {model.url} ({exc.reason}); "
            f"download it by hand, save it as {weights} and run this again (or `cyclekit import {weights}`)"
        ) from None
    try:
        bundle, _ = import_files(
            [weights],
            target,
            domains={"A": model.source, "B": model.target},
            direction="AtoB",
            train_size=REFERENCE_TRAIN_SIZE,
            overwrite=overwrite,
            check=right_family,
        )
    except CyclekitError as exc:
        kept = f"; {target} is as it was" if target.exists() else ""
        if fetched_now:
            weights.unlink(missing_ok=True)
            raise CyclekitError(
                f"{exc}; the downloaded file was deleted, so the next try downloads it again{kept}"
            ) from None
        raise CyclekitError(f"{exc}; delete {weights} to download it again{kept}") from None
    return target, bundle
