"""Grad-CAM / Grad-CAM++ latency against a compiled prediction, and the deletion/insertion check, at 224x224.

Run: ``make bench`` or ``.venv/bin/python bench/explain.py`` (KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np
from common import default_predictor, machine, median_ms

from imgrec import explain
from imgrec.config import PROJECT_ROOT
from imgrec.images import decode_image, resize

ROUNDS = 3


def sample_image(size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The real cat photo when the shared photos are around (faithfulness means little on noise)."""
    photos = Path(os.environ.get("IMGREC_SAMPLES_DIR", PROJECT_ROOT.parent / "shared" / "photos"))
    if (photos / "cat.jpg").exists():
        return resize(decode_image(photos / "cat.jpg").pixels, size), "cat.jpg"
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8), "random noise"


def main() -> None:
    predictor = default_predictor()
    image, source = sample_image(predictor.card.input_size)
    batch = image[None]

    build_s, cams = {}, {}
    for method in explain.METHODS:
        started = time.perf_counter()
        cams[method] = explain.explainer(predictor, method=method)
        build_s[method] = time.perf_counter() - started
    # The machine is shared: alternate the contenders over a few rounds, so that a burst of
    # someone else's load hits all of them, and keep the median of the round medians.
    timed = {"predict": lambda: predictor.predict_batch(batch), **{m: (lambda c=c: c(image)) for m, c in cams.items()}}
    rounds = {name: [] for name in timed}
    for _ in range(ROUNDS):
        for name, fn in timed.items():
            rounds[name].append(median_ms(fn, repeats=20))
    predict_ms = statistics.median(rounds.pop("predict"))
    cam_ms = {method: statistics.median(values) for method, values in rounds.items()}
    heatmap = explain.explainer(predictor, method="gradcam")(image)
    steps, random_maps = 16, 3
    faith = explain.deletion_insertion(predictor, image, heatmap, steps=steps, random_maps=random_maps)
    faith_ms = median_ms(
        lambda: explain.deletion_insertion(predictor, image, heatmap, steps=steps, random_maps=random_maps),
        repeats=5,
        warmup=1,
    )
    curves = 2 * (1 + random_maps)

    print(f"machine: {machine()}")
    print(f"model: imagenet-mobilenetv2 (MobileNetV2 1.0, 224x224), TensorFlow CPU; image: {source}, "
          f"layer {heatmap.layer}, target '{heatmap.label}' (p={heatmap.probability:.3f})")
    print(f"compiled prediction, 1 image   {predict_ms:8.2f} ms (median)")
    for method in explain.METHODS:
        print(f"{method:<10} 1 image          {cam_ms[method]:8.2f} ms (median)   x{cam_ms[method] / predict_ms:.2f} "
              f"of prediction   (build + trace once: {build_s[method]:.2f} s)")
    print(f"deletion+insertion             {faith_ms:8.2f} ms (median)   {curves} curves x {steps + 1} images, "
          f"one batched call per curve (Grad-CAM + {random_maps} random maps, blur baseline)")
    print(f"  Grad-CAM  deletion AUC {faith.deletion_auc:.3f} (random {faith.random_deletion_auc:.3f}, lower is better)")
    print(f"  Grad-CAM insertion AUC {faith.insertion_auc:.3f} (random {faith.random_insertion_auc:.3f}, higher is better)"
          f"   better than random: {faith.better_than_random}")


if __name__ == "__main__":
    main()
