"""Faults while predictions come in: a read-only or full database, bad models on reload, concurrent writers.

The faults already covered by tests of other files are not repeated here: they are listed in
``REFERENCES`` (and in RELIABILITY.md, without a result: their outcome is in the test run).

Root ignores file permissions and there is no tmpfs to fill, so the faults are made by SQLite itself:
a ``?mode=ro`` URI gives a really read-only handle, and ``PRAGMA max_page_count`` stops the file growing,
which SQLite reports exactly as a full disk ("database or disk is full").
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from tests.helpers.reliability_report import Recorder
from tests.helpers.settings import make_settings

REFERENCES = (
    ("read-only database file (store level)",
     "tests/predlog/test_store.py::test_read_only_database_file_gives_a_clear_warning_and_keeps_the_prediction"),
    ("unwritable log under the CLI", "tests/cli/test_cli.py::test_unwritable_log_still_prints_predictions"),
    ("corrupt or missing model on API reload",
     "tests/api/test_api.py::test_corrupt_or_missing_model_on_reload_keeps_the_old_one"),
    ("reload under load", "tests/api/test_api.py::test_reload_under_load_fails_no_request"),
    ("8 threads writing one SQLite file", "tests/predlog/test_store.py::test_eight_threads_write_4000_predictions"),
    ("4 processes opening a fresh SQLite file and writing",
     "tests/predlog/test_store.py::test_four_processes_open_a_fresh_database_and_write_4000_predictions"),
    ("a process keeps writing while others open and close the same SQLite log",
     "tests/predlog/test_store.py::test_a_store_that_created_the_file_keeps_writing_visibly_while_others_come_and_go"),
    ("truncated model file", "tests/registry/test_models.py::test_truncated_model_file_is_refused_by_checksum"),
    ("training worker killed (SIGKILL) mid-run: marked interrupted, resumed with weights and optimizer state",
     "tests/training/test_train.py::test_sigkill_then_resume_continues_from_the_saved_epoch"),
)
RECORDER = Recorder("faults", REFERENCES)
TOKEN = "faults-admin-token-0123456789"
_write_outcomes = RECORDER.fixture()


def test_every_referenced_test_exists():
    assert RECORDER.missing_references() == []


def image_bytes(seed: int, fmt: str = "PNG", size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def fresh_settings(tiny_settings, root, **overrides):
    from imgrec.registry import catalog

    settings = make_settings(root, models_dir=tiny_settings.models_dir, **overrides)
    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


def table_counts(settings) -> dict:
    from imgrec.predlog.store import Store

    with Store(settings.database_url_resolved.replace("?mode=ro&uri=true", "").replace("file:", "")) as store:
        with store.engine.connect() as connection:
            return {
                "predictions": connection.scalar(sa.text("SELECT count(*) FROM predictions")),
                "uploads": connection.scalar(sa.text("SELECT count(*) FROM uploads")),
                "uploads_without_prediction": connection.scalar(sa.text(
                    "SELECT count(*) FROM uploads WHERE id NOT IN (SELECT upload_id FROM predictions)")),
                "stored_paths": connection.scalars(sa.text(
                    "SELECT stored_path FROM uploads WHERE stored_path IS NOT NULL")).all(),
            }


def kept_files(settings) -> set[str]:
    if not settings.uploads_dir.exists():
        return set()
    return {p.relative_to(settings.uploads_dir).as_posix() for p in settings.uploads_dir.rglob("*") if p.is_file()}


@pytest.fixture
def api(tiny_settings):
    """An in-process API (the real app, lifespan and batcher included) for settings given later."""
    from fastapi.testclient import TestClient

    from imgrec.api.app import create_app

    clients = []

    def start(settings):
        client = TestClient(create_app(settings))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def post_image(client, data: bytes, name: str = "x.png"):
    return client.post("/predict", files={"files": (name, data, "image/png")})


def test_read_only_database_under_the_api_answers_with_a_warning_and_writes_nothing(api, tiny_settings, tmp_path):
    from imgrec.predlog.store import open_store

    writable = fresh_settings(tiny_settings, tmp_path)
    with open_store(writable) as store:  # create and migrate the file first
        assert store.count_predictions() == 0
    db = writable.data_dir / "imgrec.db"
    settings = fresh_settings(tiny_settings, tmp_path, database_url=f"sqlite:///file:{db}?mode=ro&uri=true",
                              keep_uploads=True)
    client = api(settings)
    responses = [post_image(client, image_bytes(seed)) for seed in range(3)]
    bodies = [r.json() for r in responses]
    counts = table_counts(writable)
    ok = (all(r.status_code == 200 for r in responses) and all(b["predictions"] for b in bodies)
          and all("read-only" in b.get("log_warning", "") and b["prediction_id"] is None for b in bodies))
    clean = counts["predictions"] == 0 and counts["uploads"] == 0 and kept_files(settings) == set()
    RECORDER.add("database read-only while predictions come in", "api",
                 "200 + prediction + log_warning 'read-only'; no row, no kept file",
                 f"{[r.status_code for r in responses]}; warning: {bodies[0].get('log_warning', '')}; "
                 f"rows {counts['predictions']}, kept files {len(kept_files(settings))}", ok and clean)
    assert ok, bodies
    assert clean, (counts, kept_files(settings))
    assert client.get("/health/live").status_code == 200


def test_full_database_under_the_api_answers_with_a_warning_and_leaves_nothing_half_written(
    api, tiny_settings, tmp_path, monkeypatch
):
    import imgrec.predlog.store as store_module

    settings = fresh_settings(tiny_settings, tmp_path, keep_uploads=True)
    with store_module.open_store(settings) as store:
        assert store.count_predictions() == 0
    configure = store_module._configure_sqlite_connection

    def no_room_to_grow(dbapi_connection, record):
        configure(dbapi_connection, record)
        cursor = dbapi_connection.cursor()
        (pages,) = cursor.execute("PRAGMA page_count").fetchone()
        cursor.execute(f"PRAGMA max_page_count = {pages}")
        cursor.close()

    monkeypatch.setattr(store_module, "_configure_sqlite_connection", no_room_to_grow)
    client = api(settings)
    bodies = []
    for seed in range(40):  # the first few rows may fit in pages that are already there
        response = post_image(client, image_bytes(100 + seed, size=(64, 48)))
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        if "log_warning" in bodies[-1]:
            break
    full = [b for b in bodies if "log_warning" in b]
    logged = [b for b in bodies if b["prediction_id"] is not None]
    counts = table_counts(settings)
    ok = bool(full) and "disk holding the database is full" in full[0]["log_warning"] and all(
        b["predictions"] for b in bodies)
    clean = (counts["predictions"] == len(logged) and counts["uploads_without_prediction"] == 0
             and kept_files(settings) == set(counts["stored_paths"]))
    RECORDER.add("disk full (SQLite max_page_count) while predictions come in", "api",
                 "200 + prediction + log_warning 'full'; rows = logged answers; no orphan upload row or file",
                 f"{len(logged)} logged then: {full[0]['log_warning'][:60] if full else 'never full'}; "
                 f"rows {counts['predictions']}, orphan rows {counts['uploads_without_prediction']}, "
                 f"kept files {len(kept_files(settings))} for {len(counts['stored_paths'])} rows", ok and clean)
    assert ok, bodies[-1]
    assert clean, (counts, sorted(kept_files(settings)))


@pytest.fixture
def bad_models(tiny_settings, tmp_path):
    """tiny-cnn@1 (good), @4 whose card lists 5 classes for a 3-output model, @5 a Lambda model."""
    import keras

    models_dir = tmp_path / "models"
    shutil.copytree(tiny_settings.models_dir, models_dir)
    base = models_dir / "tiny-cnn" / "1"
    mismatch = models_dir / "tiny-cnn" / "4"
    shutil.copytree(base, mismatch)
    card = json.loads((mismatch / "card.json").read_text())
    card.update(version="4", class_names=["a", "b", "c", "d", "e"])
    (mismatch / "card.json").write_text(json.dumps(card))
    lam = models_dir / "tiny-cnn" / "5"
    shutil.copytree(base, lam)
    card = json.loads((lam / "card.json").read_text())
    card.update(version="5")
    (lam / "card.json").write_text(json.dumps(card))
    inputs = keras.Input((32, 32, 3))
    hidden = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(hidden))
    keras.Model(inputs, outputs).save(lam / "model.keras")
    # A matching checksum: the file is what its card says; only its content (a Lambda) is unsafe.
    card["files"] = {"model.keras": hashlib.sha256((lam / "model.keras").read_bytes()).hexdigest()}
    (lam / "card.json").write_text(json.dumps(card))
    from imgrec.registry import catalog

    settings = make_settings(tmp_path, models_dir=models_dir, admin_token=TOKEN)
    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


@pytest.mark.parametrize("version, fragment, case", [
    ("4", "card lists 5 class names", "model card does not match its model"),
    ("5", "Lambda", "Lambda layer (arbitrary code) refused by safe mode"),
])
def test_bad_model_on_reload_is_a_clear_error_and_the_old_one_keeps_serving(api, bad_models, version, fragment, case):
    client = api(bad_models)
    response = client.post("/model/reload", json={"name": "tiny-cnn", "version": version},
                           headers={"Authorization": f"Bearer {TOKEN}"})
    body = response.json()
    after = post_image(client, image_bytes(7))
    ok = (response.status_code == 422 and body.get("error") == "model_invalid" and fragment in body.get("detail", "")
          and after.status_code == 200 and after.json()["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"})
    RECORDER.add(f"reload: {case}", "api", f"422 model_invalid naming '{fragment}'; tiny-cnn@1 keeps serving",
                 f"{response.status_code} {body.get('error')}: {body.get('detail', '')[:90]}; then "
                 f"{after.status_code} from {after.json().get('model')}", ok)
    assert ok, (body, after.text)


@pytest.mark.slow
def test_two_app_sessions_and_the_api_write_one_database_at_once(monkeypatch, tiny_settings, tmp_path):
    """Two Predict-page sessions (AppTest, in two threads) and a real API process log into one SQLite file."""
    import httpx

    from tests.helpers.api import Server
    from tests.helpers.apptest import app_with_settings

    settings = fresh_settings(tiny_settings, tmp_path)
    from imgrec.predlog.store import open_store

    with open_store(settings) as store:
        assert store.count_predictions() == 0
    server = Server(settings, "faults-api")
    server.start()
    try:
        server.wait_ready()
        per_session, api_requests = 6, 30
        failures, api_ok = [], []

        def hammer_api():
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for index in range(api_requests):
                    response = http.post("/predict", files={"files": (f"{index}.png", image_bytes(1000 + index))})
                    if response.status_code == 200 and response.json()["prediction_id"]:
                        api_ok.append(response.json()["prediction_id"])
                    else:
                        failures.append(response.text)

        api_thread = threading.Thread(target=hammer_api)
        with app_with_settings(monkeypatch, settings, timeout=240) as first:
            second = type(first).from_file(first._script_path, default_timeout=240)
            sessions = [first, second]
            for at in sessions:
                at.run()
            api_thread.start()

            def upload(index, at):
                try:
                    for batch in range(2):
                        files = [(f"s{index}-{batch}-{n}.png", image_bytes(2000 + index * 100 + batch * 10 + n),
                                  "image/png") for n in range(per_session // 2)]
                        at.file_uploader(key="predict.files").set_value(files).run()
                        if at.exception:
                            failures.append(f"session {index}: {at.exception[0].value}")
                except Exception as exc:  # noqa: BLE001 - reported below
                    failures.append(f"session {index}: {exc!r}")

            # The two sessions take turns (AppTest is not thread-safe) while the API writes concurrently.
            for index, at in enumerate(sessions):
                upload(index, at)
            api_thread.join(300)
    finally:
        server.stop()
    with open_store(settings) as store, store.engine.connect() as connection:
        by_source = dict(connection.execute(sa.text("SELECT source, count(*) FROM predictions GROUP BY source")).all())
        sessions_seen = connection.scalar(sa.text(
            "SELECT count(DISTINCT session_id) FROM predictions WHERE source = 'app'"))
        duplicates = connection.scalar(sa.text(
            "SELECT count(*) FROM (SELECT upload_id, source, session_id FROM predictions "
            "GROUP BY upload_id, source, session_id HAVING count(*) > 1)"))
    expected = {"app": 2 * per_session, "api": api_requests}
    ok = not failures and by_source == expected and sessions_seen == 2 and duplicates == 0 and len(api_ok) == api_requests
    RECORDER.add("two app sessions + the API writing one SQLite file at once", "app+api",
                 f"{expected} rows, 2 app sessions, no duplicate, no failure",
                 f"{by_source} rows, {sessions_seen} app sessions, {duplicates} duplicates, {len(failures)} failures", ok)
    assert not failures, failures[:3]
    assert by_source == expected and sessions_seen == 2 and duplicates == 0
