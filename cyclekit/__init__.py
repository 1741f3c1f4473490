"""cyclekit: unpaired image-to-image translation (CycleGAN) on a small, reusable GAN core."""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version at import time; never phone home.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
