"""`cyclekit eval`: score a translation bundle on a dataset's test split(s), every direction it has.

For each direction X -> Y the bundle translates, the source images are ``testX`` (or the X side of the
test pairs) and the reference images are ``testY``:

- **Paired scores**, whenever the test images pair up (the Pix2Pix loader's rules: ``testA/1.jpg <->
  testB/1.jpg``, ``100_A.jpg <-> 100_B.jpg``, or the side-by-side ``test/`` format): L1, PSNR and SSIM
  of each translation against its target, next to two baselines: *identity* (the source itself) and
  *mean target* (the pixel-wise mean of the test targets, the best constant guess). When the targets
  are label maps (a few flat colours: facades labels, maps), also per-pixel accuracy, mean per-class
  accuracy and mean class IoU after snapping both to the palette found in the targets (the CycleGAN
  paper's photo -> label evaluation); the palette goes into the results.
- **Unpaired scores**, always: FID and KID between the translations and the real ``testY`` images,
  from the 2048-d pool features of the Inception-v3 network and weights of the widely used FID code
  (pytorch-fid's ``pt_inception-2015-12-05``). Without the weights (offline, no ``--inception``) the
  paired scores are still computed and the results say why FID is missing.

Every image is read at the training scale: resized to the run's ``load_size`` with PIL's bicubic
filter and centre-cropped to ``crop_size`` (the bundle's ``train_size``), as the training samples
are. Everything that makes the numbers reproducible goes into the results with them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cyclekit import __version__
from cyclekit.choices import EVAL_METRICS, LOWER_IS_BETTER
from cyclekit.config import DataConfig
from cyclekit.data.testimages import EvalImages
from cyclekit.errors import CyclekitError
from cyclekit.evaluation import scores
from cyclekit.inference.bundle import Bundle, bundle_dir, load_network, read_bundle

logger = logging.getLogger(__name__)

METRICS = EVAL_METRICS


@dataclass(frozen=True)
class EvalData:
    """The test split a translation is scored on: the located data folder and the data settings it
    is read with (a run's ``data:``, its size set to the evaluation size), read through the data's
    Source (`Source.test_images`), the reader training uses."""

    data: DataConfig
    root: Path

    @classmethod
    def of(cls, data: DataConfig, root: Path, size: int | None = None) -> EvalData:
        """A run's test data as its ``data:`` config reads it (``size``: load and crop at this size instead)."""
        if size:
            data = dataclasses.replace(data, source=dataclasses.replace(data.source, load_size=size, crop_size=size))
        return cls(data, Path(root))

    @classmethod
    def folder(cls, root: Path, size: int, channels: int = 3) -> EvalData:
        """A folder of test images (testA/ and testB/, or test pairs) for a bundle without its run:
        read as the unpaired source reads it, resized and centre-cropped to ``size``."""
        from cyclekit.data.sources import DomainOptions

        options = DomainOptions(preprocess="resize_and_crop", load_size=size, crop_size=size, root=str(root))
        return cls(DataConfig(kind="unpaired", channels=channels, source=options), Path(root))

    @property
    def preprocess(self) -> str:
        return str(self.data.preprocess)

    @property
    def load_size(self) -> int:
        return int(self.data.load_size)

    @property
    def crop_size(self) -> int:
        return int(self.data.crop_size)

    @property
    def channels(self) -> int:
        return int(self.data.channels or 3)

    def read(self, max_images: int | None = None) -> EvalImages:
        """Both domains' test images at the evaluation size (`Source.test_images`)."""
        from cyclekit.data.sources import SOURCES

        return SOURCES[self.data.kind].test_images(self.data.source, self.data, self.root, max_images)


@dataclass
class Inception:
    """The FID network once loaded (reused across evaluations during training), or why it is not."""

    model: Any = None
    path: str | None = None
    missing: str | None = None


@dataclass
class _Split:
    sources: list[torch.Tensor]
    targets: list[torch.Tensor] | None  # aligned with sources when paired
    references: list[torch.Tensor]  # real images of the target domain
    reference_split: str


def load_fid_network(
    path: Path | None, required: bool, cache_dir: Path | None = None, download: bool = True
) -> Inception:
    """The Inception network for FID/KID. ``required`` (``--fid``): a missing file is an error;
    otherwise it is a warning and the results record why FID is missing. ``download``: fetch the
    weights into the cache when they are not there."""
    from cyclekit.evaluation.fid import default_weights_path, load_inception

    try:
        model = load_inception(path, cache_dir=cache_dir, download=download)
    except CyclekitError as exc:
        if required:
            raise
        logger.warning("no FID/KID: %s", exc)
        return Inception(missing=str(exc))
    return Inception(model, str(path or default_weights_path(cache_dir)))


def cached_fid_network() -> Inception:
    """The FID network when its weights are already in the cache, quietly; training never
    downloads them (the results then say why FID is missing)."""
    from cyclekit.evaluation.fid import default_weights_path

    if not default_weights_path().is_file():
        return Inception(missing=f"no FID weights in the cache ({default_weights_path()}); training never downloads")
    return load_fid_network(None, required=False, download=False)


def evaluate(
    model_path: Path,
    data: EvalData,
    directions: Sequence[str] | None = None,
    inception: Inception | None = None,
    device: str = "cpu",
    max_images: int | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    labels: bool | None = None,
) -> dict[str, Any]:
    """Scores of the bundle at ``model_path`` (a run dir or bundle dir) on ``data``'s test split(s).
    ``labels``: score the targets as label maps (True), never (False), or when they look like
    label maps (None, `scores.looks_like_label_map`). Returns the results dict (see the module
    docstring); `write_results` saves it."""
    folder = bundle_dir(model_path)
    bundle = read_bundle(folder)
    if not bundle.translates:
        raise CyclekitError(f"{folder} samples images (a {bundle.recipe} bundle); `cyclekit eval` scores translations")
    wanted = list(directions or bundle.translates)
    for d in wanted:
        bundle.network_for(d)  # one line naming the directions the bundle has
    dev = torch.device(device)
    results: dict[str, Any] = {
        "step": bundle.step,
        "epoch": bundle.epoch,
        "bundle": str(folder),
        "data": {
            "root": str(data.root),
            "preprocess": data.preprocess,
            "load_size": data.load_size,
            "image_size": data.crop_size,
        },
        "directions": {},
        "baselines": {},
        "counts": {},
    }
    palettes: dict[str, list[list[int]]] = {}
    test = data.read(max_images)
    with_fid = inception is not None and inception.model is not None
    for direction in wanted:
        split = _split(test, direction)
        if split.targets is None and not with_fid:
            # Unpaired test images and no FID network: nothing to score, so nothing to translate.
            results["directions"][direction] = {}
            results["counts"][direction] = {
                "translated": 0,
                "sources": len(split.sources),
                "paired": 0,
                "reference": len(split.references),
                "reference_split": split.reference_split,
            }
            results.setdefault("not_scored", {})[direction] = _unscored_reason(data, inception)
            continue
        net = load_network(folder, bundle, bundle.network_for(direction), dev)
        fakes = _translate(net, split.sources, bundle, dev)
        row: dict[str, Any] = {}
        base: dict[str, Any] = {}
        if split.targets is not None:
            row.update(_paired(fakes, split.targets))
            base["identity"] = _paired(split.sources, split.targets, pixel_only=True)
            mean = torch.stack(split.targets).mean(0)
            base["mean_target"] = _paired([mean] * len(split.targets), split.targets, pixel_only=True)
            # Decided per direction: a CycleGAN on facades has photos on one side, label maps on the other.
            if labels if labels is not None else scores.looks_like_label_map(split.targets):
                palette = scores.find_palette(split.targets)
                found = scores.label_scores(fakes, split.targets, palette)
                row.update(pixel_acc=found.pixel_accuracy, class_acc=found.mean_class_accuracy, iou=found.mean_iou)
                row["per_class"] = {
                    "accuracy": found.class_accuracy,
                    "iou": found.class_iou,
                    "pixels": [int(p) for p in found.class_pixels],
                }
                base["identity"].update(_label_only(split.sources, split.targets, palette))
                palettes[direction] = np.asarray(palette).astype(int).tolist()
        if inception is not None and inception.model is not None:
            row.update(_fid_kid(inception.model, fakes, split.references, dev, kid_subset_size, kid_subsets))
        results["directions"][direction] = _rounded(row)
        results["baselines"][direction] = {k: _rounded(v) for k, v in base.items()}
        results["counts"][direction] = {
            "translated": len(fakes),
            "paired": len(split.targets) if split.targets is not None else 0,
            "reference": len(split.references),
            "reference_split": split.reference_split,
        }
    worse = worse_than_mean_target(results)
    if worse:
        results["worse_than_mean_target"] = worse
    if palettes:
        results["palettes"] = palettes
    if test.skipped:
        results["skipped"] = test.skipped  # unreadable test files, named in warnings too
    results["reproducibility"] = {
        "cyclekit_version": __version__,
        "bundle": str(folder),
        "bundle_step": bundle.step,
        "bundle_epoch": bundle.epoch,
        "weights_sha256": {k: e.sha256 for k, e in bundle.networks.items()},
        "data_root": str(data.root),
        "preprocess": data.preprocess,
        "load_size": data.load_size,
        "image_size": data.crop_size,
        "resize_filter": "PIL bicubic",
        "max_images": max_images,
        "test_time": {
            "dropout_seed": 0 if bundle.test_time.dropout else None,
            "batch_norm": bundle.test_time.batch_norm,
        },
        "fid_network": "pytorch-fid Inception-v3 pt_inception-2015-12-05 pool3 2048-d; inputs resized to 299 bilinear",
        "inception_weights": inception.path if inception is not None else None,
        "fid_missing": inception.missing if inception is not None else "not requested (--no-fid)",
        "kid": {"kernel": "(x.y / 2048 + 1)^3", "subset_size": kid_subset_size, "subsets": kid_subsets, "seed": 0},
    }
    return results


def worse_than_mean_target(results: dict[str, Any]) -> dict[str, list[str]]:
    """{direction: [metrics]} where the model scores worse than the mean target image, the best
    constant guess: a model that has not learned the mapping yet (or no longer)."""
    out = {}
    for direction, row in results.get("directions", {}).items():
        base = results.get("baselines", {}).get(direction, {}).get("mean_target", {})
        worse = [
            m
            for m in ("l1", "psnr", "ssim")
            if isinstance(row.get(m), (int, float))
            and isinstance(base.get(m), (int, float))
            and (row[m] > base[m] if m in LOWER_IS_BETTER else row[m] < base[m])
        ]
        if worse:
            out[direction] = worse
    return out


def has_scores(results: dict[str, Any]) -> bool:
    return any(results.get("directions", {}).values())


def _unscored_reason(data: EvalData, inception: Inception | None) -> str:
    """Why a direction of unpaired test images gets no score: only FID/KID could score it."""
    unpaired = f"the test images in {data.root} do not pair up (no ground truth for L1/PSNR/SSIM)"
    if inception is None:
        return f"{unpaired} and FID/KID were skipped (--no-fid)"
    return f"{unpaired} and FID/KID need the Inception weights: {inception.missing or 'not loaded'}"


# Recipes whose runs always have a score of their own (BEGAN's M, StackGAN's sharpness), labels or not.
_SCORED_WITHOUT_LABELS = ("began", "stackgan")


def sampling_unscored_reason(recipe: str, kind: str) -> str | None:
    """Why a run of ``recipe`` (one that samples) on ``kind`` data can have no scores at all, or
    None when it can be scored (given a test split)."""
    from cyclekit.data.sources import SOURCES

    source = SOURCES.get(kind)
    if recipe == "gan" and source is not None and "points" in source.batch_keys:
        return None  # 2-D points: modes covered
    if recipe not in _SCORED_WITHOUT_LABELS and source is not None and "label" not in source.batch_keys:
        return (
            f"nothing to score for this recipe on {kind} data: the {recipe} scores come from a classifier "
            "of the data's classes, and this data has no labels"
        )
    return None


def why_not_scored(results: dict[str, Any]) -> str:
    """One line: which directions were not scored and why (see `evaluate`'s ``not_scored``)."""
    reasons: dict[str, list[str]] = {}
    for direction, reason in results.get("not_scored", {}).items():
        reasons.setdefault(str(reason), []).append(direction)
    if not reasons:
        return "nothing to score"
    return "; ".join(f"{', '.join(ds)} not scored: {reason}" for reason, ds in reasons.items())


def write_results(results: dict[str, Any], path: Path) -> None:
    import json

    from cyclekit.atomic import atomic_write

    atomic_write(path, json.dumps(results, indent=2, allow_nan=False) + "\n")


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, float):
            out[k] = round(v, 6) if math.isfinite(v) else None
        elif isinstance(v, dict):
            out[k] = _rounded(v)
        elif isinstance(v, list):
            out[k] = [round(x, 6) if isinstance(x, float) and math.isfinite(x) else x for x in v]
        else:
            out[k] = v
    return out


