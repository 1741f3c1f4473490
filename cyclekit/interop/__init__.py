"""Bringing models in from other code: the reference CycleGAN/pix2pix weights, the pretrained catalogue."""
