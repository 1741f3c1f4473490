"""Exporting trained models for use outside cyclekit: ONNX files with parity checks (`onnx.py`).

Never imports `cyclekit.train` or `cyclekit.recipes`: a bundle is all an export needs.
"""
