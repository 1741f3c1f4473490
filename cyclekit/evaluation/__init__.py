"""Evaluation of translated images: paired scores (L1, PSNR, SSIM, label-map scores) and FID/KID.

``scores`` needs only numpy (and torch for tensor inputs); ``fid`` holds the FID Inception-v3
network, its weights file handling, the feature extraction and the Fréchet / kernel distances.
"""
