"""Serving predictions: the predictor, export runtimes, micro-batching and the one decode-predict-log path."""
