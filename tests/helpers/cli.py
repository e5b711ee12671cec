"""``python -m imgrec`` in a subprocess that sees only the given settings."""

from __future__ import annotations

import os
import subprocess
import sys

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.settings import settings_env


def run_cli(args, settings, **extra_env):
    """The CLI sees only these settings plus ``extra_env``: no ``IMGREC_*`` variable of the caller's
    environment (a real database URL, a default model, ...) reaches it."""
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("IMGREC_")},
        **settings_env(settings),
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "imgrec", *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300
    )
