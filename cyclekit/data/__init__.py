"""Datasets for cyclekit: image decoding, transforms, folder datasets, checks and downloads.

Import from the submodules (``cyclekit.data.images``, ``.transforms``, ``.folders``, ``.check``,
``.catalogue``, ``.download``); this package module imports nothing so that ``import
cyclekit.data.x`` stays cheap (albumentations is only loaded by ``transforms``).
"""
