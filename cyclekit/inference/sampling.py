"""Sampling a GAN bundle: noise (and the conditions its signature declares) in, the image of every
declared stage (or 2-D points) out.

One signature drives it (`cyclekit.inference.bundle.Sampling.signature`): `SignatureNet` calls any
sampling generator through it, here and in the ONNX sampler export, so a class is always given as
its index (the network's own form, e.g. a one-hot vector, is made inside), an embedding as a vector,
and every stage's image comes back, however many stages the bundle declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from cyclekit.device import resolve_device
from cyclekit.errors import CyclekitError
from cyclekit.inference.bundle import Bundle, SampleInput, Sampling, Signature, bundle_dir, load_network, read_bundle

CHUNK = 256  # samples per generator call


class SignatureNet(nn.Module):
    """A sampling generator called through its bundle's signature: ``forward(z, *conditions)`` with
    the signature's inputs in order (float32 noise, int64 class indices, float32 embeddings) returns
    its outputs, low to high (a tuple, one image per declared stage: the network's ``stages(...)``
    when it declares several, its forward otherwise)."""

    def __init__(self, net: nn.Module, samples: Sampling) -> None:
        super().__init__()
        self.net = net
        self.signature = samples.signature
        self.onehot = samples.class_feed == "onehot"

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        args = [inputs[0]]
        for spec, x in zip(self.signature.inputs[1:], inputs[1:], strict=True):
            if spec.kind == "class" and self.onehot:  # the class index as the one-hot vector the network takes
                x = (x[:, None] == torch.arange(spec.size, device=x.device)).to(inputs[0].dtype)
            args.append(x)
        if len(self.signature.outputs) == 1:
            return (self.net(*args),)
        outs = tuple(self.net.stages(*args))  # type: ignore[operator]
        if len(outs) != len(self.signature.outputs):
            raise CyclekitError(
                f"the generator gives {len(outs)} stages; its bundle declares {len(self.signature.outputs)}"
            )
        return outs


def sampling_bundle(path: Path) -> tuple[Path, Bundle, Sampling]:
    """The bundle folder, bundle and sampling declaration of a run or bundle that samples."""
    folder = bundle_dir(path)
    bundle = read_bundle(folder)
    if bundle.samples is None:
        raise CyclekitError(f"{folder} holds a model that translates, not samples (use `cyclekit translate`)")
    return folder, bundle, bundle.samples


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


def missing_embedding(folder: Path, spec: SampleInput) -> str:
    """What to say when a generator taking embeddings is given none."""
    if spec.source == "text":
        return f'{folder} holds a generator conditioned on text: give a caption (--text "...")'
    return (
        f"{folder} holds a generator conditioned on precomputed {spec.size}-d embeddings "
        f"({spec.model or 'unnamed'}), which cyclekit cannot compute from text; pass vectors from Python "
        "(cyclekit.inference.sampling.sample_stages) or to the exported G.onnx"
    )


def text_condition(path: Path, texts: Sequence[str]) -> torch.Tensor:
    """``texts`` embedded as the bundle's generator was trained: with the embedding model its
    signature names (a text-conditioned bundle only; one-line errors otherwise)."""
    from cyclekit.data.text import embed_texts

    folder, _, samples = sampling_bundle(path)
    spec = samples.signature.input("embedding")
    if spec is None:
        also = " (it takes a class: use --class)" if samples.classes else ""
        raise CyclekitError(f"--text: {folder} holds a generator that is not conditioned on text{also}")
    if spec.source != "text":
        raise CyclekitError("--text: " + missing_embedding(folder, spec))
    vectors = torch.from_numpy(embed_texts(spec.model, list(texts)))
    if vectors.shape[1] != spec.size:
        raise CyclekitError(f"--text: {spec.model} gives {vectors.shape[1]}-d vectors; the generator takes {spec.size}")
    return vectors


def _conditions(
    folder: Path, signature: Signature, n: int, labels: Sequence[int] | None, embeddings: torch.Tensor | None
) -> list[torch.Tensor]:
    """The tensors of the signature's inputs after the noise, in order, checked against it."""
    given = {"class": labels is not None, "embedding": embeddings is not None}
    for kind, is_given in given.items():
        if is_given and signature.input(kind) is None:
            what = "a class" if kind == "class" else "an embedding"
            flag = "--class: " if kind == "class" else ""
            raise CyclekitError(f"{flag}{folder} holds a generator that is not conditioned on {what}")
    out = []
    for spec in signature.inputs[1:]:
        if spec.kind == "class":
            if labels is None:
                raise CyclekitError(f"{folder} holds a class-conditional generator: name a class (--class N, or all)")
            y = torch.as_tensor(list(labels), dtype=torch.long)
            if len(y) != n or (y < 0).any() or (y >= spec.size).any():
                raise CyclekitError(f"labels: expected {n} class indices in 0..{spec.size - 1}")
            out.append(y)
        else:
            if embeddings is None:
                raise CyclekitError(missing_embedding(folder, spec))
            if tuple(embeddings.shape) != (n, spec.size):
                raise CyclekitError(f"condition: expected {n} x {spec.size} vectors, got {tuple(embeddings.shape)}")
            out.append(embeddings.float())
    return out


def sample_stages(
    path: Path,
    n: int,
    seed: int = 0,
    device: str = "auto",
    labels: Sequence[int] | None = None,
    embeddings: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``n`` samples from a bundle that samples, with noise from ``seed``: the output of every stage
    its signature declares (CPU tensors, low to high resolution; one for a one-stage generator).
    ``labels``: ``n`` class indices for a class-conditional generator (`class_labels`);
    ``embeddings``: n x dim vectors for one conditioned on embeddings (`text_condition`)."""
    folder, bundle, samples = sampling_bundle(path)
    conditions = _conditions(folder, samples.signature, n, labels, embeddings)
    dev = resolve_device(device)
    generator = SignatureNet(load_network(folder, bundle, samples.network, dev), samples)
    z = torch.randn(n, samples.latent_dim, generator=torch.Generator().manual_seed(seed))
    outs: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for start in range(0, n, CHUNK):
            feed = [t[start : start + CHUNK].to(dev) for t in (z, *conditions)]
            outs.append(tuple(t.cpu() for t in generator(*feed)))
    return [torch.cat(stage) for stage in zip(*outs, strict=True)]


def sample_gan(
    path: Path, n: int, seed: int = 0, device: str = "auto", labels: Sequence[int] | None = None
) -> torch.Tensor:
    """The final output of `sample_stages` (images, or 2-D points)."""
    return sample_stages(path, n, seed, device, labels)[-1]


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
