"""The Docker image built and run: the API container against PostgreSQL, the app container, a real photo.

``make test`` installs Docker (Debian's docker.io) and debootstrap when missing and starts dockerd
(``make deploy-tools``). The image is built on a base made here from Debian's packages (no registry to pull
python:3.11-slim from) and reused while its inputs are unchanged (see ``tests/deploy/images.py``).

PostgreSQL: compose.yaml runs the official postgres image, which cannot be pulled here, so the API
container runs against a throw-away PostgreSQL cluster on the host instead (its Unix socket is mounted into
the container). Both containers run with a read-only root file system and with HTTP(S)_PROXY pointing at a
closed port, so anything they tried to download at start would fail.
"""

from __future__ import annotations

import json
import time
import urllib.request

import httpx
import pytest

from tests.deploy.images import Container, ensure_image, record, run_container, wait_for
from tests.helpers.servers import free_port

pytest_plugins = ["tests.helpers.store_fixtures"]
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(2400)]

MAX_IMAGE_BYTES = 3.7e9  # TensorFlow alone is 1.3 GB installed; Ray ~0.25 GB, OpenCV, SciPy, scikit-learn, PyAV; the rest ~1.5 GB
READY_TIMEOUT_S = 240
TOKEN = "container-test-token"
NO_DOWNLOADS = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
CAT_LABELS = {"Egyptian cat", "tabby", "tiger cat", "Persian cat", "Siamese cat"}


@pytest.fixture(scope="module")
def image():
    built = ensure_image()
    record("image", {"tag": built.tag, "base": built.base, "size_bytes": built.size_bytes,
                     "size_gb": round(built.size_bytes / 1e9, 2), "build_seconds": built.build_seconds})
    return built


def api_command(image, port: int) -> list[str]:
    """The image's own CMD, listening on 127.0.0.1 and a free port instead of 0.0.0.0:8000."""
    command = list(image.config()["Cmd"])
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    return command


@pytest.fixture(scope="module")
def containers(image, postgres_cluster):
    database = postgres_cluster.create_database()
    socket_dir = "/run/imgrec-pg"
    api_port, app_port = free_port(), free_port()
    started: list[Container] = []
    try:
        began = time.monotonic()
        api = run_container(
            image.tag, "api", api_command(image, api_port),
            env={**NO_DOWNLOADS, "IMGREC_ADMIN_TOKEN": TOKEN,
                 "IMGREC_DATABASE_URL": f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"},
            options=("-v", f"{postgres_cluster.socket_dir}:{socket_dir}"),
        )
        started.append(api)
        app = run_container(
            image.tag, "app",
            ["streamlit", "run", "streamlit_app.py", "--server.address", "127.0.0.1", "--server.port", str(app_port),
             "--server.headless", "true"],
            env={**NO_DOWNLOADS, "HOME": "/tmp"},
        )
        started.append(app)
        api_url, app_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{app_port}"
        wait_for(api, f"{api_url}/health/ready", READY_TIMEOUT_S)
        api_ready = time.monotonic() - began  # from `docker run` to /health/ready answering 200
        wait_for(app, f"{app_url}/_stcore/health", READY_TIMEOUT_S)
        app_ready = time.monotonic() - began
        record("run", {"api_run_to_ready_seconds": round(api_ready, 1), "app_run_to_health_seconds": round(app_ready, 1),
                       "note": "both containers started together on 2 cores"})
        yield {"api": api, "app": app, "api_url": api_url, "app_url": app_url}
    finally:
        for container in started:
            container.remove()
        postgres_cluster.drop_database(database)


def test_image_is_non_root_small_and_labelled(image):
    config = image.config()
    assert config["User"].split(":")[0] not in ("", "root", "0")
    assert image.size_bytes < MAX_IMAGE_BYTES, f"image is {image.size_bytes / 1e9:.2f} GB"
    assert config["Cmd"][0] == "gunicorn" and "8000/tcp" in config["ExposedPorts"]
    listing = run_container(image.tag, "models", ["python", "-m", "imgrec", "models", "--json"], env=NO_DOWNLOADS)
    try:
        deadline = time.monotonic() + 120
        while listing.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        names = {json.loads(line)["name"] for line in listing.logs().splitlines() if line.startswith("{")}
    finally:
        listing.remove()
    # The stock ImageNet model registered at build time and the three shipped ones.
    assert {"imagenet-mobilenetv2", "cifar10-mobilenetv2", "fashion-mnist-cnn",
            "cifar10-mosaic-multilabel"} <= names, listing.logs()[-2000:]


def test_api_container_is_ready_on_postgres_and_predicts_a_real_photo(containers, photos_dir):
    url = containers["api_url"]
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ready" and health["database"]["backend"] == "postgresql", health
    assert health["model"]["name"] == "imagenet-mobilenetv2"
    with open(photos_dir / "cat.jpg", "rb") as photo:
        response = httpx.post(f"{url}/predict?top_k=3", files={"files": ("cat.jpg", photo, "image/jpeg")}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"][0]["label"] in CAT_LABELS, body
    assert body["prediction_id"] is not None and "log_warning" not in body, body  # written to PostgreSQL
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    assert json.dumps(stats).count("imagenet-mobilenetv2") >= 1
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert "imgrec_model_ready 1.0" in metrics
    reload = httpx.post(f"{url}/model/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert reload.status_code == 200, reload.text
    assert "Downloading data from" not in containers["api"].logs()


def test_app_container_serves_streamlit(containers):
    url = containers["app_url"]
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
        assert response.read().decode().strip() == "ok"
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200 and "streamlit" in page.text.lower()
    assert "Downloading data from" not in containers["app"].logs()
