"""Tiled translation of very large images with a bounded memory peak.

Tiling and instance norm: a ResNet generator normalises every feature map with statistics of the
whole image (Ulyanov et al. 2016). Run tile by tile, each tile would use its own statistics and
come out with its own contrast and colour cast, which shows as a patchwork. So the statistics
are measured once, on the whole image scaled down to about one tile, and every tile is then
normalised with those fixed statistics (`shared_norm_statistics`); only the receptive field at
tile borders still differs, and the linear blend in the overlaps hides that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Shared normalisation statistics


def _uses_input_statistics(module: nn.Module) -> bool:
    """Norm layers whose output depends on statistics of the current input (so differ per tile)."""
    if isinstance(module, nn.InstanceNorm2d):
        return module.training or not module.track_running_stats
    return isinstance(module, nn.GroupNorm)


class _FixedStatsNorm(nn.Module):
    """Stands in for an InstanceNorm2d/GroupNorm, normalising with given mean/var instead of the input's.

    ``mean``/``var`` have shape (1, G, 1) for G groups (G = C for instance norm); the original
    module's eps and affine parameters are reused, so the maths is exactly the original layer's.
    """

    def __init__(self, norm: nn.Module, mean: Tensor, var: Tensor):
        super().__init__()
        self.groups = norm.num_features if isinstance(norm, nn.InstanceNorm2d) else norm.num_groups
        self.eps = norm.eps
        self.weight = norm.weight if getattr(norm, "affine", False) else None
        self.bias = norm.bias if getattr(norm, "affine", False) else None
        self.register_buffer("mean", mean)
        self.register_buffer("inv_std", torch.rsqrt(var + norm.eps))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = (x.reshape(n, self.groups, -1) - self.mean) * self.inv_std
        y = y.reshape(n, c, h, w)
        if self.weight is not None:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def norm_statistics(net: nn.Module, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Run ``net`` on ``x`` (batch 1) and record (mean, biased var) per group of every per-sample norm layer."""
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []

    def hook(name: str, module: nn.Module):
        groups = module.num_features if isinstance(module, nn.InstanceNorm2d) else module.num_groups

        def record(_mod: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            flat = inputs[0].float().reshape(1, groups, -1)
            # Biased variance, as InstanceNorm2d and GroupNorm use.
            var, mean = torch.var_mean(flat, dim=2, unbiased=False, keepdim=True)
            stats[name] = (mean, var)

        return record

    for name, module in net.named_modules():
        if _uses_input_statistics(module):
            handles.append(module.register_forward_pre_hook(hook(name, module)))
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return stats


@contextlib.contextmanager
def shared_norm_statistics(net: nn.Module, stats: dict[str, tuple[Tensor, Tensor]]) -> Iterator[nn.Module]:
    """Temporarily swap every per-sample norm layer of ``net`` for one using ``stats``.

    The network object itself is modified (and restored on exit), so it must not be used by
    another thread meanwhile.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for name, (mean, var) in stats.items():
            parent_name, _, child = name.rpartition(".")
            parent = net.get_submodule(parent_name) if parent_name else net
            original = getattr(parent, child)
            setattr(parent, child, _FixedStatsNorm(original, mean, var))
            swapped.append((parent, child, original))
        yield net
    finally:
        for parent, child, original in reversed(swapped):
            setattr(parent, child, original)


# --------------------------------------------------------------------------------------------
# Tiling


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px overlapping by at least ``overlap`` px along one side."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]  # the last tile sits flush with the far edge


def _ramp(n: int, overlap: int, fade_in: bool, fade_out: bool) -> Tensor:
    """1-D blend weight: rises linearly over ``overlap`` px at sides shared with a neighbour tile.

    Weights start at 0.5/overlap, never 0, so every pixel has a positive total weight. Where two
    tiles overlap by exactly ``overlap`` px the two ramps sum to 1.
    """
    w = torch.ones(n)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if fade_in:
            w[:overlap] = ramp
        if fade_out:
            w[n - overlap :] = torch.minimum(w[n - overlap :], ramp.flip(0))
    return w


def _downscale(x: Tensor, max_side: int, multiple: int) -> Tensor:
    """Shrink (1, C, H, W) so its longer side is at most about ``max_side``; sides stay multiples."""
    h, w = x.shape[-2:]
    scale = max_side / max(h, w)
    if scale >= 1:
        return x
    size = [max(2 * multiple, round(s * scale / multiple) * multiple) for s in (h, w)]
    # Antialiased: plain bilinear would alias fine texture and bias the variance estimates.
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def translate_tiled(
    net: nn.Module,
    x: Tensor,
    tile: int,
    overlap: int,
    multiple: int,
    *,
    stats_size: int | None = None,
    shared_stats: bool = True,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Translate one (1, C, H, W) image (sides multiples of ``multiple``) tile by tile.

    Peak memory is one tile's activations plus the float32 input and output canvases, whatever
    the image size. Norm statistics come from the image shrunk to ``stats_size`` (default: the
    tile size, so that pass costs no more than one tile); ``shared_stats=False`` lets every tile
    use its own (the naive method, kept to show the difference). Overlaps are blended with linear
    weights. Returns a CPU float32 tensor.
    """
    _, _, h, w = x.shape
    x = x.to("cpu", torch.float32)
    context: contextlib.AbstractContextManager = contextlib.nullcontext()
    if shared_stats:
        stats = norm_statistics(net, _downscale(x, stats_size or tile, multiple).to(device))
        context = shared_norm_statistics(net, stats)
    out: Tensor | None = None
    weight = torch.zeros(1, 1, h, w)
    with context:
        for y0 in tile_starts(h, tile, overlap):
            th = min(tile, h)
            wy = _ramp(th, overlap, y0 > 0, y0 + th < h)
            for x0 in tile_starts(w, tile, overlap):
                tw = min(tile, w)
                wx = _ramp(tw, overlap, x0 > 0, x0 + tw < w)
                piece = net(x[:, :, y0 : y0 + th, x0 : x0 + tw].to(device)).to("cpu", torch.float32)
                if out is None:
                    out = torch.zeros(1, piece.shape[1], h, w)
                blend = wy[:, None] * wx[None, :]
                out[:, :, y0 : y0 + th, x0 : x0 + tw].add_(piece.mul_(blend))
                weight[:, :, y0 : y0 + th, x0 : x0 + tw].add_(blend)
    assert out is not None
    return out.div_(weight)
