"""Batch prediction on Ray Data: a folder, glob, path list or bucket of images in, Parquet results out."""
