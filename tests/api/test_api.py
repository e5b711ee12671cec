"""The REST API against real uvicorn processes (``python -m imgrec serve``) on 127.0.0.1, tiny models only.

Two servers start side by side once for the module: ``main`` (admin token set, a 300 kB upload limit,
tiny-cnn versions 1 and 2 plus a corrupt version 3) and ``strict`` (no admin token, a queue of one
request and a long batch wait, to see 503s).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.api import Server
from tests.helpers.models import TINY_CLASSES, build_tiny_model, tiny_card
from tests.helpers.servers import free_port
from tests.helpers.settings import make_settings, settings_env

TOKEN = "test-admin-token-0123456789"
UPLOAD_LIMIT = 300_000


def jpeg(colour=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def png(colour=(20, 200, 30), size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def api_settings(tiny_settings, tmp_path_factory):
    """A copy of the tiny models dir with tiny-cnn@2 (another real model) and a corrupt tiny-cnn@3."""
    from imgrec.registry import catalog

    root = tmp_path_factory.mktemp("api")
    settings = make_settings(root)
    shutil.copytree(tiny_settings.models_dir, settings.models_dir)
    catalog.save_model(build_tiny_model(seed=1), tiny_card(version="2"), settings)
    corrupt = settings.models_dir / "tiny-cnn" / "3"
    shutil.copytree(settings.models_dir / "tiny-cnn" / "2", corrupt)
    card = json.loads((corrupt / "card.json").read_text())
    card["version"] = "3"
    (corrupt / "card.json").write_text(json.dumps(card))
    (corrupt / "model.keras").write_bytes(b"this is not a keras file")
    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


@pytest.fixture(scope="module")
def servers(api_settings, tmp_path_factory):
    strict_settings = make_settings(
        tmp_path_factory.mktemp("api-strict"), models_dir=api_settings.models_dir
    )
    from imgrec.registry import catalog

    catalog.set_active_model("tiny-cnn", "1", strict_settings)
    main = Server(api_settings, "main", IMGREC_ADMIN_TOKEN=TOKEN, IMGREC_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT))
    strict = Server(strict_settings, "strict", IMGREC_BATCH_QUEUE_SIZE="1", IMGREC_BATCH_MAX_WAIT_MS="400")
    try:
        for server in (main, strict):
            server.start()
        for server in (main, strict):
            server.wait_ready()
        yield {"main": main, "strict": strict}
    finally:
        for server in (main, strict):
            server.stop()


@pytest.fixture(scope="module")
def main(servers):
    return servers["main"]


@pytest.fixture(scope="module")
def client(main):
    with httpx.Client(base_url=main.url, timeout=30, headers={"User-Agent": "imgrec-tests/1"}) as http:
        yield http


def count_rows(settings) -> int:
    from imgrec.predlog.store import open_store

    with open_store(settings) as store:
        return store.count_predictions()


def assert_error(response, status: int, error: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "detail"} and body["detail"], body
    if error:
        assert body["error"] == error, body
    return body


# -- health ------------------------------------------------------------------------------------


def test_health_live_ready_and_details(client):
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    details = client.get("/health").json()
    assert details["model"]["ok"] and details["model"]["name"] == "tiny-cnn" and details["model"]["warmed"]
    assert details["database"] == {"ok": True, "backend": "sqlite"}
    assert details["batching"]["enabled"] is True


# -- predict -----------------------------------------------------------------------------------


def test_predict_one_file(client):
    response = client.post("/predict", params={"top_k": 2}, files={"files": ("red.jpg", jpeg(), "image/jpeg")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    assert len(body["predictions"]) == 2
    assert all(p["label"] in TINY_CLASSES and 0 <= p["score"] <= 1 for p in body["predictions"])
    assert body["predictions"][0]["score"] >= body["predictions"][1]["score"]
    assert body["latency_ms"] > 0 and isinstance(body["prediction_id"], int)
    assert body["request_id"] == response.headers["x-request-id"]
    # The old field name works too, and a client's request id is kept.
    again = client.post("/predict", files={"file": ("red.png", png())}, headers={"X-Request-ID": "abc-123"})
    assert again.status_code == 200 and again.json()["request_id"] == "abc-123"
    assert len(again.json()["predictions"]) == len(TINY_CLASSES)  # default top_k 5, capped at 3 classes


def test_predict_several_files_with_per_file_errors(client):
    files = [
        ("files", ("a.jpg", jpeg(), "image/jpeg")),
        ("files", ("notes.txt", b"just some text", "text/plain")),
        ("files", ("broken.jpg", jpeg()[:200], "image/jpeg")),
        ("file", ("b.png", png(), "image/png")),
    ]
    response = client.post("/predict", files=files, params={"top_k": 1})
    assert response.status_code == 200, response.text
    good, text, broken, other = response.json()
    assert [r.get("filename") for r in (good, text, broken, other)] == ["a.jpg", "notes.txt", "broken.jpg", "b.png"]
    assert len(good["predictions"]) == 1 and len(other["predictions"]) == 1
    assert text["status"] == 415 and text["error"] == "unsupported_format" and "text" in text["detail"]
    assert broken["status"] == 422 and broken["error"] == "invalid_image"


def test_one_bad_file_is_415_or_422(client):
    assert_error(client.post("/predict", files={"files": ("x.svg", b"<svg xmlns='x'></svg>")}), 415, "unsupported_format")
    assert_error(client.post("/predict", files={"files": ("x.jpg", jpeg()[:300])}), 422, "invalid_image")
    assert_error(client.post("/predict", files={"files": ("x.png", b"")}), 422, "invalid_image")


def test_bad_parameters_are_422_and_unknown_models_404(client):
    image = {"files": ("a.jpg", jpeg())}
    for top_k in ("0", "101", "many"):
        assert_error(client.post("/predict", params={"top_k": top_k}, files=image), 422, "invalid_parameter")
    assert_error(client.post("/predict", params={"model": "nope"}, files=image), 404, "model_not_found")
    assert_error(client.post("/predict", params={"model": "tiny-cnn@9"}, files=image), 404, "model_not_found")
    assert_error(client.post("/predict", params={"model": "../etc"}, files=image), 422, "invalid_parameter")
    assert_error(client.post("/predict", params={"model": "tiny-cnn@3"}, files=image), 422, "model_invalid")
    other = client.post("/predict", params={"model": "tiny-cnn@2"}, files=image)
    assert other.status_code == 200 and other.json()["model"] == {"name": "tiny-cnn", "version": "2", "task": "image-classification"}
    assert_error(client.post("/predict", data={"metadata": "{}"}, files={"photo": ("a.jpg", jpeg())}), 422, "no_files")
    assert_error(client.post("/predict", data={"files": "not a file"}, files={"x": ("a", b"a")}), 422, "invalid_form")
    assert_error(client.post("/predict", json={"image": "base64?"}), 415, "unsupported_media_type")
    for metadata in ("{not json", "[1, 2]", json.dumps({"pad": "x" * 5000})):
        assert_error(client.post("/predict", files=image, data={"metadata": metadata}), 422, "invalid_metadata")
    assert_error(client.get("/predict"), 405)
    assert_error(client.get("/nowhere"), 404)


def _raw_request(port: int, head: bytes, chunks=(), pause: float = 0.0) -> tuple[int, dict]:
    """Send a request by hand and stop sending as soon as the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], pause)[0]:
                break  # the server has answered: it did not wait for the rest
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def test_body_over_the_limit_is_413_before_it_is_read(main):
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    status, body = _raw_request(main.port, head)  # no body sent at all
    assert status == 413 and body["error"] == "payload_too_large"
    assert "50.00 MB" in body["detail"] and "separate requests" in body["detail"]
    assert time.monotonic() - started < 5


