"""Mixed precision: autocast around the training step, and a GradScaler where fp16 needs one.

`train.precision`:
- `auto`: on CUDA, bf16 autocast where the GPU supports it (Ampere and newer), else fp16 with a
  GradScaler; elsewhere fp32. Off on a CPU unless asked: CPU autocast is mainly a memory saver.
- `bf16`: bf16 autocast; bf16 keeps fp32's exponent range, so no loss scaling is needed.
- `fp16`: fp16 autocast with a GradScaler (Micikevicius et al. 2018): the loss is scaled up before
  backward so small gradients do not flush to zero, and steps with inf/NaN gradients are skipped.
- `fp32`: no autocast.

The scaler's state goes into every checkpoint; a run resumes across precisions (a checkpoint
without a scaler state starts a fresh scaler, one with it under fp32 is ignored).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass
class Precision:
    """What `train.precision` resolved to on a device."""

    name: str  # fp32, bf16 or fp16
    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def resolve_precision(setting: str, device: torch.device) -> Precision:
    """`train.precision` on ``device`` -> the autocast dtype and the scaler it needs."""
    name = setting
    if setting == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name == "fp32":
        return Precision("fp32", device.type, None, None)
    if name == "bf16":
        return Precision("bf16", device.type, torch.bfloat16, None)
    return Precision("fp16", device.type, torch.float16, torch.amp.GradScaler(device.type))
