"""Every hostile or unusual upload of ``tests/helpers/hostile_inputs.py`` through the CLI, the API and the app.

One module fixture runs the three faces once against one data dir (tiny model, a 1 MB upload limit,
kept uploads on): the CLI in one ``python -m imgrec predict --json`` process for all cases, the API as
one real ``imgrec serve`` process with one multipart request per case, and the app's Predict page under
AppTest with the files uploaded a batch at a time.  The parametrised test then checks each case per face
against its stated outcome; the last tests check what landed on disk and in the log.  Every outcome is
recorded for RELIABILITY.md (``python -m tests.helpers.reliability_report``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.hostile_inputs import APP_REFUSED_NAMES, CASES, EXIF_UPRIGHT_SHAPE, FACES, SVG, UPLOAD_LIMIT, Case
from tests.helpers.reliability_report import Recorder
from tests.helpers.settings import make_settings, settings_env

pytestmark = pytest.mark.slow

RECORDER = Recorder("hostile_inputs")
APP_BATCH = 8
KEPT_NAME = re.compile(r"^[0-9a-f]{2}/[0-9a-f]{64}\.(jpg|png|webp|bmp|gif|tif)$")
MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp", "bmp": "image/bmp",
        "tiff": "image/tiff", "svg": "image/svg+xml", "html": "text/html"}


_write_outcomes = RECORDER.fixture()


def _mime(filename: str) -> str:
    return MIME.get(filename.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def world(tiny_settings, tmp_path_factory):
    """Case files on disk, the settings every face uses, and a snapshot of the tree before any face ran."""
    from imgrec.registry import catalog

    root = tmp_path_factory.mktemp("hostile")
    settings = make_settings(root, models_dir=tiny_settings.models_dir, max_upload_bytes=UPLOAD_LIMIT,
                             keep_uploads=True)
    catalog.set_active_model("tiny-cnn", "1", settings)
    cases_dir = root / "cases"
    data = {case.name: case.make() for case in CASES}
    paths = {}
    for case in CASES:
        folder = cases_dir / case.name
        folder.mkdir(parents=True)
        if case.filename.startswith("../"):
            # The CLI is given the hostile path itself: <case>/in/deep/../../etc/passwd.jpg
            (folder / "in" / "deep").mkdir(parents=True)
            target = folder / "etc" / "passwd.jpg"
            target.parent.mkdir()
            target.write_bytes(data[case.name])
            paths[case.name] = folder / "in" / "deep" / case.filename
        elif len(case.filename.encode()) > 255:
            paths[case.name] = folder / case.filename  # cannot exist on Linux
        else:
            (folder / case.filename).write_bytes(data[case.name])
            paths[case.name] = folder / case.filename
    env = {**settings_env(settings), "IMGREC_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "IMGREC_KEEP_UPLOADS": "1"}
    return {"root": root, "settings": settings, "data": data, "paths": paths, "env": env,
            "before": _files(root), "project_before": _files(PROJECT_ROOT / "imgrec")}


@pytest.fixture(scope="module")
def observed(world):
    """{face: {case name: {"accepted", "message", "status", ...}}} plus what each face printed."""
    from tests.helpers.api import Server

    server = Server(world["settings"], "hostile-api", **{k: v for k, v in world["env"].items()
                                                          if k.startswith("IMGREC_") and k not in
                                                          ("IMGREC_MODELS_DIR", "IMGREC_DATA_DIR")})
    server.start()  # starts while the CLI runs: both load TensorFlow at the same time
    try:
        cli = _run_cli(world)
        server.wait_ready()
        api = _run_api(world, server.url)
    finally:
        server.stop()
    app = _run_app(world)
    return {"cli": cli, "api": api, "app": app}


def _run_cli(world) -> dict:
    paths = [str(world["paths"][case.name]) for case in CASES]
    env = {**os.environ, **world["env"]}
    result = subprocess.run([sys.executable, "-m", "imgrec", "predict", *paths, "--json", "--top-k", "3"],
                            capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    out = {"_process": {"returncode": result.returncode, "stderr": result.stderr, "files": [line["filename"] for line in lines],
                        "paths": paths}}
    for case, line in zip(CASES, lines):
        out[case.name] = {"accepted": "predictions" in line, "message": line.get("detail", ""), "status": 0,
                          "predictions": line.get("predictions")}
    return out


def _run_api(world, url: str) -> dict:
    import httpx

    out = {}
    with httpx.Client(base_url=url, timeout=60, headers={"User-Agent": "imgrec-hostile/1"}) as http:
        for case in CASES:
            response = http.post("/predict", params={"top_k": 3},
                                 files={"files": (case.filename, world["data"][case.name], _mime(case.filename))})
            try:
                body = response.json()
            except ValueError:
                body = {"error": "not json", "detail": response.text[:200]}
            out[case.name] = {
                "accepted": response.status_code == 200 and "predictions" in body,
                "message": f"{body.get('error', '')}: {body.get('detail', '')}" if "error" in body else "",
                "status": response.status_code,
                "body": body,
            }
    return out


def _run_app(world) -> dict:
    from tests.helpers.apptest import app_with_settings, shown
    from ui.explain_view import HEATMAPS

    out = {"_process": {"exceptions": [], "errors_shown": [], "heatmaps": {}, "subheaders": []}}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("IMGREC_MAX_UPLOAD_BYTES", str(UPLOAD_LIMIT))
        monkeypatch.setenv("IMGREC_KEEP_UPLOADS", "1")
        with app_with_settings(monkeypatch, world["settings"], timeout=240) as at:
            at.run()
            for start in range(0, len(CASES), APP_BATCH):
                batch = CASES[start : start + APP_BATCH]
                at.file_uploader(key="predict.files").set_value(
                    [(case.app_filename, world["data"][case.name], _mime(case.filename)) for case in batch]
                ).run()
                out["_process"]["exceptions"] += [str(e.value) for e in at.exception]
                out["_process"]["errors_shown"] += [shown(e.value) for e in at.error]
                out["_process"]["subheaders"] += [shown(s.value) for s in at.main.subheader]
                results = {item.upload.filename: item for item in at.session_state["predict.results"].values()}
                for case in batch:
                    item = results.get(case.app_filename)
                    if item is None:
                        out[case.name] = {"accepted": False, "message": "not processed by the page", "status": 0}
                        continue
                    out[case.name] = {"accepted": item.ok, "message": item.error or "", "status": 0,
                                      "shape": None if item.image is None else item.image.pixels.shape,
                                      "log_warning": item.log_warning, "prediction_id": item.prediction_id}
                heatmaps = at.session_state[HEATMAPS]
                for (image_key, *_), heatmap in heatmaps.items():
                    out["_process"]["heatmaps"][image_key] = heatmap.values.shape
                out["_process"]["keys"] = {item.upload.filename: key[0]
                                           for key, item in at.session_state["predict.results"].items()}
        # Under their own names, SVG and HTML never reach the page: Streamlit refuses the file ending.
        refused = {}
        for name in APP_REFUSED_NAMES:
            with app_with_settings(monkeypatch, world["settings"], timeout=240) as at:
                at.run()
                at.file_uploader(key="predict.files").set_value([(name, SVG, _mime(name))]).run()
                refused[name] = " ".join(str(e.value) for e in at.exception)
        out["_process"]["refused_names"] = refused
    return out


def _observed_text(obs: dict, face: str) -> str:
    if obs["accepted"]:
        return "accepted: prediction" + (" (200)" if face == "api" else "")
    status = f" ({obs['status']})" if face == "api" else ""
    message = re.sub(r"(.)\1{19,}", lambda m: m.group(1) * 3 + "…", obs["message"])  # the 300-char name
    return f"refused{status}: “{message[:140]}”"


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_outcome_per_face(observed, case: Case, face: str):
    obs = observed[face].get(case.name)
    expected = case.expected_for(face)
    if obs is None:
        RECORDER.add(case.name, face, expected.describe(face), "no outcome", False)
        pytest.fail(f"{face} gave no outcome for {case.name}")
    ok = obs["accepted"] == expected.accepted
    if not expected.accepted:
        ok = ok and expected.fragment in obs["message"] and "Traceback" not in obs["message"]
    if face == "api":
        ok = ok and obs["status"] == expected.status
        if expected.accepted:
            body = obs["body"]
            ok = ok and body["filename"] == case.filename and body["prediction_id"] is not None
            ok = ok and "log_warning" not in body
    if face == "app" and expected.accepted:
        ok = ok and obs["prediction_id"] is not None and not obs["log_warning"]
    RECORDER.add(case.name, face, expected.describe(face), _observed_text(obs, face), ok)
    assert ok, (face, case.name, obs.get("status"), obs["message"], obs.get("body"))


def test_no_face_crashed_or_showed_a_traceback(observed):
    cli = observed["cli"]["_process"]
    app = observed["app"]["_process"]
    checks = {
        "cli: one JSON line per file, in order, exit code 1": cli["files"] == cli["paths"] and cli["returncode"] == 1,
        "cli: no traceback on stderr": "Traceback" not in cli["stderr"],
        "api: no 500": all(observed["api"][c.name]["status"] < 500 for c in CASES),
        "app: no exception": app["exceptions"] == [],
        "app: errors shown are the refusal messages, no traceback": sorted(app["errors_shown"]) == sorted(
            observed["app"][c.name]["message"] for c in CASES if not observed["app"][c.name]["accepted"]
        ) and not any("Traceback" in e for e in app["errors_shown"]),
        "app: every upload has its own section": app["subheaders"] == [c.app_filename for c in CASES],
        # Streamlit raises "Invalid file extension" itself; showErrorDetails="none" shows it redacted.
        "app: .svg/.html names refused by Streamlit's uploader before the page sees them, shown redacted": all(
            "redacted" in text and "Traceback" not in text for text in app["refused_names"].values()),
    }
    for name, ok in checks.items():
        face = name.split(":")[0]
        RECORDER.add(name.split(": ", 1)[1], face, "yes", "yes" if ok else "no", ok)
    assert all(checks.values()), ({k: v for k, v in checks.items() if not v}, app, cli["stderr"][-2000:])


def test_files_land_only_under_uploads_with_hash_names(observed, world):
    import hashlib

    root, settings = world["root"], world["settings"]
    created = _files(root) - world["before"]
    allowed_other = {settings.data_dir / name for name in ("imgrec.db", "imgrec.db-wal", "imgrec.db-shm")}
    kept, stray = set(), []
    for path in created:
        if path in allowed_other or (path.parent == root and path.name.startswith("hostile-api-") and
                                     path.suffix == ".log"):
            continue
        try:
            relative = path.relative_to(settings.uploads_dir).as_posix()
        except ValueError:
            stray.append(path)
            continue
        if KEPT_NAME.match(relative):
            kept.add(relative)
        else:
            stray.append(path)
    accepted_hashes = {hashlib.sha256(world["data"][c.name]).hexdigest() for c in CASES if c.expected.accepted}
    ok_stray = not stray
    ok_kept = {name.split("/")[1].split(".")[0] for name in kept} == accepted_hashes
    ok_outside = not (root.parent / "etc").exists() and not (PROJECT_ROOT / "etc").exists()
    ok_package = _files(PROJECT_ROOT / "imgrec") - world["project_before"] <= {
        p for p in _files(PROJECT_ROOT / "imgrec") if "__pycache__" in p.parts}
    RECORDER.add("no file outside data/uploads (tmp tree snapshot)", "all", "none",
                 "none" if ok_stray else ", ".join(p.name[:40] for p in stray), ok_stray)
    RECORDER.add("kept uploads = one hash-named file per accepted image", "all",
                 f"{len(accepted_hashes)} files", f"{len(kept)} files", ok_kept)
    RECORDER.add("nothing written next to the data dir or in the project (etc/passwd.jpg)", "all", "nothing",
                 "nothing" if ok_outside and ok_package else "found", ok_outside and ok_package)
    assert ok_stray, stray
    assert ok_kept, (sorted(kept), sorted(accepted_hashes))
    assert ok_outside and ok_package


def test_log_holds_one_row_per_accepted_prediction_per_face(observed, world):
    import sqlalchemy as sa

    from imgrec.predlog.store import open_store, predictions_table

    with open_store(world["settings"]) as store, store.engine.connect() as connection:
        rows = dict(connection.execute(
            sa.select(predictions_table.c.source, sa.func.count()).group_by(predictions_table.c.source)
        ).all())
    wanted = {face: sum(observed[face][c.name]["accepted"] for c in CASES) for face in FACES}
    expected = {face: sum(c.expected_for(face).accepted for c in CASES) for face in FACES}
    for face in FACES:
        ok = rows.get(face, 0) == wanted[face] == expected[face]
        RECORDER.add("log rows = accepted predictions", face, f"{expected[face]} rows, source={face}",
                     f"{rows.get(face, 0)} rows", ok)
    assert rows == wanted == expected


def test_exif_rotated_image_is_upright_for_prediction_and_gradcam(observed, world, tiny_predictor):
    from imgrec.core.images import decode_image
    from imgrec.explain import cam, render
    from imgrec.tasks.base import DecodeOptions

    data = world["data"]["exif_rotated_jpeg"]
    decoded = decode_image(data)
    assert decoded.pixels.shape[:2] == EXIF_UPRIGHT_SHAPE
    # Prediction on the decoded (upright) pixels is the prediction every face returned.
    reference = tiny_predictor.predict([decoded.pixels], DecodeOptions(top_k=3))[0].predictions
    faces_ok = {}
    for face in ("cli", "api"):
        obs = observed[face]["exif_rotated_jpeg"]
        got = obs["predictions"] if face == "cli" else obs["body"]["predictions"]
        faces_ok[face] = [p["label"] for p in got] == [p.label for p in reference] and np.allclose(
            [p["score"] for p in got], [p.score for p in reference], atol=1e-4)
    app_obs = observed["app"]["exif_rotated_jpeg"]
    faces_ok["app"] = tuple(app_obs["shape"][:2]) == EXIF_UPRIGHT_SHAPE
    heatmap = cam.gradcam(tiny_predictor, decoded.pixels)
    blended = render.overlay(decoded.pixels, heatmap.values)
    gradcam_ok = heatmap.shape == EXIF_UPRIGHT_SHAPE and blended.shape[:2] == EXIF_UPRIGHT_SHAPE
    app_key = observed["app"]["_process"]["keys"]["rotated.jpg"]
    app_heatmap_ok = tuple(observed["app"]["_process"]["heatmaps"].get(app_key, ())) == EXIF_UPRIGHT_SHAPE
    for face, ok in faces_ok.items():
        RECORDER.add("exif: prediction made on the upright image", face, "same as upright pixels",
                     "same" if ok else "different", ok)
    RECORDER.add("exif: Grad-CAM heatmap and overlay are upright (60×30)", "app", f"{EXIF_UPRIGHT_SHAPE}",
                 f"heatmap {heatmap.shape}, overlay {blended.shape[:2]}, page heatmap "
                 f"{observed['app']['_process']['heatmaps'].get(app_key)}", gradcam_ok and app_heatmap_ok)
    assert all(faces_ok.values()), faces_ok
    assert gradcam_ok and app_heatmap_ok


# -- the same catalogue through a detector (the CLI face: one process for every case) ------------


@pytest.fixture(scope="module")
def detector_cli(world, detector_settings):
    """``imgrec predict --json`` of every case with the shipped XL detector: {case name: its JSON line}."""
    paths = [str(world["paths"][case.name]) for case in CASES]
    env = {**os.environ, **world["env"], "IMGREC_MODELS_DIR": str(detector_settings.models_dir)}
    result = subprocess.run([sys.executable, "-m", "imgrec", "predict", *paths, "--json",
                             "--model", "coco-yolo-fastest-xl"],
                            capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == len(CASES), result.stderr[-2000:]
    return dict(zip((case.name for case in CASES), lines, strict=True))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_outcome_through_a_detector(detector_cli, case: Case):
    line, expected = detector_cli[case.name], case.expected_for("cli")
    if expected.accepted:
        assert set(line) >= {"detections", "image"} and line["model"]["task"] == "detection", line
        assert line["image"]["width"] >= 1 and line["image"]["height"] >= 1
        for detection in line["detections"]:
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 <= x2 <= line["image"]["width"] and 0 <= y1 <= y2 <= line["image"]["height"]
    else:
        assert "detections" not in line and expected.fragment in line["detail"], line
    if case.name == "exif_rotated_jpeg":
        assert (line["image"]["height"], line["image"]["width"]) == EXIF_UPRIGHT_SHAPE  # boxes in the upright image
