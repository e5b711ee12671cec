"""Datasets: built-in and folder datasets, validation, splits, tf.data pipelines and augmentation."""
