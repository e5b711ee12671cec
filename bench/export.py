"""Latency, size and parity of every export of the default ImageNet model against the compiled Keras path.

Builds imagenet-mobilenetv2 into a temp models folder, exports it to every format (parity measured on
the sample photos and variants of them, int8 calibrated on other crops of the same photos), then
times one image and a batch of 32 through each runtime: Keras compiled (Predictor), TensorFlow
SavedModel, LiteRT for TFLite float32 / float16 / dynamic-range / full-integer int8, ONNX Runtime.

All runtimes are timed side by side (one call of each per round, in rotating order), so load from
others on a shared machine hits them alike and the "x Keras" ratios hold when the absolute ms drift.

Run: ``make bench`` or ``nice .venv/bin/python bench/export.py [--formats tflite-int8]`` (KERAS_HOME as
in the Makefile).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import interleaved_median_ms, machine, photos_dir

from imgrec.core.settings import Settings
from imgrec.export import exporter
from imgrec.inference import runtimes
from imgrec.inference.predictor import Predictor
from imgrec.registry import catalog, exports
from imgrec.tasks.classification import CONFIDENT_SCORE

SINGLE_ROUNDS, BATCH_ROUNDS = 30, 6
SINGLE_WARMUP, BATCH_WARMUP = 3, 1  # untimed rounds first


def bench_settings(scratch: Path) -> Settings:
    return Settings(models_dir=scratch / "models", data_dir=scratch / "data", samples_dir=photos_dir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="all",
                        help=f"comma-separated subset of {', '.join(exports.FORMATS)} (default: all)")
    args = parser.parse_args()
    try:
        formats = exports.parse_formats(args.formats)
    except exports.ExportError as exc:
        parser.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-export-") as scratch:  # ~100 MB of exports
        run(bench_settings(Path(scratch)), formats)


def run(settings: Settings, formats: list[str] | None = None) -> None:
    started = time.perf_counter()
    card = catalog.ensure_default_model(settings)
    name, version = card.name, card.version
    results = exporter.export_model(name, version, formats, settings)
    export_seconds = time.perf_counter() - started
    report = exports.read_parity(name, version, settings)

    keras_predictor = Predictor.load(name, version, settings)
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, *card.input_size, 3), dtype=np.uint8)
    batch32 = rng.integers(0, 256, (32, *card.input_size, 3), dtype=np.uint8)

    rows = [("Keras compiled (Predictor)", "keras", keras_predictor.predict_batch, report["keras"]["size_bytes"], None)]
    for result in results:
        if result.status == exports.STATUS_FAILED:
            rows.append((result.label, result.format, None, result.size_bytes, result))
            continue
        backend = runtimes.open_backend(result.format, exports.export_path(name, version, result.format, settings), card)
        rows.append((result.label, result.format, backend.predict_batch, result.size_bytes, result))

    runnable = {fmt: predict_batch for _, fmt, predict_batch, _, _ in rows if predict_batch is not None}
    single_ms = interleaved_median_ms({fmt: (lambda p=p: p(one)) for fmt, p in runnable.items()},
                                      rounds=SINGLE_ROUNDS, warmup=SINGLE_WARMUP)
    batch_ms = interleaved_median_ms({fmt: (lambda p=p: p(batch32)) for fmt, p in runnable.items()},
                                     rounds=BATCH_ROUNDS, warmup=BATCH_WARMUP)
    timings = {fmt: (single_ms[fmt], batch_ms[fmt]) for fmt in runnable}

    keras_single, keras_batch = timings["keras"]
    keras_size = report["keras"]["size_bytes"]
    print(f"machine: {machine()} (shared machine: absolute ms are noisy)")
    print(f"model: {card.ref} (MobileNetV2 1.0, {card.input_size[0]}x{card.input_size[1]}, 1000 classes); "
          f"registered and exported in {export_seconds:.0f} s")
    print(f"held-out set: {report['held_out']['description']}")
    print(f"int8 calibration: {report['calibration']['description']}")
    print(f"timing: medians of interleaved rounds (every runtime once a round, rotating order): {SINGLE_ROUNDS} "
          f"rounds of 1 image after {SINGLE_WARMUP} untimed, {BATCH_ROUNDS} of 32 after {BATCH_WARMUP} untimed")
    header = (f"{'format':<30} {'1 image ms':>10} {'x Keras':>8} {'32 batch ms':>11} {'img/s':>7} "
              f"{'x Keras':>8} {'size MB':>8} {'x smaller':>9} {'top-1 agr':>9} {'top-5 ovl':>9} {'max|dp|':>8}  status")
    print(header)
    print("-" * len(header))
    for label, fmt, _, size, result in rows:
        if fmt not in timings:
            print(f"{label:<30} {'failed':>10}  {result.reason}")
            continue
        single, batch = timings[fmt]
        parity = ("" if result is None else
                  f"{result.figures['top1_agreement']:>9.1%} {result.figures['top5_overlap']:>9.1%} {result.figures['max_prob_diff']:>8.3f}  {result.status}")
        if result is None:
            parity = f"{'(reference)':>9}"
        print(f"{label:<30} {single:>10.2f} {keras_single / single:>7.2f}x {batch:>11.1f} {32000 / batch:>7.1f} "
              f"{keras_batch / batch:>7.2f}x {size / 1e6:>8.2f} {keras_size / size:>8.2f}x {parity}")
    int8 = next((r for r in results if r.format == "tflite-int8"), None)
    if int8 is not None and "tflite-int8" in timings:
        single = timings["tflite-int8"][0]
        print()
        print(f"int8 aims: >=2x faster than Keras -> {keras_single / single:.2f}x; "
              f">=4x smaller -> {keras_size / int8.size_bytes:.2f}x; "
              f">=97% top-1 agreement -> {int8.figures['top1_agreement']:.1%} "
              f"({int8.figures['confident_top1_agreement'] if int8.figures['confident_top1_agreement'] is not None else float('nan'):.1%} "
              f"on the {int8.figures['confident_images']} held-out images Keras scores >= {CONFIDENT_SCORE:.0%})")
    for result in results:
        if not result.ok:
            print(f"{result.label}: {result.status} - {result.reason}")


if __name__ == "__main__":
    main()