def _paired(outputs: list[torch.Tensor], targets: list[torch.Tensor], pixel_only: bool = False) -> dict[str, float]:
    """Mean per-image L1, PSNR and SSIM (see `cyclekit.evaluation.scores` for units)."""
    if not outputs:
        return {}
    l1 = [scores.l1(o, t) for o, t in zip(outputs, targets, strict=True)]
    psnr = [scores.psnr(o, t) for o, t in zip(outputs, targets, strict=True)]
    row = {"l1": float(np.mean(l1)), "psnr": float(np.mean(psnr))}
    if min(targets[0].shape[-2:]) >= scores.SSIM_WINDOW:
        row["ssim"] = float(np.mean([scores.ssim(o, t) for o, t in zip(outputs, targets, strict=True)]))
    return row


def _label_only(outputs: list[torch.Tensor], targets: list[torch.Tensor], palette: Any) -> dict[str, float]:
    labels = scores.label_scores(outputs, targets, palette)
    return {"pixel_acc": labels.pixel_accuracy, "class_acc": labels.mean_class_accuracy, "iou": labels.mean_iou}


def _fid_kid(
    model: Any, fakes: list[torch.Tensor], reals: list[torch.Tensor], device: torch.device, subset: int, subsets: int
) -> dict[str, Any]:
    from cyclekit.evaluation.fid import fid_from_features, inception_features, kid

    if len(fakes) < 2 or len(reals) < 2:
        return {"fid": None, "kid": None}
    f_fake = inception_features(model, fakes, device=device)
    f_real = inception_features(model, reals, device=device)
    kid_mean, kid_std = kid(f_fake, f_real, subsets=subsets, subset_size=subset, seed=0)
    return {"fid": fid_from_features(f_fake, f_real), "kid": kid_mean, "kid_std": kid_std}


@torch.no_grad()
def _translate(
    net: torch.nn.Module, images: list[torch.Tensor], bundle: Bundle, device: torch.device
) -> list[torch.Tensor]:
    """One image at a time, as at test time (sizes may differ; per-image batch norm); the bundle's
    test-time dropout is seeded (0) on a forked RNG, as the PyTorch backend of `translate` does."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        return [net(x.unsqueeze(0).to(device)).float().cpu()[0].clamp(-1, 1) for x in images]


def _split(test: EvalImages, direction: str) -> _Split:
    """The sources, targets (when paired) and reference images of ``direction``."""
    src, dst = direction[0], direction[-1]
    sources, references = test.images[src], test.images[dst]
    if not test.paired:
        return _Split(sources, None, references, f"test{dst}")
    name = "test" if test.side_by_side else f"test{dst}"
    return _Split(sources, references, references, f"{name} (paired targets)")
