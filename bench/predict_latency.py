"""Single-image latency of imgrec's Predictor vs plain ``model.predict``, side by side, plus batch-32 throughput.

Each pair is timed interleaved (one call of each per round, in rotating order), so load from others on a
shared machine hits both alike and the ratios hold even when the absolute figures drift.

Run: ``make bench`` or ``.venv/bin/python bench/predict_latency.py`` (KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import numpy as np
from common import default_predictor, interleaved_median_ms, machine

from imgrec.tasks.base import DecodeOptions

SINGLE_ROUNDS, BATCH_ROUNDS = 30, 8
WARMUP = 3  # untimed rounds first


def main() -> None:
    predictor = default_predictor()
    model = predictor.model
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    batch32 = rng.integers(0, 256, (32, 224, 224, 3), dtype=np.uint8)

    single = interleaved_median_ms(
        {
            "predictor": lambda: predictor.predict([image], DecodeOptions(top_k=5)),
            "model.predict": lambda: model.predict(image[None].astype("float32"), verbose=0),
        },
        rounds=SINGLE_ROUNDS,
        warmup=WARMUP,
    )
    batch = interleaved_median_ms(
        {
            "predictor": lambda: predictor.predict_batch(batch32),
            "model.predict": lambda: model.predict(batch32.astype("float32"), verbose=0),
        },
        rounds=BATCH_ROUNDS,
        warmup=WARMUP,
    )
    ours_single, plain_single = single["predictor"], single["model.predict"]
    ours_batch, plain_batch = batch["predictor"], batch["model.predict"]

    print(f"machine: {machine()}")
    print("model: imagenet-mobilenetv2 (MobileNetV2 1.0, 224x224), TensorFlow CPU")
    print(f"timing: medians of interleaved rounds (each contender once a round, rotating order), after {WARMUP} "
          f"untimed rounds: {SINGLE_ROUNDS} rounds for one image, {BATCH_ROUNDS} for a batch of 32")
    print(f"single image  predictor {ours_single:8.2f} ms   model.predict {plain_single:8.2f} ms   "
          f"speed-up x{plain_single / ours_single:.2f}")
    print(f"batch of 32   predictor {ours_batch:8.2f} ms ({32000 / ours_batch:6.1f} img/s)   "
          f"model.predict {plain_batch:8.2f} ms ({32000 / plain_batch:6.1f} img/s)   "
          f"ratio x{plain_batch / ours_batch:.2f}")


if __name__ == "__main__":
    main()
