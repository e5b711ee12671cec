"""Backbones and model building; preprocessing lives inside every model."""
