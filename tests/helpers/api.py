"""A real API process (``python -m imgrec serve``) on 127.0.0.1 for given settings: start, wait, stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.servers import free_port, start, stop, tail, wait_until_ready
from tests.helpers.settings import settings_env

STARTUP_TIMEOUT_S = 120


class Server:
    def __init__(self, settings, name: str, **env):
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(settings.data_dir).parent / f"{name}-{self.port}.log"
        self.env = {**os.environ, **settings_env(settings), "IMGREC_ADMIN_TOKEN": "", **env}
        self.process = None

    def start(self) -> None:
        self.process = start(
            [sys.executable, "-m", "imgrec", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=self.log_path, cwd=PROJECT_ROOT, env=self.env,
        )

    def wait_ready(self) -> None:
        wait_until_ready(self.process, f"{self.url}/health/ready", self.log_path, STARTUP_TIMEOUT_S)

    def log(self) -> str:
        return tail(self.log_path)

    def stop(self) -> None:
        if self.process:
            stop(self.process)
