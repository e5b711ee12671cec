"""Helpers for the outside-probe tests (issue 19): real ``imgrec serve`` processes, raw sockets, metrics.

Every outcome goes to the ``probe`` section of RELIABILITY.md through ``RECORDER``; the test modules of
this folder share that section, so the recorder merges what each module measured into one file.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.reliability_report import ARTIFACTS, Outcome, Recorder
from tests.helpers.servers import free_port, start, stop, tail, wait_until_ready

STARTUP_TIMEOUT_S = 120
SECTION = "probe"


class MergingRecorder(Recorder):
    """A recorder whose ``write`` keeps the outcomes other modules of the section recorded."""

    def write(self):
        if not self.outcomes:
            return None
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.section}.json"
        previous = json.loads(path.read_text()) if path.exists() else {"outcomes": [], "references": []}
        mine = {(o.case, o.face) for o in self.outcomes}
        kept = [Outcome(**o) for o in previous["outcomes"] if (o["case"], o["face"]) not in mine]
        merged = sorted([*kept, *self.outcomes], key=lambda o: o.case)
        from dataclasses import asdict

        path.write_text(json.dumps({"outcomes": [asdict(o) for o in merged], "references": []},
                                   ensure_ascii=False, indent=1))
        return path


def recorder() -> MergingRecorder:
    return MergingRecorder(SECTION)


def image_bytes(seed: int, fmt: str = "PNG", size=(40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def shared_root(prefix: str = "imgrec-probe-") -> Path:
    """A temp dir outside pytest's (root-only) tree, open to an unprivileged server user."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def copy_models(tiny_settings, root: Path) -> Path:
    models = root / "models"
    shutil.copytree(tiny_settings.models_dir, models)
    return models


def serve_tiny_model(tiny_settings, name: str, env: dict[str, str] | None = None, *, unprivileged: bool = False,
                     prefix: str = "imgrec-probe-"):
    """For a fixture to ``yield from``: an ``ApiServer`` on a copy of the tiny models folder (its default model),
    with its own data folder and ``env`` on top; stopped and removed afterwards."""
    root = shared_root(prefix)
    server = ApiServer(root, {"IMGREC_MODELS_DIR": str(copy_models(tiny_settings, root)),
                              "IMGREC_DATA_DIR": str(root / "data"), "IMGREC_DEFAULT_MODEL": "tiny-cnn", **(env or {})},
                       unprivileged=unprivileged, name=name)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


class ApiServer:
    """``python -m imgrec serve`` on 127.0.0.1 with ``IMGREC_*`` from ``env``.

    ``unprivileged``: the server runs without the capabilities that let root ignore file permissions
    (``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), so a ``chmod 444`` file is read-only to
    it, as to a server run by a non-root user (the interpreter stays readable: it belongs to root).
    """

    def __init__(self, root: Path, env: dict[str, str], *, unprivileged: bool = False, name: str = "api"):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / f"{name}-{self.port}.log"
        self.unprivileged = unprivileged
        self.env = {**os.environ, "IMGREC_ADMIN_TOKEN": "", "IMGREC_SAMPLES_DIR": str(root / "samples"),
                    "KERAS_HOME": str(root / "keras"), "HOME": str(root), **env}
        self.process = None

    def start(self, wait: bool = True) -> ApiServer:
        command = [sys.executable, "-m", "imgrec", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.unprivileged:
            command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
        self.process = start(command, log_path=self.log_path, cwd=PROJECT_ROOT, env=self.env)
        if wait:
            wait_until_ready(self.process, f"{self.url}/health/live", self.log_path, STARTUP_TIMEOUT_S)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self) -> str:
        return tail(self.log_path)

    def stop(self) -> None:
        if self.process:
            stop(self.process)

    def client(self, timeout: float = 60) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)


def cluster_processes(cluster) -> list:
    """The postmaster of a ``tests.helpers.store_fixtures`` cluster and all its children (psutil processes)."""
    import psutil

    pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    postmaster = psutil.Process(pid)
    return [postmaster, *postmaster.children(recursive=True)]


def signal_cluster(cluster, signum) -> int:
    processes = cluster_processes(cluster)
    for process in processes:
        process.send_signal(signum)
    return len(processes)


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """``(labels, value)`` of every sample of metric ``name`` in Prometheus text."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? ([0-9.eE+-]+|NaN)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
            found.append((labels, float(match.group(2))))
    return found


def requests_by_status(metrics_text: str, route: str = "/predict") -> dict[str, float]:
    by_status: dict[str, float] = {}
    for labels, value in metric_samples(metrics_text, "imgrec_http_requests_total"):
        if labels.get("route") == route:
            by_status[labels["status"]] = by_status.get(labels["status"], 0) + value
    return by_status
