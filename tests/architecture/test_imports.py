"""Heavy converters and runtimes load on first use, never at import: each module in a fresh interpreter.

What each module promises:
- ``imgrec.export.exporter``: tf2onnx, onnxruntime, ai_edge_litert and TensorFlow are imported inside functions
  only, "so the app and CLI can read reports cheaply";
- ``imgrec.cli.main``: imports ``imgrec.export.exporter`` at module level (through ``imgrec.cli.export``), so the
  same promise covers it;
- ``imgrec.api.app``: "Importing this module loads neither TensorFlow nor the database layer";
- ``imgrec.inference.runtimes``: opens each runtime inside its backend class; its docstring says nothing about
  TensorFlow at import, so only the three export runtimes are checked there.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from imgrec.core.settings import PROJECT_ROOT

RUNTIMES = ("tf2onnx", "onnxruntime", "ai_edge_litert")

PROMISES = {
    "imgrec.export.exporter": RUNTIMES + ("tensorflow",),
    "imgrec.inference.runtimes": RUNTIMES,
    "imgrec.cli.main": RUNTIMES + ("tensorflow",),
    "imgrec.api.app": RUNTIMES + ("tensorflow",),
}


@pytest.mark.parametrize("module", sorted(PROMISES))
def test_importing_loads_no_converter_or_runtime(module):
    heavy = PROMISES[module]
    # Only a module that is installed can be caught loading; a missing one would make this pass vacuously.
    missing = [name for name in heavy if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    code = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in {list(heavy)!r} if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [], f"importing {module} loaded them"


def test_validating_a_run_config_loads_no_tensorflow():
    """Queuing a run (CLI --detach, the Train form) checks its config without building any model."""
    code = (
        "import json, sys; from imgrec.training.trainer import RunConfig; "
        "RunConfig(name='x', dataset='cifar10', backbone='resnet50').validate(); "
        "print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
