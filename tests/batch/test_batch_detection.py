"""``imgrec batch`` with the shipped ``coco-yolo-fastest-xl`` on a real local Ray: one row per detection, each
equal to ``imgrec predict --json`` on the same files (a hostile file is an error row, as predict says)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from imgrec.batch.job import read_results, run_batch
from tests.helpers.cli import run_cli
from tests.helpers.settings import make_settings

DETECTOR = "coco-yolo-fastest-xl"
PHOTOS = ("pets.jpg", "grace_hopper.jpg")


def test_one_row_per_detection_equal_to_predict(ray_cluster, tmp_path, photos_dir):
    settings = make_settings(tmp_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(photos_dir / name, folder / name)
    (folder / "not_an_image.jpg").write_bytes(b"these bytes are text, not a JPEG")
    files = sorted(folder.iterdir())
    answer = run_cli(["predict", *map(str, files), "--model", DETECTOR, "--json", "--no-log"], settings)
    assert answer.returncode == 1, answer.stderr  # the hostile file fails
    predicted = {Path(a["filename"]).name: a for a in map(json.loads, answer.stdout.splitlines())}

    summary = run_batch(str(folder), DETECTOR, str(tmp_path / "out.parquet"), settings, actors=1)
    rows = read_results(str(tmp_path / "out.parquet"))

    assert (summary.images, summary.failures) == (3, 1)
    [refused] = rows[rows.source_path.str.endswith("not_an_image.jpg")].itertuples()
    expected = predicted["not_an_image.jpg"]
    assert (refused.error, refused.detail) == (expected["error"], expected["detail"])
    for name in PHOTOS:
        got = rows[rows.source_path.str.endswith(f"/{name}")].reset_index(drop=True)
        want = predicted[name]["detections"]
        assert want, name  # both photos hold objects, so each row is one box
        assert len(got) == len(want), name
        assert got.error.isna().all() and (got.model == f"{DETECTOR}@1").all() and (got.task == "detection").all()
        assert got.sha256.nunique() == 1  # the rows of one image share its digest
        for row, box in zip(got.itertuples(), want, strict=True):
            item = json.loads(row.result)
            assert (row.label, item["label"]) == (box["label"], box["label"]), name
            assert row.score == pytest.approx(box["score"], abs=2e-6)
            assert item["box"] == pytest.approx(box["box"], abs=0.05)
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == len(rows)
