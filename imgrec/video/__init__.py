"""Video: decoding files defensively, per-frame inference through the task interface, annotated output, live frames."""
