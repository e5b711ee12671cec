"""Detector latency end to end (resize, inference, box decoding and NMS) per runtime, XL and regular, side by side.

Registers the two shipped detectors in a temp folder, exports each to TFLite float32, TFLite full-integer
int8 and ONNX through ``imgrec.export`` (so each runtime comes with its parity verdict against Keras), then
times ``Predictor.predict`` on one real photo per call and on a batch of 32 photos, every contender once
per round in rotating order (``common.interleaved_median_ms``), so load from others hits all alike.

Run: ``.venv/bin/python bench/detect.py`` (``--rounds``, ``--formats``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from common import interleaved_median_ms, machine, photos_dir

from imgrec.core.images import decode_image
from imgrec.core.samples import list_samples
from imgrec.core.settings import Settings
from imgrec.export.exporter import export_model
from imgrec.inference.predictor import Predictor
from imgrec.inference.runtimes import open_backend
from imgrec.registry import catalog
from imgrec.registry.detector_cards import STOCK_DETECTORS

FORMATS = ("tflite-fp32", "tflite-int8", "onnx")
PHOTO = "grace_hopper.jpg"
TARGET_MS = 25.0  # the aim for the XL detector with the fastest runtime that passes parity
BATCH = 32


def contenders(settings: Settings, formats: tuple[str, ...]) -> tuple[dict[str, Predictor], dict[str, str]]:
    """``"<model> <runtime>"`` -> a predictor serving through it, and -> its parity verdict."""
    predictors, verdicts = {}, {}
    for name in STOCK_DETECTORS:
        catalog.ensure_stock_detector(name, settings)
        keras_predictor = Predictor.load(name, None, settings, backend="keras")
        predictors[f"{name} keras"] = keras_predictor
        verdicts[f"{name} keras"] = "reference"
        for result in export_model(name, None, formats, settings):
            key = f"{name} {result.format}"
            verdicts[key] = f"{result.status}: {result.headline or result.reason}"
            if result.path:
                folder = catalog.model_dir(name, keras_predictor.card.version, settings)
                backend = open_backend(result.format, folder / result.path, keras_predictor.card)
                predictors[key] = Predictor(keras_predictor.model, keras_predictor.card, backend=backend)
    return predictors, verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds for one image (batches: a quarter)")
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="imgrec-bench-detect-"))
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args, scratch: Path) -> None:
    photos = photos_dir()
    settings = Settings(models_dir=scratch / "models", data_dir=scratch / "data", samples_dir=photos)
    image = decode_image(photos / PHOTO)
    everyday = [decode_image(path) for path in list_samples(settings).values()]
    batch = [everyday[i % len(everyday)] for i in range(BATCH)]
    predictors, verdicts = contenders(settings, tuple(args.formats))

    single = interleaved_median_ms({key: (lambda p=p: p.predict([image])) for key, p in predictors.items()},
                                   rounds=args.rounds, warmup=3)
    batched = interleaved_median_ms({key: (lambda p=p: p.predict(batch)) for key, p in predictors.items()},
                                    rounds=max(3, args.rounds // 4), warmup=1)

    print(f"machine: {machine()}")
    print(f"one image: {PHOTO} ({image.width}x{image.height}), Predictor.predict = resize to 320x320, inference, "
          f"box decoding, thresholds and per-class NMS; batch: {BATCH} sample photos in one call")
    print(f"timing: medians of interleaved rounds ({args.rounds} single, {max(3, args.rounds // 4)} batch)\n")
    print(f"{'model and runtime':<36} {'1 image ms':>10} {'vs keras':>8} {'batch img/s':>11}  parity")
    for key in predictors:
        keras_key = key.rsplit(" ", 1)[0] + " keras"
        print(f"{key:<36} {single[key]:>10.2f} {single[keras_key] / single[key]:>7.2f}x "
              f"{BATCH * 1000 / batched[key]:>11.1f}  {verdicts[key]}")
    for key, verdict in verdicts.items():
        if key not in predictors:
            print(f"{key:<36} {'-':>10} {'':>8} {'':>11}  {verdict}")
    xl = {key: ms for key, ms in single.items() if key.startswith("coco-yolo-fastest-xl ")
          and (verdicts[key] == "reference" or verdicts[key].startswith("ok"))}
    fastest = min(xl, key=xl.get)
    print(f"\nXL, fastest runtime that passes parity: {fastest} {xl[fastest]:.2f} ms/image "
          f"({'within' if xl[fastest] <= TARGET_MS else 'over'} the {TARGET_MS:g} ms aim)")


if __name__ == "__main__":
    main()