def test_streamed_body_over_the_limit_is_413_while_streaming(main):
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    part = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n\r\n" + b"\xff" * 65000
    chunk = b"%x\r\n%s\r\n" % (len(part), part)
    sent_chunks = 200  # 13 MB if the server never answered; it must answer after ~300 kB
    status, body = _raw_request(main.port, head, [chunk] * sent_chunks, pause=0.01)
    assert status == 413 and body["error"] == "payload_too_large"
    # The server still serves.
    assert httpx.get(f"{main.url}/health/live").status_code == 200


# -- logging -----------------------------------------------------------------------------------


def test_every_prediction_is_logged_with_user_agent_and_metadata(client, api_settings):
    from imgrec.predlog.store import open_store

    before = count_rows(api_settings)
    ids = []
    for index in range(4):
        response = client.post(
            "/predict", files={"files": (f"{index}.jpg", jpeg((index * 40, 10, 10)))},
            data={"metadata": json.dumps({"camera": "door", "n": index})},
        )
        ids.append(response.json()["prediction_id"])
    several = client.post("/predict", files=[("files", ("a.png", png())), ("files", ("t.txt", b"text")),
                                             ("files", ("b.png", png((1, 2, 3))))])
    ids += [item.get("prediction_id") for item in several.json() if "predictions" in item]
    assert count_rows(api_settings) - before == 6 == len(set(ids))
    with open_store(api_settings) as store:
        row = store.get_prediction(ids[1])
    assert row["source"] == "api" and row["user_agent"] == "imgrec-tests/1"
    assert row["metadata"] == {"camera": "door", "n": 1}


