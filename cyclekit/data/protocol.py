"""What a recipe is given to train on: typed datasets, never a folder to find.

`Dataset` is the interface every dataset a data source builds has (`cyclekit.data.sources`):
``len()``, ``epoch_plan(epoch)`` (the items of one epoch in an order fixed by (seed, epoch), so a
run resumes exactly), ``dataset[item]`` (a dict of tensors under the source's batch keys),
``summary()`` (one line for the start of a run) and ``root`` (the folder read, or None).
`Tensors` adds every item at once as tensors (for evaluation); `Labelled` the class names too (the
labelled sources), `Conditioned` the condition vectors and captions (the conditioned sources).

`RunData` is what the run hands a recipe: the located data (`Source.locate`, done once by the
run: the root as given, the catalogue's cache or a download, the generated demo set), its train
split and its test split (None when the data has none), both built by the Source. A recipe that
needs another view of the same data (every label kept, for a yardstick classifier) asks
`RunData.build`, which goes through the Source too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    from cyclekit.config import DataConfig
    from cyclekit.data.sources import Source


@runtime_checkable
class Dataset(Protocol):
    """The interface of every dataset a Source builds (see the module docstring)."""

    root: Path | None

    def __len__(self) -> int: ...

    def epoch_plan(self, epoch: int) -> Sequence[Any]: ...

    def __getitem__(self, item: Any) -> Mapping[str, Any]: ...

    def summary(self) -> str: ...


@runtime_checkable
class Tensors(Dataset, Protocol):
    """A dataset that can give all of its items at once (for evaluation): images and their labels
    or condition vectors."""

    def tensors(self) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class Labelled(Tensors, Protocol):
    """A dataset of class-labelled images: the class names (index = label), the images and labels."""

    class_names: list[str]


@runtime_checkable
class Conditioned(Tensors, Protocol):
    """A dataset of images with condition vectors (embedded captions, precomputed vectors): row
    ``r`` of ``embeddings`` is the condition of an image, ``captions[r]`` its text ("" for vectors)."""

    embed_dim: int
    embeddings: Tensor
    captions: list[str]


@runtime_checkable
class DomainFiles(Dataset, Protocol):
    """A two-domain dataset read from files: the image files of each domain (the fixed images of
    a translation run's sample grids are read from them with the evaluation transform)."""

    paths_a: Sequence[Path]
    paths_b: Sequence[Path]


@runtime_checkable
class PairStack(Dataset, Protocol):
    """A paired dataset that stacks the pairs ``indices`` (A, B) under a given transform."""

    def stack(self, indices: Any, transform: Any) -> tuple[Tensor, Tensor]: ...


def first_items(dataset: Dataset, keys: tuple[str, ...], n: int) -> list[list[Tensor]]:
    """The tensors under ``keys`` of the first ``n`` items of epoch 0's plan: the fixed images of a
    source that holds no files (frames made in memory); one list per key."""
    out: list[list[Tensor]] = [[] for _ in keys]
    for item in list(dataset.epoch_plan(0))[:n]:
        got = dataset[item]
        for i, key in enumerate(keys):
            out[i].append(got[key])
    return out


@dataclass(frozen=True)
class RunData:
    """The data of one run, located and opened once by the run (see the module docstring)."""

    source: type[Source]
    data: DataConfig  # the run's data settings (after what it leaves to the data is filled in)
    root: Path | None  # the folder the data is read from; None for a source that reads none
    seed: int
    train: Dataset
    test: Dataset | None = None  # built with the evaluation transform; None: the data has no test split
    class_names: list[str] = field(default_factory=list)  # the train split's classes; [] without labels

    @classmethod
    def open(cls, data: DataConfig, root: Path | None, seed: int) -> RunData:
        """The train split (augmented) and, when the data has one, the test split (the evaluation
        transform) of the located data ``root``, built by the config's Source."""
        from cyclekit.data.sources import SOURCES

        source = SOURCES[data.kind]
        train = source.build(data.source, data, root, "train", seed, True)
        test = (
            source.build(data.source, data, root, "test", seed, False)
            if source.has_split(data.source, root, "test")
            else None
        )
        names = list(train.class_names) if isinstance(train, Labelled) else []
        return cls(source, data, root, seed, train, test, names)

    @property
    def labelled(self) -> bool:
        """The items carry class labels (the source's batch keys say so)."""
        return "label" in self.source.batch_keys

    def build(self, split: str, *, train: bool = True, all_labels: bool = False) -> Dataset | None:
        """Another view of the located data, built by the Source: ``split`` with the training
        (``train``) or evaluation transform; ``all_labels``: every label kept (no
        ``labels_per_class``). None when the data has no such split."""
        data = self.data
        if all_labels and getattr(data.source, "labels_per_class", None) is not None:
            data = dataclasses.replace(data, source=dataclasses.replace(data.source, labels_per_class=None))
        elif split == "train" and train:
            return self.train
        if not self.source.has_split(data.source, self.root, split):
            return None
        return self.source.build(data.source, data, self.root, split, self.seed, train)


__all__ = ["Conditioned", "Dataset", "Labelled", "RunData", "Tensors"]
