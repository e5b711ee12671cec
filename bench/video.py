"""End-to-end video frames per second (decode → infer → draw) of MobileNetV2 and both shipped detectors, on
Keras and on each export whose parity passed, side by side; for a file (frames batched) and live (one at a time).

Every candidate runs the same first frames of ../shared/videos/bikes.mp4 once per round, in rotating order
(``interleaved_median_ms``), so load from others on the shared machine hits all of them alike. Exports are
used when they exist (``imgrec export``); none are made here.

Run: ``.venv/bin/python bench/video.py`` (KERAS_HOME as in the Makefile).
"""

from __future__ import annotations

from common import default_model_settings, interleaved_median_ms, machine

from imgrec.core.settings import IMAGENET_MODEL_NAME
from imgrec.inference.predictor import Predictor
from imgrec.registry import catalog, exports
from imgrec.registry.detector_cards import STOCK_DETECTORS
from imgrec.tasks.base import DecodeOptions
from imgrec.video.decode import open_video
from imgrec.video.live import LiveAnnotator
from imgrec.video.process import process_video

FRAMES = 50
ROUNDS, WARMUP = 3, 1
TARGET_FPS = {IMAGENET_MODEL_NAME: 30, "coco-yolo-fastest": 20}


def main() -> None:
    settings = default_model_settings()
    clip = settings.shared_data_dir.parent / "videos" / "bikes.mp4"
    data = clip.read_bytes()
    for name in STOCK_DETECTORS:
        catalog.ensure_stock_detector(name, settings)

    def file_run(predictor):
        with open_video(data, settings) as video:
            frames = process_video(predictor, video, DecodeOptions(top_k=5))
            for _, _ in zip(range(FRAMES), frames, strict=False):
                pass
            frames.close()

    def live_run(annotator):
        with open_video(data, settings) as video:
            for _, frame in zip(range(FRAMES), video.frames(), strict=False):
                annotator(frame.pixels)

    print(f"Machine: {machine()}")
    print(f"Clip: {clip.name}, first {FRAMES} frames (640×272), {ROUNDS} interleaved rounds; fps = frames / median time")
    print(f"{'model':<24} {'runtime':<10} {'input':>8} {'file fps':>9} {'live fps':>9} {'vs Keras':>9} {'aim':>5}")
    for name in (IMAGENET_MODEL_NAME, *STOCK_DETECTORS):
        name, version = catalog.resolve(name, None, settings)
        candidates = {}
        for backend in exports.serving_choices(name, version, settings):
            predictor = Predictor.load(name, version, settings, backend=backend)
            candidates[f"{backend}:file"] = lambda p=predictor: file_run(p)
            candidates[f"{backend}:live"] = lambda p=predictor: live_run(LiveAnnotator(p, DecodeOptions(top_k=5)))
        times = interleaved_median_ms(candidates, rounds=ROUNDS, warmup=WARMUP)
        card = catalog.load_card(name, version, settings)
        keras_file = FRAMES / times["keras:file"] * 1000
        for backend in exports.serving_choices(name, version, settings):
            file_fps = FRAMES / times[f"{backend}:file"] * 1000
            live_fps = FRAMES / times[f"{backend}:live"] * 1000
            aim = TARGET_FPS.get(name, "")
            print(f"{name:<24} {backend:<10} {'×'.join(map(str, card.input_size)):>8} {file_fps:>9.1f} "
                  f"{live_fps:>9.1f} {file_fps / keras_file:>8.2f}x {aim:>5}")


if __name__ == "__main__":
    main()
