"""A tiny, fast run config and a polling wait for training tests."""

from __future__ import annotations

import time

from imgrec.training.config import RunConfig


def tiny_config(folder, **overrides) -> RunConfig:
    values = dict(name="tiny", dataset=str(folder), backbone="small_cnn", image_size=16, weights=None, epochs=2,
                  batch_size=8, learning_rate=3e-3, early_stopping_patience=0, seed=0)
    values.update(overrides)
    return RunConfig(**values)


def wait_until(predicate, timeout: float, what: str, run=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    log = run.log_tail(30) if run else ""
    raise AssertionError(f"timed out waiting for {what}\n{log}")
