"""Using trained models: typed bundles, the PyTorch and onnxruntime backends, the Translator,
tiling, file batching and GAN sampling.

Never imports `cyclekit.train` or `cyclekit.recipes`, and this package module imports no torch,
so `from cyclekit.inference import Translator` works with onnxruntime alone:

    bundle.py         the bundle dataclass, its one writer and one reader
    translator.py     Translator: images in any form -> translated images
    torch_backend.py  networks of a bundle in PyTorch      onnx_backend.py  an exported file in onnxruntime
    tiling.py         huge images in tiles, with shared normalisation statistics
    files.py          files/folders/globs -> translated PNGs (the `translate` command)
    sampling.py       noise -> samples from a GAN bundle
"""

from __future__ import annotations

from cyclekit.inference.translator import Translator

__all__ = ["Translator"]
