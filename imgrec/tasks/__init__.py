"""What differs per task: head and loss, decoding raw outputs, JSON, log rows, metrics, explanation target, parity."""