def test_stats_endpoint_matches_the_cli(client, main):
    client.post("/predict", files={"files": ("s.jpg", jpeg((5, 5, 250)))})
    api = client.get("/stats")
    assert api.status_code == 200
    cli = subprocess.run(
        [sys.executable, "-m", "imgrec", "stats", "--json"], capture_output=True, text=True, env=main.env,
        cwd=PROJECT_ROOT, timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == api.json()
    assert api.json()["summary"]["predictions"] >= 1
    text = subprocess.run(
        [sys.executable, "-m", "imgrec", "stats"], capture_output=True, text=True, env=main.env, cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert text.returncode == 0 and f"predictions: {api.json()['summary']['predictions']} " in text.stdout
    assert "tiny-cnn@1" in text.stdout


# -- admin -------------------------------------------------------------------------------------


def test_reload_needs_the_admin_token(client, servers):
    missing = assert_error(client.post("/model/reload"), 401, "unauthorized")
    assert "Bearer" in missing["detail"]
    assert client.post("/model/reload").headers["www-authenticate"] == "Bearer"
    assert_error(client.post("/model/reload", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    assert_error(client.post("/model/reload", headers={"Authorization": f"Basic {TOKEN}"}), 401, "unauthorized")
    ok = client.post("/model/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    # With no token configured, every call is refused, whatever it sends.
    strict = servers["strict"].url
    disabled = assert_error(httpx.post(f"{strict}/model/reload"), 403, "admin_disabled")
    assert "IMGREC_ADMIN_TOKEN" in disabled["detail"]
    assert_error(httpx.post(f"{strict}/model/reload", headers={"Authorization": f"Bearer {TOKEN}"}), 403)


def reload(client, body=None):
    return client.post("/model/reload", json=body, headers={"Authorization": f"Bearer {TOKEN}"})


def test_reload_under_load_fails_no_request(client, main, api_settings):
    before = count_rows(api_settings)
    failures, versions, sent = [], set(), [0]
    stop = threading.Event()
    lock = threading.Lock()

    def hammer(worker: int):
        with httpx.Client(base_url=main.url, timeout=30) as http:
            for index in range(40):
                if stop.is_set() and index >= 10:
                    return
                response = http.post("/predict", files={"files": ("x.jpg", jpeg((worker * 50, index, 0)))})
                with lock:
                    sent[0] += 1
                    if response.status_code != 200:
                        failures.append(response.text)
                    else:
                        versions.add(response.json()["model"]["version"])

    threads = [threading.Thread(target=hammer, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    try:
        for version in ("2", "1", "2", "1"):
            response = reload(client, {"name": "tiny-cnn", "version": version})
            assert response.status_code == 200, response.text
            assert response.json()["model"]["version"] == version
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert versions == {"1", "2"}
    assert count_rows(api_settings) - before == sent[0]


def test_corrupt_or_missing_model_on_reload_keeps_the_old_one(client):
    assert_error(reload(client, {"name": "tiny-cnn", "version": "3"}), 422, "model_invalid")
    assert_error(reload(client, {"name": "nope"}), 404, "model_not_found")
    assert_error(reload(client, {"name": "tiny-cnn", "extra": 1}), 422, "invalid_body")
    assert_error(reload(client, ["tiny-cnn"]), 422, "invalid_body")
    response = client.post("/predict", files={"files": ("a.jpg", jpeg())})
    assert response.status_code == 200 and response.json()["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    assert client.get("/health/ready").status_code == 200


def test_reload_with_no_body_serves_the_version_just_made_active(client, api_settings):
    """Make tiny-cnn@2 active on the settings the server reads, then a bare reload swaps it in (and back)."""
    from imgrec.registry import catalog

    def bare_reload():
        response = client.post("/model/reload", headers={"Authorization": f"Bearer {TOKEN}"})  # no body at all
        assert response.status_code == 200, response.text
        return response.json()

    def served() -> dict:
        health = client.get("/health").json()["model"]
        predicted = client.post("/predict", files={"files": ("a.jpg", jpeg())})
        assert predicted.status_code == 200, predicted.text
        assert predicted.json()["model"] == {key: health[key] for key in ("name", "version", "task")}
        return predicted.json()["model"]

    assert served() == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    catalog.set_active_model("tiny-cnn", "2", api_settings)
    try:
        body = bare_reload()
        assert body["model"] == {"name": "tiny-cnn", "version": "2", "task": "image-classification"}, body
        assert body["previous"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}, body
        assert served() == {"name": "tiny-cnn", "version": "2", "task": "image-classification"}
    finally:
        # Back to @1 the same way (not the latest version, so the marker is what the reload follows).
        catalog.set_active_model("tiny-cnn", "1", api_settings)
        body = bare_reload()
    assert body["model"] == {"name": "tiny-cnn", "version": "1", "task": "image-classification"} and body["previous"]["version"] == "2", body
    assert served() == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}


# -- metrics and overload ----------------------------------------------------------------------


def test_metrics_parse_and_count(client):
    from prometheus_client.parser import text_string_to_metric_families

    client.post("/predict", files={"files": ("a.jpg", jpeg())})
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name in ("imgrec_http_requests", "imgrec_http_request_duration_seconds", "imgrec_inference_duration_seconds",
                 "imgrec_batch_size", "imgrec_predictions", "imgrec_model_load_seconds", "imgrec_model_info"):
        assert name in families, sorted(families)
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["imgrec_http_requests"].samples if s.name.endswith("_total")
    }
    assert requests[("/predict", "200")] >= 1 and requests[("/predict", "413")] >= 1
    assert requests[("/predict", "422")] >= 1 and requests[("/model/reload", "401")] >= 1
    info = families["imgrec_model_info"].samples
    assert info[0].labels == {"name": "tiny-cnn", "version": "1", "task": "image-classification"}
    labels = {s.labels["label"] for s in families["imgrec_predictions"].samples if s.name.endswith("_total")}
    assert labels <= set(TINY_CLASSES) and labels
    batch_count = [s.value for s in families["imgrec_batch_size"].samples if s.name == "imgrec_batch_size_count"]
    assert batch_count[0] >= 1


def test_full_queue_answers_503_with_retry_after(servers):
    url = servers["strict"].url
    results = []

    def send():
        results.append(httpx.post(f"{url}/predict", files={"files": ("a.jpg", jpeg())}, timeout=30))

    threads = [threading.Thread(target=send) for _ in range(5)]
    for thread in threads:
        thread.start()
        time.sleep(0.02)
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 1, statuses
    refused = next(r for r in results if r.status_code == 503)
    assert refused.headers["retry-after"] == "1" and refused.json()["error"] == "overloaded"


# -- start-up ----------------------------------------------------------------------------------


def _dockerfile_command(port: int) -> list[str]:
    """The Dockerfile's gunicorn command, bound to a local port and run with this interpreter."""
    line = next(line for line in (PROJECT_ROOT / "deploy" / "Dockerfile").read_text().splitlines() if line.startswith("CMD ["))
    program, *args = json.loads(line.removeprefix("CMD "))
    assert program == "gunicorn" and "0.0.0.0:8000" in args, line
    return [sys.executable, "-m", "gunicorn", *(f"127.0.0.1:{port}" if arg == "0.0.0.0:8000" else arg for arg in args)]


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_bad_setting_stops_the_server_with_one_clear_line(server, tmp_path):
    if server == "gunicorn" and not all(importlib.util.find_spec(m) for m in ("gunicorn", "uvicorn_worker")):
        pytest.skip("gunicorn or uvicorn_worker is not installed")
    port = free_port()
    if server == "uvicorn":
        command = [sys.executable, "-m", "uvicorn", "--factory", "imgrec.api.app:create_app", "--port", str(port)]
    else:
        command = _dockerfile_command(port)
    env = {**os.environ, **settings_env(make_settings(tmp_path)), "XDG_RUNTIME_DIR": str(tmp_path),
           "IMGREC_MAX_PIXELS": "abc"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, env=env, timeout=60)
    assert result.returncode != 0, result.stderr
    assert "error: IMGREC_MAX_PIXELS='abc' is not a valid int." in result.stderr.splitlines(), result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


# -- in-process --------------------------------------------------------------------------------


def test_importing_the_api_loads_no_tensorflow_or_database():
    code = "import sys, imgrec.api.app; print(sorted(m for m in ('tensorflow', 'keras', 'sqlalchemy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr


def test_each_app_has_its_own_metrics_registry(tmp_path):
    from imgrec.api.app import create_app

    first, second = create_app(make_settings(tmp_path)), create_app(make_settings(tmp_path))
    assert first.state.imgrec.metrics.registry is not second.state.imgrec.metrics.registry
    assert create_app(make_settings(tmp_path, batch_max_size=1)).state.imgrec.batching is False


def test_batcher_gathers_concurrent_work_into_one_call():
    import numpy as np

    from imgrec.inference.batching import Batcher, Overloaded

    calls = []

    class FakePredictor:
        def predict_batch(self, batch):
            calls.append(len(batch))
            return batch.reshape(len(batch), -1)[:, :2].astype(np.float32)

    predictor = FakePredictor()
    batcher = Batcher(max_size=8, max_wait_ms=300, queue_size=16, observer=lambda n, s: None)
    batcher.start()
    try:
        futures = [batcher.submit(predictor, np.full((1, 2, 2, 3), i, np.uint8)) for i in range(6)]
        futures.append(batcher.submit(predictor, np.full((3, 2, 2, 3), 9, np.uint8)))  # 6 + 3 > 8: next batch
        outcomes = [future.result(timeout=10) for future in futures]
    finally:
        batcher.stop()
    assert calls == [6, 3]
    assert [int(o.probabilities[0, 0]) for o in outcomes] == [0, 1, 2, 3, 4, 5, 9]
    assert outcomes[0].batch_size == 6 and len(outcomes[-1].probabilities) == 3
    small = Batcher(max_size=4, max_wait_ms=0, queue_size=1)
    small.start()
    small.stop()
    small._thread = object()  # pretend it runs but never drains: the second submit finds the queue full
    small.submit(predictor, np.zeros((1, 2, 2, 3), np.uint8))
    with pytest.raises(Overloaded):
        small.submit(predictor, np.zeros((1, 2, 2, 3), np.uint8))


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_starting_the_api_prunes_kept_uploads_past_retention(tmp_path, tiny_settings):
    import hashlib
    import os

    from fastapi.testclient import TestClient

    from imgrec.api.app import create_app
    from imgrec.predlog.store import open_store
    from tests.helpers.store_fixtures import make_record

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir, default_model="tiny-cnn",
                             keep_uploads=True, upload_retention_days=30)
    content = png()
    with open_store(settings) as store:
        record = make_record(0, sha256=hashlib.sha256(content).hexdigest(), image_bytes=content)
        kept = store.upload_file(store.get_prediction(store.log_prediction(record))["stored_path"])
    forty_days_ago = time.time() - 40 * 86400
    os.utime(kept, (forty_days_ago, forty_days_ago))
    with TestClient(create_app(settings)) as http:
        assert http.get("/health/ready").status_code == 200
    assert not kept.exists()


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_without_a_model_or_database_the_app_is_live_but_not_ready(tmp_path, tiny_settings):
    from fastapi.testclient import TestClient

    from imgrec.api.app import create_app

    no_model = make_settings(tmp_path / "empty", default_model="no-such-model")
    with TestClient(create_app(no_model)) as http:
        assert http.get("/health/live").status_code == 200
        ready = http.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["model"] is False
        assert "No model named" in http.get("/health").json()["model"]["error"]
        refused = assert_error(http.post("/predict", files={"files": ("a.jpg", jpeg())}), 503, "model_unavailable")
        assert "No model named" in refused["detail"]
    # A database nobody listens on (port 1 of this machine): predictions still answer, with a warning.
    no_database = make_settings(
        tmp_path / "nodb", models_dir=tiny_settings.models_dir, default_model="tiny-cnn",
        database_url="postgresql+psycopg://imgrec@127.0.0.1:1/imgrec",
    )
    with TestClient(create_app(no_database)) as http:
        health = http.get("/health")
        assert health.status_code == 503 and health.json()["database"]["ok"] is False
        answer = http.post("/predict", files={"files": ("a.jpg", jpeg())})
        assert answer.status_code == 200 and "not logged" in answer.json()["log_warning"]
        assert_error(http.get("/stats"), 503, "store_unavailable")
