"""Images with condition vectors (the data of text-to-image GANs such as StackGAN), held in memory.

Three sources build a :class:`ConditionedImages` (see `cyclekit.data.sources`):

- ``scenes``: the built-in generated scenes (`cyclekit.data.scenes`), captions embedded with the
  words embedder (default) or all-MiniLM-L6-v2;
- ``embedded``: a folder of images, each with its precomputed embedding next to it
  (``bird.png`` + ``bird.npy``: one vector of D floats, or K x D for K captions);
- ``captions``: a folder of images, each with its captions next to it (``bird.png`` +
  ``bird.txt``, one caption a line), embedded when the data is read (all-MiniLM-L6-v2 from the
  ``text`` extra by default).

A folder holding ``train/`` is split by it (``train/``, ``test/``); otherwise all of it is the
train split. Images are not mirrored: a caption may say "on the left".

An image with several captions (vectors) is shown with one of them per epoch, chosen with the
order from ``(seed, epoch)``, so a resumed epoch sees the same pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cyclekit.data.download import describe_folder
from cyclekit.data.folders import derive_seed
from cyclekit.data.images import IMAGE_EXTENSIONS, list_images, load_image
from cyclekit.data.scenes import Scene, make_scenes, render
from cyclekit.data.text import embed_texts
from cyclekit.errors import DataError

logger = logging.getLogger(__name__)


class ConditionedImages(Dataset):
    """uint8 ``images`` (N x C x H x W) and float32 ``embeddings`` (M x D), row ``r`` belonging to
    image ``owner[r]``; ``captions[r]`` the text of row r ("" for precomputed vectors).

    ``ds[r]`` is ``{"image": float32 C x H x W in [-1, 1], "embedding": float32 D}``."""

    def __init__(
        self,
        images: torch.Tensor,
        embeddings: torch.Tensor,
        owner: torch.Tensor,
        captions: Sequence[str],
        seed: int,
        root: Path | None,
        name: str,
        scenes: Sequence[Scene] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {images.dtype} {tuple(images.shape)}")
        if embeddings.dim() != 2 or len(embeddings) != len(owner) or len(captions) != len(owner):
            raise ValueError("embeddings, owner and captions must have one row each")
        self.images, self.embeddings, self.owner = images, embeddings.float(), owner.long()
        self.captions = list(captions)
        self.seed, self.root, self.name = int(seed), root, name
        self.scenes = list(scenes) if scenes is not None else None
        self.channels, self.size = int(images.shape[1]), int(images.shape[2])
        self.embed_dim = int(embeddings.shape[1])
        # rows of each image, for the epoch plan
        self._rows: list[list[int]] = [[] for _ in range(len(images))]
        for r, i in enumerate(self.owner.tolist()):
            self._rows[i].append(r)
        if any(not rows for rows in self._rows):
            raise ValueError("every image needs at least one embedding row")

    def __len__(self) -> int:
        return len(self.images)

    def epoch_plan(self, epoch: int) -> list[int]:
        """One row per image, the images in an order and each with a row fixed by (seed, epoch)."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        order = torch.randperm(len(self.images), generator=gen).tolist()
        picks = torch.randint(0, 1 << 30, (len(order),), generator=gen).tolist()
        return [self._rows[i][p % len(self._rows[i])] for i, p in zip(order, picks, strict=True)]

    def __getitem__(self, row: int) -> dict[str, torch.Tensor]:
        row = int(row)
        image = self.images[int(self.owner[row])].float().div_(127.5).sub_(1.0)
        return {"image": image, "embedding": self.embeddings[row].clone()}

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every row's image (float32 in [-1, 1]) and embedding: for evaluation."""
        return self.images[self.owner].float().div_(127.5).sub_(1.0), self.embeddings.clone()

    def summary(self) -> str:
        rows = len(self.embeddings)
        per = f", {rows / max(1, len(self)):.3g} captions per image" if rows != len(self) else ""
        colour = "grey" if self.channels == 1 else "RGB"
        return (
            f"{self.name}: {len(self):,} images, {self.size} x {self.size} px {colour}, "
            f"{self.embed_dim}-d conditions{per}"
        )


# ---------------------------------------------------------------------------------------------
# the built-in scenes


