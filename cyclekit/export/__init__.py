"""Exporting trained models for use outside cyclekit: ONNX files with parity checks (`onnx.py`),
int8 versions of them calibrated on the user's images (`quantize.py`).

Never imports `cyclekit.train` or `cyclekit.recipes`: a bundle is all an export needs.
"""
