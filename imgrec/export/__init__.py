"""Model exports (SavedModel, TFLite, ONNX), each checked against Keras in a parity report."""