def scenes(
    split: str, size: int, n_train: int, n_test: int, per_scene: int, scene_seed: int, embedding: str, seed: int
) -> ConditionedImages:
    """The generated scenes of ``split`` at ``size`` px, captions embedded with ``embedding``."""
    items = make_scenes(n_train, n_test, per_scene, scene_seed)[split]
    images = torch.from_numpy(np.stack([render(s, size) for s, _ in items])).permute(0, 3, 1, 2).contiguous()
    captions = [c for _, caps in items for c in caps]
    owner = torch.arange(len(items)).repeat_interleave(per_scene)
    vectors = torch.from_numpy(embed_texts(embedding, captions))
    return ConditionedImages(images, vectors, owner, captions, seed, None, f"scenes ({split})", [s for s, _ in items])


# ---------------------------------------------------------------------------------------------
# folders


def _split_folder(root: Path, split: str) -> Path | None:
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "not found"
        raise DataError(f"image folder {what}: {root}")
    if (root / "train").is_dir():
        base = root / split
        return base if base.is_dir() else None
    return root if split == "train" else None


def _load(path: Path, size: int, channels: int) -> np.ndarray:
    """An image, resized (shorter side to ``size``, bicubic) and centre-cropped to size x size."""
    img = load_image(path, channels=channels)
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    arr = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _images_in(base: Path) -> list[Path]:
    files = list_images(base, recursive=True)
    if not files:
        raise DataError(f"{base} has no images (looked for {', '.join(IMAGE_EXTENSIONS)}); it {describe_folder(base)}")
    return files


def embedded_folder(
    split: str, root: Path, size: int, channels: int, embed_dim: int, seed: int
) -> ConditionedImages | None:
    """Images with a precomputed embedding next to each (``x.png`` + ``x.npy``: D or K x D floats)."""
    base = _split_folder(Path(root), split)
    if base is None:
        return None
    images, vectors, owner = [], [], []
    for i, path in enumerate(_images_in(base)):
        npy = path.with_suffix(".npy")
        if not npy.is_file():
            raise DataError(f"{path} has no embedding file {npy.name} next to it (each image needs its .npy)")
        try:
            arr = np.load(npy, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read embedding {npy}: {' '.join(str(exc).split())}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
            what = f"dtype {arr.dtype}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise DataError(f"{npy} holds {what}, not numbers; expected {embed_dim} floats (or K x {embed_dim})")
        arr = np.asarray(arr, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != embed_dim:
            raise DataError(
                f"{npy} holds an array of shape {tuple(arr.shape)}; expected {embed_dim} floats "
                f"(or K x {embed_dim}: data.embedded.embed_dim is {embed_dim})"
            )
        if not np.isfinite(arr).all():
            raise DataError(f"{npy} holds NaN or infinite values")
        images.append(_load(path, size, channels))
        vectors.append(arr)
        owner += [i] * len(arr)
    return ConditionedImages(
        torch.from_numpy(np.stack(images)),
        torch.from_numpy(np.concatenate(vectors)),
        torch.tensor(owner),
        [""] * len(owner),
        seed,
        Path(root),
        f"{base} (embedded)",
    )


def caption_folder(
    split: str, root: Path, size: int, channels: int, embedding: str, seed: int
) -> ConditionedImages | None:
    """Images with their captions next to each (``x.png`` + ``x.txt``, one caption a line),
    embedded with ``embedding`` (minilm: all-MiniLM-L6-v2 from the text extra; words)."""
    base = _split_folder(Path(root), split)
    if base is None:
        return None
    files = _images_in(base)
    captions, owner = [], []
    for i, path in enumerate(files):
        txt = path.with_suffix(".txt")
        if not txt.is_file():
            raise DataError(f"{path} has no caption file {txt.name} next to it (each image needs its .txt)")
        try:
            lines = [line.strip() for line in txt.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read captions {txt}: {' '.join(str(exc).split())}") from None
        if not lines:
            raise DataError(f"{txt} holds no caption (one caption a line)")
        captions += lines
        owner += [i] * len(lines)
    vectors = torch.from_numpy(embed_texts(embedding, captions))  # before decoding: a missing extra fails fast
    images = torch.from_numpy(np.stack([_load(p, size, channels) for p in files]))
    return ConditionedImages(images, vectors, torch.tensor(owner), captions, seed, Path(root), f"{base} (captions)")
