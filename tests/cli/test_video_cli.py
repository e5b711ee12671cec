"""``imgrec video``: JSON lines per processed frame with a detector and a classifier, the annotated MP4,
and hostile files with the exit status of ``predict``."""

from __future__ import annotations

import json
from collections import Counter

import av

from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.cli import run_cli
from tests.helpers.settings import make_settings
from tests.helpers.video import bikes_frames, bikes_path, write_clip


def test_the_detector_on_bikes_with_an_annotated_video(tmp_path, detector_settings):
    settings = make_settings(tmp_path, models_dir=detector_settings.models_dir)
    output = tmp_path / "annotated.mp4"
    result = run_cli(["video", str(bikes_path()), "--model", DEFAULT_DETECTOR, "--every", "50", "--json",
                      "--score-threshold", "0.3", "--output", str(output)], settings)
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(line["frame"], line["time_s"]) for line in frames] == [(0, 0), (50, 2), (100, 4), (150, 6), (200, 8)]
    found = Counter(d["label"] for line in frames for d in line["detections"])
    assert found["person"] >= 1 and found["car"] >= 1, found
    with av.open(str(output)) as annotated:
        assert sum(1 for _ in annotated.decode(video=0)) == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".annotated")] == []


def test_a_classifier_in_text_and_hostile_files(tmp_path, tiny_settings, photos_dir):
    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    clip = write_clip(tmp_path / "clip.avi", bikes_frames(3, (64, 28)))
    result = run_cli(["video", str(clip), "--model", "tiny-cnn", "--top-k", "1", "--no-log"], settings)
    assert result.returncode == 0, result.stderr
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [
        "frame 0 (0.00 s)", "frame 1 (0.04 s)", "frame 2 (0.08 s)"]

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"nothing to see")
    refused = run_cli(["video", str(junk), "--model", "tiny-cnn", "--json"], settings)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    body = json.loads(refused.stdout)
    assert (body["error"], body["status"]) == ("unsupported_format", 415) and "Expected MP4" in body["detail"]

    cut = tmp_path / "cut.mp4"
    data = write_clip(tmp_path / "long.mp4", bikes_frames(20, (64, 28)), movflags="faststart").read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    output = tmp_path / "out.mp4"
    broken = run_cli(["video", str(cut), "--model", "tiny-cnn", "--output", str(output), "--no-log"], settings)
    assert broken.returncode == 1 and "truncated" in broken.stderr and "Traceback" not in broken.stderr
    assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.mp4")]

    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    assert "The file is empty (0 bytes)" in run_cli(["video", str(empty), "--model", "tiny-cnn"], settings).stderr
    usage = run_cli(["video", str(clip), "--model", "tiny-cnn", "--every", "0"], settings)
    assert usage.returncode == 2 and "Expected 1 or more" in usage.stderr
