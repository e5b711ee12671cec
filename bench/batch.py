"""Images/s of ``imgrec batch`` on Ray Data (1 and 2 actors) against a plain single-process loop, same 2,000 images.

The images are 2,000 CIFAR-10 test JPEGs (200 per class) from the shared data folder (``../shared/data``);
the model is the shipped ``cifar10-mobilenetv2@1``. The plain loop is what ``imgrec predict`` does: read the
files, decode, predict in batches of 32 through the same service path, in this one process. The Ray runs
include starting their actors (each loads the model); Ray itself is started once, before, and its start-up is
printed apart. The runs take a minute or more each, so they run once each, one after the other: the load average
before each says whether someone else's work got in the way.

Run: ``make bench`` or ``.venv/bin/python bench/batch.py`` (KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
import time
from pathlib import Path

from common import machine

from imgrec.core.settings import get_settings

IMAGES = 2000
PER_CLASS = IMAGES // 10
MODEL = "cifar10-mobilenetv2@1"
CHUNK = 32


def extract_images(folder: Path) -> list[Path]:
    """The first ``PER_CLASS`` test images of each CIFAR-10 class, written into ``folder``."""
    archive = get_settings().shared_data_dir / "cifar10-images.tar.gz"
    taken: dict[str, int] = {}
    paths = []
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 4 or parts[1] != "test":
                continue
            label = parts[2]
            if taken.get(label, 0) >= PER_CLASS:
                continue
            taken[label] = taken.get(label, 0) + 1
            target = folder / f"{label}-{parts[3]}"
            target.write_bytes(tar.extractfile(member).read())
            paths.append(target)
            if len(paths) == IMAGES:
                break
    return sorted(paths)


def plain_loop(paths: list[Path], settings) -> tuple[float, float]:
    """(seconds to load the model, seconds to predict every file) in this process."""
    from imgrec.inference.predictor import Predictor
    from imgrec.inference.service import predict_uploads, read_files
    from imgrec.tasks.base import DecodeOptions

    started = time.perf_counter()
    name, version = MODEL.split("@")
    predictor = Predictor.load(name, version, settings)
    loaded = time.perf_counter()
    for start in range(0, len(paths), CHUNK):
        predict_uploads(predictor, read_files(paths[start : start + CHUNK], predictor.card, settings),
                        DecodeOptions(top_k=5), settings)
    return loaded - started, time.perf_counter() - loaded


def main() -> None:
    import ray

    from imgrec.batch.job import run_batch

    settings = get_settings()
    scratch = Path(tempfile.mkdtemp(prefix="imgrec-bench-batch-"))
    (scratch / "images").mkdir()
    paths = extract_images(scratch / "images")
    print(f"machine: {machine()}")
    print(f"images: {len(paths)} CIFAR-10 test JPEGs (32x32), model {MODEL} (MobileNetV2 at 128x128), TensorFlow CPU")

    load = os.getloadavg()[0]
    load_s, loop_s = plain_loop(paths, settings)
    plain_rate = len(paths) / loop_s
    print(f"plain loop      {plain_rate:7.1f} images/s  ({loop_s:.1f} s, model load {load_s:.1f} s apart; "
          f"load average before {load:.1f})")

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    print(f"ray.init        {time.perf_counter() - started:.1f} s (once; not counted below)")
    rates, steady = {}, {}
    for actors in (1, 2):
        load = os.getloadavg()[0]
        reports = []
        summary = run_batch(str(scratch / "images"), MODEL, str(scratch / f"out-{actors}.parquet"), settings,
                            actors=actors, on_progress=reports.append)
        assert summary.images == len(paths) and summary.failures == 0, summary.line()
        rates[actors] = summary.images_per_s
        # Once the first results are back (actors started, model loaded): the rate the job keeps up.
        first, last = reports[0], reports[-1]
        steady[actors] = (last.images - first.images) / (last.seconds - first.seconds)
        print(f"ray, {actors} actor{'s' if actors > 1 else ' '}  {summary.images_per_s:7.1f} images/s  "
              f"({summary.seconds:.1f} s incl. starting the actors; {steady[actors]:.1f} images/s once the first "
              f"results are back; load average before {load:.1f})")
    ray.shutdown()
    print(f"ratios: ray 1 actor / plain loop {rates[1] / plain_rate:.2f}x, ray 2 actors / plain loop "
          f"{rates[2] / plain_rate:.2f}x, 2 actors / 1 actor {rates[2] / rates[1]:.2f}x; once running: "
          f"{steady[1] / plain_rate:.2f}x, {steady[2] / plain_rate:.2f}x, {steady[2] / steady[1]:.2f}x")


if __name__ == "__main__":
    main()
