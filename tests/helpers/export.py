"""Whether the export converters and runtimes are installed: a skip marker for the tests that need them."""

from __future__ import annotations

import importlib.util

import pytest

# The converters and runtimes are pinned in requirements.txt; without them every export would be "failed".
MISSING_RUNTIMES = [m for m in ("tf2onnx", "onnxruntime", "ai_edge_litert") if importlib.util.find_spec(m) is None]
requires_export_runtimes = pytest.mark.skipif(
    bool(MISSING_RUNTIMES), reason=f"export converters/runtimes not installed: {', '.join(MISSING_RUNTIMES)}"
)
