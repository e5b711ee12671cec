"""``imgrec predict`` with a detector: registered on first use, JSON boxes, options, clear errors."""

from __future__ import annotations

import json
from collections import Counter

from tests.helpers.cli import run_cli
from tests.helpers.settings import make_settings


def test_first_use_registers_the_detector_and_prints_boxes(tmp_path, photos_dir):
    settings = make_settings(tmp_path)
    result = run_cli(["predict", str(photos_dir / "parrot.jpg"), str(photos_dir / "pets.jpg"),
                      "--model", "coco-yolo-fastest-xl", "--json"], settings)
    assert result.returncode == 0, result.stderr
    parrot, pets = (json.loads(line) for line in result.stdout.splitlines())
    assert [d["label"] for d in parrot["detections"]] == ["bird"] and parrot["image"] == {"width": 512, "height": 929}
    assert Counter(d["label"] for d in pets["detections"]) == {"dog": 2}
    assert parrot["model"]["task"] == "detection" and parrot["prediction_id"] is not None
    assert (settings.models_dir / "coco-yolo-fastest-xl" / "1" / "card.json").exists()
    # The active model is still the classifier: making a detector active is the user's choice.
    assert not settings.active_model_file.exists()

    text = run_cli(["predict", str(photos_dir / "grace_hopper.jpg"), "--model", "coco-yolo-fastest-xl",
                    "--classes", "tie", "--no-log"], settings)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{photos_dir / 'grace_hopper.jpg'}: 1 object (1 tie): tie ")


def test_bad_options_exit_2_naming_what_was_received(tmp_path, photos_dir):
    settings = make_settings(tmp_path)
    result = run_cli(["predict", str(photos_dir / "parrot.jpg"), "--model", "coco-yolo-fastest-xl",
                      "--score-threshold", "1.5"], settings)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: score_threshold=1.5. Expected a number in (0, 1]."
    result = run_cli(["predict", str(photos_dir / "parrot.jpg"), "--model", "coco-yolo-fastest-xl",
                      "--classes", "sofa"], settings)
    assert result.returncode == 2 and "'sofa' is not among the 80 classes" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_shipped_files_the_error_says_how_to_import_them(tmp_path, photos_dir):
    result = run_cli(["predict", str(photos_dir / "parrot.jpg"), "--model", "coco-yolo-fastest"],
                     make_settings(tmp_path), IMGREC_SHARED_DETECTION_DIR=str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "imgrec import darknet yolo-fastest-1.1.cfg yolo-fastest-1.1.weights --names coco.names" in result.stderr
    assert "96a2900d163196c396e73f3fdab04ca4dd9a2f70" in result.stderr
