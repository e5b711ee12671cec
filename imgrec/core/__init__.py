"""Settings, the error tree, model references, file and time helpers, safe image decoding: no TensorFlow."""
