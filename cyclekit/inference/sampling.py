"""Sampling a GAN bundle: noise in, images (or 2-D points) out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import bundle_dir, load_network, read_bundle


def class_labels(classes: Sequence[str], choice: str, per_class: int) -> list[int]:
    """``--class`` as labels: ``all`` -> ``per_class`` of each class in order (one grid row per
    class), a class index or name -> ``per_class`` of it; one-line errors name the classes."""
    if not classes:
        raise CyclekitError("--class: this generator is not conditioned on a class")
    if choice == "all":
        return [k for k in range(len(classes)) for _ in range(per_class)]
    if choice in classes:
        return [classes.index(choice)] * per_class
    if choice.lstrip("-").isdigit() and 0 <= int(choice) < len(classes):
        return [int(choice)] * per_class
    raise CyclekitError(
        f"--class {choice}: not a class of this generator; classes: "
        + ", ".join(f"{i} ({name})" if name != str(i) else name for i, name in enumerate(classes))
        + ", or all"
    )


def sample_gan(
    path: Path, n: int, seed: int = 0, device: str = "auto", labels: Sequence[int] | None = None
) -> torch.Tensor:
    """``n`` samples from a bundle that samples, with noise from ``seed`` (CPU tensor). A
    class-conditional bundle needs ``labels`` (``n`` class indices; see `class_labels`)."""
    folder = bundle_dir(path)
    bundle = read_bundle(folder)
    if bundle.samples is None:
        raise CyclekitError(f"{folder} holds a model that translates, not samples (use `cyclekit translate`)")
    if bundle.samples.condition is not None:
        vectors = None if labels is None else onehot(bundle.samples.classes, labels, n)
        return sample_stages(folder, n, seed, device, vectors)[-1]
    classes = bundle.samples.classes
    if classes and labels is None:
        raise CyclekitError(f"{folder} holds a class-conditional generator: name a class (--class N, or all)")
    if not classes and labels is not None:
        raise CyclekitError(f"--class: {folder} holds a generator that is not conditioned on a class")
    dev = resolve_device(device)
    generator = load_network(folder, bundle, bundle.samples.network, dev)
    z = torch.randn(n, bundle.samples.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        if labels is None:
            return torch.cat([generator(chunk.to(dev)).cpu() for chunk in z.split(256)])
        y = torch.as_tensor(list(labels), dtype=torch.long)
        if len(y) != n or (y < 0).any() or (y >= len(classes)).any():
            raise CyclekitError(f"labels: expected {n} class indices in 0..{len(classes) - 1}")
        return torch.cat(
            [generator(zc.to(dev), yc.to(dev)).cpu() for zc, yc in zip(z.split(256), y.split(256), strict=True)]
        )


def onehot(classes: Sequence[str], labels: Sequence[int], n: int) -> torch.Tensor:
    """Class indices as the one-hot condition vectors of a generator conditioned on vectors."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    if len(y) != n or (y < 0).any() or (y >= len(classes)).any():
        raise CyclekitError(f"labels: expected {n} class indices in 0..{len(classes) - 1}")
    return torch.nn.functional.one_hot(y, len(classes)).float()


def text_condition(path: Path, texts: Sequence[str]) -> torch.Tensor:
    """``texts`` embedded as the bundle's generator was trained: with the embedding model its
    condition names (a text-conditioned bundle only; one-line errors otherwise)."""
    from cyclekit.data.text import embed_texts

    folder = bundle_dir(path)
    samples = read_bundle(folder).samples
    cond = samples.condition if samples is not None else None
    if cond is None or cond.kind == "onehot":
        what = "classes (use --class)" if samples is not None and samples.classes else "no text"
        raise CyclekitError(f"--text: {folder} holds a generator conditioned on {what}")
    if cond.kind != "text":
        raise CyclekitError(
            f"--text: {folder} holds a generator conditioned on precomputed {cond.dim}-d embeddings "
            f"({cond.model or 'unnamed'}), which cyclekit cannot compute from text; pass vectors from Python "
            "(cyclekit.inference.sampling.sample_stages) or to the exported G.onnx"
        )
    vectors = torch.from_numpy(embed_texts(cond.model, list(texts)))
    if vectors.shape[1] != cond.dim:
        raise CyclekitError(f"--text: {cond.model} gives {vectors.shape[1]}-d vectors; the generator takes {cond.dim}")
    return vectors


def sample_stages(
    path: Path, n: int, seed: int = 0, device: str = "auto", condition: torch.Tensor | None = None
) -> list[torch.Tensor]:
    """``n`` samples of a generator conditioned on vectors (StackGAN), with noise from ``seed``: the
    image of every stage it has (CPU tensors, low to high resolution). ``condition``: n x dim
    vectors (`text_condition`, `onehot`)."""
    folder = bundle_dir(path)
    bundle = read_bundle(folder)
    samples = bundle.samples
    if samples is None or samples.condition is None:
        raise CyclekitError(f"{folder} holds no generator conditioned on vectors")
    dim = samples.condition.dim
    if condition is None:
        raise CyclekitError(
            f"{folder} holds a generator conditioned on "
            + ("a class: name one (--class N, or all)" if samples.classes else "text: give a caption (--text ...)")
        )
    if tuple(condition.shape) != (n, dim):
        raise CyclekitError(f"condition: expected {n} x {dim} vectors, got {tuple(condition.shape)}")
    dev = resolve_device(device)
    generator = load_network(folder, bundle, samples.network, dev)
    z = torch.randn(n, samples.latent_dim, generator=torch.Generator().manual_seed(seed))
    outs: list[list[torch.Tensor]] = []
    with torch.no_grad():
        for zc, cc in zip(z.split(256), condition.float().split(256), strict=True):
            got = generator.stages(zc.to(dev), cc.to(dev)) if samples.stages else (generator(zc.to(dev), cc.to(dev)),)
            outs.append([t.cpu() for t in got])
    return [torch.cat([o[k] for o in outs]) for k in range(len(outs[0]))]


def save_stage_grid(
    stages: Sequence[torch.Tensor], path: Path, per_row: int, title: str = "", row_labels: Sequence[str] | None = None
) -> Path:
    """Each sample's stage images side by side (the lower ones scaled up, nearest), ``per_row``
    samples a row, under a header naming the stages (and ``title``, e.g. the caption)."""
    from PIL import Image, ImageDraw

    from cyclekit.data.images import label_text, save_grid

    side = stages[-1].shape[-1]
    tiles = torch.stack(
        [torch.nn.functional.interpolate(s, size=(side, side), mode="nearest") for s in stages], dim=1
    ).flatten(0, 1)
    save_grid(tiles, path, nrow=per_row * len(stages), row_labels=row_labels)
    names = " | ".join(f"stage {'I' * (k + 1) if k < 3 else k + 1} ({s.shape[-1]} px)" for k, s in enumerate(stages))
    lines = [f"each sample: {names}", *([label_text(title, 160)] if title else [])]
    grid = Image.open(path).convert("RGB")
    header = 14 * len(lines) + 6
    out = Image.new("RGB", (max(grid.width, 7 * max(len(t) for t in lines) + 8), grid.height + header), (0, 0, 0))
    out.paste(grid, (0, header))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, 4 + 14 * i), line, fill=(255, 255, 255))
    from cyclekit.atomic import atomic_path

    with atomic_path(Path(path), fsync=False) as tmp:
        out.save(tmp, format="PNG")
    return Path(path)
