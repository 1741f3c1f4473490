"""Weight initialisation and parameter counting."""

from __future__ import annotations

from torch import nn

from cyclekit.choices import INIT_KINDS
from cyclekit.errors import ConfigError

_WEIGHTED = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)
_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02, *, key: str = "model.init") -> nn.Module:
    """Re-initialise conv/linear weights of ``net`` in place and return it.

    Follows the reference ``init_weights``: ``normal`` draws N(0, gain) (Radford et al. 2016;
    Zhu et al. 2017 code), ``xavier`` and ``orthogonal`` use ``gain`` as their gain, ``kaiming``
    is fan-in He init (gain unused). Biases become 0. Affine norm layers get weight N(1, gain)
    and bias 0, as the reference does for batch norm.
    """
    if kind not in INIT_KINDS:
        raise ConfigError(f"{key}: unknown init {kind!r}; valid: {', '.join(INIT_KINDS)}")
    for m in net.modules():
        if isinstance(m, _WEIGHTED):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def count_parameters(net: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``net`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
