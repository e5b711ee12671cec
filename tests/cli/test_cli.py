"""``python -m imgrec``: JSON lines, exit codes, and no traceback for a user's mistake."""

from __future__ import annotations

import json
import os
import time

import pytest
from PIL import Image

from tests.helpers.cli import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    Image.new("RGB", (50, 40), (200, 30, 30)).save(folder / "red.png")
    (folder / "notes.jpg").write_text("not an image at all")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_predict_json_lines_and_exit_code_1_when_any_file_fails(tiny_settings, files):
    paths = [files / "red.png", files / "notes.jpg", files / "missing.png", files / "empty.png", files / "red.png"]
    result = run_cli(["predict", *map(str, paths), "--json", "--top-k", "2"], tiny_settings)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["filename"] for line in lines] == [str(p) for p in paths]  # one line per file, in order
    good, text, missing, empty, again = lines
    assert good["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    assert [p["label"] for p in good["predictions"]] == [p["label"] for p in again["predictions"]]
    assert len(good["predictions"]) == 2 and set(good["predictions"][0]) == {"label", "score"}
    # The API's result shape: an error code, the message, and the status the API would answer.
    assert (text["error"], text["status"]) == ("unsupported_format", 415)
    assert "Unsupported image format 'text'" in text["detail"]
    assert (missing["error"], missing["status"]) == ("invalid_image", 422) and "File not found" in missing["detail"]
    assert "empty (0 bytes)" in empty["detail"]


def test_predict_exit_code_0_when_all_succeed(tiny_settings, files):
    result = run_cli(["predict", str(files / "red.png")], tiny_settings)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{files / 'red.png'}: ")


def test_unknown_model_is_a_one_line_error(tiny_settings, files):
    result = run_cli(["predict", str(files / "red.png"), "--model", "nope"], tiny_settings)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("error: No model named 'nope'. Available models: tiny-cnn.")
    assert "Traceback" not in result.stderr


def test_bad_top_k_is_a_usage_error(tiny_settings, files):
    result = run_cli(["predict", str(files / "red.png"), "--top-k", "zero"], tiny_settings)
    assert result.returncode == 2 and "'zero' is not a whole number" in result.stderr


@pytest.mark.parametrize("command", [["models"], ["predict", "photo.png"], ["serve"]], ids=lambda c: c[0])
def test_a_bad_setting_is_one_error_line_and_exit_code_2(settings, command):
    result = run_cli(command, settings, IMGREC_MAX_PIXELS="abc")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == ["error: IMGREC_MAX_PIXELS='abc' is not a valid int."]


def test_top_k_and_prune_days_default_to_their_settings(tiny_settings, files, tmp_path):
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    predicted = run_cli(["predict", str(files / "red.png"), "--model", "tiny-cnn", "--json", "--no-log"], settings,
                        IMGREC_DEFAULT_TOP_K="1")
    assert predicted.returncode == 0, predicted.stderr
    assert len(json.loads(predicted.stdout)["predictions"]) == 1
    pruned = run_cli(["prune"], settings, IMGREC_UPLOAD_RETENTION_DAYS="3")
    assert pruned.returncode == 0, pruned.stderr
    assert "not uploaded again for 3 days." in pruned.stdout


def test_models_json_marks_the_active_model(tiny_settings):
    result = run_cli(["models", "--json"], tiny_settings)
    assert result.returncode == 0, result.stderr
    [row] = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["name"] == "tiny-cnn" and row["active"] is True and row["classes"] == 3


def test_real_photos_through_the_default_model_registered_on_first_use(
        imagenet_settings, tiny_settings, photos_dir, files, tmp_path):  # imagenet_settings: skips without weights
    import shutil

    from tests.helpers.settings import make_settings

    # A fresh clone: trained models are committed, the stock ImageNet model is not (nobody ran `init`).
    settings = make_settings(tmp_path)
    shutil.copytree(tiny_settings.models_dir / "tiny-cnn", settings.models_dir / "tiny-cnn")
    paths = [photos_dir / "cat.jpg", photos_dir / "parrot.jpg", files / "notes.jpg"]
    result = run_cli(["predict", *map(str, paths), "--json"], settings)
    assert result.returncode == 1, result.stderr
    cat, parrot, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert cat["model"]["name"] == "imagenet-mobilenetv2"
    assert cat["predictions"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    assert parrot["predictions"][0]["label"] == "macaw"
    assert "error" in bad
    assert (settings.models_dir / "imagenet-mobilenetv2" / "1" / "card.json").is_file()


def test_predictions_are_logged_with_source_cli(tiny_settings, files, tmp_path, monkeypatch):
    from imgrec.predlog import stats
    from imgrec.predlog.store import open_store
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    # The caller's own settings must not reach the CLI: it logs to the test's database only.
    elsewhere = tmp_path / "elsewhere" / "real.db"
    elsewhere.parent.mkdir()
    monkeypatch.setenv("IMGREC_DATABASE_URL", f"sqlite:///{elsewhere}")
    monkeypatch.setenv("IMGREC_DATA_DIR", str(elsewhere.parent))
    paths = [files / "red.png", files / "notes.jpg", files / "red.png"]
    result = run_cli(["predict", *map(str, paths), "--model", "tiny-cnn"], settings)
    assert result.returncode == 1, result.stderr
    with open_store(settings) as store:
        assert store.count_predictions() == 2  # the bad file is not a prediction
        assert stats.summary(store, stats.Filters(sources=["cli"])).distinct_images == 1
    assert run_cli(["predict", str(files / "red.png"), "--no-log", "--model", "tiny-cnn"], settings).returncode == 0
    with open_store(settings) as store:
        assert store.count_predictions() == 2
    assert list(elsewhere.parent.iterdir()) == []


def test_stats_follow_the_uncertain_threshold_setting_and_show_recent_days(tiny_settings, files, tmp_path):
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    assert run_cli(["predict", str(files / "red.png"), "--model", "tiny-cnn"], settings).returncode == 0
    strict = run_cli(["stats", "--json"], settings, IMGREC_UNCERTAIN_THRESHOLD="1.0")
    lenient = run_cli(["stats", "--json"], settings, IMGREC_UNCERTAIN_THRESHOLD="0.0")
    assert json.loads(strict.stdout)["summary"]["uncertain_share"] == 1.0  # every score is under 1.0
    assert json.loads(lenient.stdout)["summary"]["uncertain_share"] == 0.0
    text = run_cli(["stats"], settings)
    assert text.returncode == 0, text.stderr
    assert "last 1 day(s) with predictions:" in text.stdout and "tiny-cnn@1: 1 predictions" in text.stdout


def test_prune_deletes_kept_uploads_older_than_the_days_given(tiny_settings, files, tmp_path):
    from imgrec.predlog.store import open_store
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir, keep_uploads=True)
    keep = {"IMGREC_KEEP_UPLOADS": "1"}
    assert run_cli(["predict", str(files / "red.png"), "--model", "tiny-cnn"], settings, **keep).returncode == 0
    [kept] = list((settings.data_dir / "uploads").glob("??/*"))
    ten_days_ago = time.time() - 10 * 86400
    os.utime(kept, (ten_days_ago, ten_days_ago))

    assert "Deleted 0 kept upload(s)" in run_cli(["prune", "--days", "30"], settings).stdout
    assert kept.exists()
    pruned = run_cli(["prune", "--days", "7"], settings)
    assert pruned.returncode == 0 and "Deleted 1 kept upload(s)" in pruned.stdout
    assert not kept.exists()
    with open_store(settings) as store:
        assert store.get_prediction(1)["stored_path"] is None
    refused = run_cli(["prune", "--days", "-1"], settings)
    assert refused.returncode == 2 and "Expected 0 or more" in refused.stderr


def test_log_export_writes_every_filtered_row_to_a_file_or_refuses_clearly(tiny_settings, files, tmp_path):
    import pandas as pd

    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    paths = [str(files / "red.png")] * 3
    assert run_cli(["predict", *paths, "--model", "tiny-cnn"], settings).returncode == 0
    out = tmp_path / "log.parquet"
    result = run_cli(["log-export", str(out), "--source", "cli", "--model", "tiny-cnn@1"], settings)
    assert result.returncode == 0, result.stderr
    assert "Wrote 3 prediction(s)" in result.stdout
    frame = pd.read_parquet(out)
    assert len(frame) == 3 and set(frame["model_name"]) == {"tiny-cnn"} and set(frame["source"]) == {"cli"}
    none = run_cli(["log-export", str(tmp_path / "none.csv"), "--source", "api"], settings)
    assert none.returncode == 0 and len(pd.read_csv(tmp_path / "none.csv")) == 0
    for args, message in (
        ([str(tmp_path / "log.xlsx")], "Unsupported export format 'xlsx'. Expected a file name ending in one of: "
                                       ".csv, .parquet."),
        ([str(tmp_path / "missing" / "log.csv")], "the folder missing/ does not exist"),
        ([str(out), "--from", "yesterday"], "'yesterday' is not a date. Expected YYYY-MM-DD."),
    ):
        refused = run_cli(["log-export", *args], settings)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr
    assert not list(tmp_path.glob(".*.part"))  # no half-written file left behind


def test_unwritable_log_still_prints_predictions(tiny_settings, files, tmp_path):
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database folder should be")
    result = run_cli(["predict", str(files / "red.png"), "--json", "--model", "tiny-cnn"], settings,
                     IMGREC_DATABASE_URL=f"sqlite:///{blocker}/imgrec.db")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["predictions"]
    assert "warning:" in result.stderr and "Traceback" not in result.stderr


def test_export_prints_one_line_per_format_and_writes_the_parity_report(tiny_settings, tmp_path):
    import shutil

    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path)
    shutil.copytree(tiny_settings.models_dir, settings.models_dir)
    result = run_cli(["export", "tiny-cnn", "--formats", "tflite-fp32", "onnx"], settings)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "tflite-fp32" in lines[0] and "onnx" in lines[1]
    assert (settings.models_dir / "tiny-cnn" / "1" / "exports" / "parity.json").exists()
    bad = run_cli(["export", "tiny-cnn", "--formats", "coreml"], settings)
    assert bad.returncode == 2 and "coreml" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_json_is_the_api_result_shape(tiny_settings, files, tmp_path):
    """One result shape for both faces: the same keys and values for the same files (the API adds its request id)."""
    import dataclasses

    from fastapi.testclient import TestClient

    from imgrec.api.app import create_app

    # A log of its own, so the shared tiny model's log keeps its row counts.
    settings = dataclasses.replace(tiny_settings, data_dir=tmp_path / "data", default_model="tiny-cnn")

    paths = [files / "red.png", files / "notes.jpg"]
    result = run_cli(["predict", *map(str, paths), "--json", "--top-k", "3", "--no-log"], settings)
    cli = [json.loads(line) for line in result.stdout.splitlines()]
    with TestClient(create_app(settings, batching=False)) as http:
        response = http.post("/predict", params={"top_k": 3},
                             files=[("files", (path.name, path.read_bytes())) for path in paths])
    assert response.status_code == 200, response.text
    api = response.json()
    for from_cli, from_api in zip(cli, api, strict=True):
        assert set(from_api) - set(from_cli) == {"request_id"}
        assert set(from_cli) - set(from_api) == set()
        assert from_cli["filename"].endswith(from_api["filename"])
        for key in set(from_cli) - {"filename", "latency_ms", "prediction_id", "predictions"}:
            assert from_cli[key] == from_api[key], key
    good_cli, good_api = cli[0]["predictions"], api[0]["predictions"]
    assert [p["label"] for p in good_cli] == [p["label"] for p in good_api]
    assert [p["score"] for p in good_cli] == pytest.approx([p["score"] for p in good_api], abs=1e-5)
    assert cli[1]["error"] == api[1]["error"] == "unsupported_format" and cli[1]["status"] == 415
