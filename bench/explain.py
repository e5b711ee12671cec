"""Grad-CAM / Grad-CAM++ latency against a compiled prediction, and the deletion/insertion check, at 224x224.

Run: ``make bench`` or ``.venv/bin/python bench/explain.py`` (KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import time

import numpy as np
from common import default_predictor, interleaved_median_ms, machine, sample_photo

from imgrec.core.images import decode_image, resize
from imgrec.explain import cam, faithfulness

ROUNDS = 60  # timed rounds; each calls the prediction and every explainer once
WARMUP = 2  # untimed rounds first
FAITH_RUNS = 5


def sample_image(size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The real cat photo when the sample or shared photos are around (faithfulness means little on noise)."""
    photo = sample_photo("cat.jpg")
    if photo is not None:
        return resize(decode_image(photo).pixels, size), photo.name
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8), "random noise"


def main() -> None:
    predictor = default_predictor()
    image, source = sample_image(predictor.card.input_size)
    batch = image[None]

    build_s, cams = {}, {}
    for method in cam.METHODS:
        started = time.perf_counter()
        cams[method] = cam.explainer(predictor, method=method)
        build_s[method] = time.perf_counter() - started
    # The machine is shared: the prediction and the explainers are timed side by side (interleaved).
    timed = {"predict": lambda: predictor.predict_batch(batch), **{m: (lambda c=c: c(image)) for m, c in cams.items()}}
    cam_ms = interleaved_median_ms(timed, rounds=ROUNDS, warmup=WARMUP)
    predict_ms = cam_ms.pop("predict")
    heatmap = cam.explainer(predictor, method="gradcam")(image)
    steps, random_maps = 16, 3
    faith = faithfulness.deletion_insertion(predictor, image, heatmap, steps=steps, random_maps=random_maps)
    faith_ms = interleaved_median_ms(
        {"faith": lambda: faithfulness.deletion_insertion(predictor, image, heatmap, steps=steps, random_maps=random_maps)},
        rounds=FAITH_RUNS,
        warmup=1,
    )["faith"]
    curves = 2 * (1 + random_maps)

    print(f"machine: {machine()}")
    print(f"model: imagenet-mobilenetv2 (MobileNetV2 1.0, 224x224), TensorFlow CPU; image: {source}, "
          f"layer {heatmap.layer}, target '{heatmap.label}' (p={heatmap.probability:.3f})")
    print(f"timing: median of {ROUNDS} interleaved rounds (prediction and each explainer once a round, "
          f"rotating order), after {WARMUP} untimed rounds")
    print(f"compiled prediction, 1 image   {predict_ms:8.2f} ms (median)")
    for method in cam.METHODS:
        print(f"{method:<10} 1 image          {cam_ms[method]:8.2f} ms (median)   x{cam_ms[method] / predict_ms:.2f} "
              f"of prediction   (build + trace once: {build_s[method]:.2f} s)")
    print(f"deletion+insertion             {faith_ms:8.2f} ms (median of {FAITH_RUNS})   {curves} curves x "
          f"{steps + 1} images, one batched call per curve (Grad-CAM + {random_maps} random maps, blur baseline)")
    print(f"  Grad-CAM  deletion AUC {faith.deletion_auc:.3f} (random {faith.random_deletion_auc:.3f}, lower is better)")
    print(f"  Grad-CAM insertion AUC {faith.insertion_auc:.3f} (random {faith.random_insertion_auc:.3f}, higher is better)"
          f"   better than random: {faith.better_than_random}")


if __name__ == "__main__":
    main()
