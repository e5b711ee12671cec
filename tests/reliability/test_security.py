"""Security settings and code rules, checked as tests.

The behaviour tests of other files they lean on are not repeated here: they are listed in ``REFERENCES``
(and in RELIABILITY.md, without a result: their outcome is in the test run).
"""

from __future__ import annotations

import ast
import math
import re
import tomllib

import pytest

from imgrec.core.settings import MB, PROJECT_ROOT, Settings
from tests.helpers.reliability_report import Recorder

REFERENCES = (
    ("admin token required for /model/reload (401 missing/wrong/Basic, 403 when unset)",
     "tests/api/test_api.py::test_reload_needs_the_admin_token"),
    ("filter values with quotes and SQL are data, not SQL",
     "tests/predlog/test_store.py::test_hostile_filter_values_are_data_not_sql"),
    ("kept uploads named by content hash, never by user input",
     "tests/predlog/test_store.py::test_kept_uploads_are_named_by_hash_whatever_the_user_called_them"),
    ("kept uploads named by content hash through every face",
     "tests/reliability/test_hostile_inputs.py::test_files_land_only_under_uploads_with_hash_names"),
    ("API body over the limit: 413 before reading", "tests/api/test_api.py::test_body_over_the_limit_is_413_before_it_is_read"),
    ("API streamed body over the limit: 413 while reading",
     "tests/api/test_api.py::test_streamed_body_over_the_limit_is_413_while_streaming"),
)
RECORDER = Recorder("security", REFERENCES)
_write_outcomes = RECORDER.fixture()
CONFIG = PROJECT_ROOT / ".streamlit" / "config.toml"
SOURCES = sorted(
    [*(PROJECT_ROOT / "imgrec").rglob("*.py"), *(PROJECT_ROOT / "ui").rglob("*.py"),
     *(PROJECT_ROOT / "pages").rglob("*.py"), PROJECT_ROOT / "streamlit_app.py"]
)


def test_every_referenced_test_exists():
    assert RECORDER.missing_references() == []


def _relative(path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


def test_streamlit_config_keeps_xsrf_on_and_error_details_hidden():
    config = tomllib.loads(CONFIG.read_text())
    server, client = config.get("server", {}), config.get("client", {})
    checks = {
        "XSRF protection on (server.enableXsrfProtection)": server.get("enableXsrfProtection", True) is True,
        "CORS not switched off (server.enableCORS)": server.get("enableCORS", True) is True,
        "tracebacks hidden from users (client.showErrorDetails)": client.get("showErrorDetails") in ("none", False),
    }
    for name, ok in checks.items():
        RECORDER.add(name, ".streamlit/config.toml", "yes", "yes" if ok else "no", ok)
    assert all(checks.values()), checks


def test_upload_limits_agree_across_faces():
    from imgrec.api.app import create_app
    from imgrec.api.middleware import BODY_OVERHEAD_BYTES, BodyLimitMiddleware

    settings = Settings()
    config_mb = tomllib.loads(CONFIG.read_text())["server"]["maxUploadSize"]
    app = create_app(settings)
    limits = [m.kwargs["limit"] for m in app.user_middleware if m.cls is BodyLimitMiddleware]
    checks = {
        "config.toml maxUploadSize (MB) == Settings().max_upload_bytes": (
            config_mb * MB == settings.max_upload_bytes, f"{config_mb} MB / {settings.max_upload_bytes} bytes"),
        "API body limit == max_upload_bytes + multipart overhead": (
            limits == [settings.max_upload_bytes + BODY_OVERHEAD_BYTES], f"{limits}"),
    }
    for name, (ok, observed) in checks.items():
        RECORDER.add(name, "config", "equal", observed, ok)
    assert all(ok for ok, _ in checks.values()), checks


@pytest.mark.parametrize("limit_bytes", [20 * MB, 300_000, 5 * MB + 1])
def test_the_app_uploader_limit_follows_the_settings(monkeypatch, tiny_settings, tmp_path, limit_bytes):
    """The widget takes whole MB: its limit must never be 0 (refuse everything) nor under the setting."""
    from tests.helpers.apptest import app_with_settings
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir, default_model="tiny-cnn")
    monkeypatch.setenv("IMGREC_MAX_UPLOAD_BYTES", str(limit_bytes))
    with app_with_settings(monkeypatch, settings) as at:
        at.run()
        assert not at.exception
        widget_mb = at.file_uploader(key="predict.files").proto.max_upload_size_mb
    wanted = math.ceil(limit_bytes / MB)
    ok = widget_mb == wanted
    RECORDER.add(f"Predict uploader limit for IMGREC_MAX_UPLOAD_BYTES={limit_bytes}", "app",
                 f"{wanted} MB (whole MB, rounded up; decode refuses beyond the exact limit)", f"{widget_mb} MB", ok)
    assert ok, (widget_mb, wanted)


UNSAFE_CALLS = {
    "pickle.load", "pickle.loads", "cPickle.load", "marshal.load", "marshal.loads", "shelve.open", "dill.load",
    "joblib.load", "torch.load", "eval", "exec", "yaml.unsafe_load", "yaml.full_load",
}


def _call_name(node: ast.Call) -> str:
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_no_unsafe_deserialisation_in_the_package():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            keywords = {k.arg: k.value for k in node.keywords}
            where = f"{_relative(path)}:{node.lineno} {name}"
            if name in UNSAFE_CALLS:
                found.append(where)
            if name.endswith("np.load") or name == "numpy.load":
                flag = keywords.get("allow_pickle")
                if isinstance(flag, ast.Constant) and flag.value is True:
                    found.append(where + "(allow_pickle=True)")
            if name == "yaml.load":
                loader = keywords.get("Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    found.append(where + " without SafeLoader")
            flag = keywords.get("safe_mode")
            if isinstance(flag, ast.Constant) and flag.value is False:
                found.append(where + "(safe_mode=False)")
    RECORDER.add("no pickle/marshal/eval/exec, np.load(allow_pickle=True), yaml.load without SafeLoader, "
                 "safe_mode=False", "imgrec/ ui/ pages/", "none", ", ".join(found) or "none", not found)
    assert not found


def test_keras_models_load_with_safe_mode_on():
    calls = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _call_name(node).endswith("load_model"):
                keywords = {k.arg: k.value for k in node.keywords}
                if "keras" in _call_name(node):
                    safe = keywords.get("safe_mode")
                    calls.append((f"{_relative(path)}:{node.lineno}", isinstance(safe, ast.Constant) and safe.value))
    ok = bool(calls) and all(safe for _, safe in calls)
    RECORDER.add("every keras load_model passes safe_mode=True (no Lambda code from files)", "imgrec/",
                 "all", ", ".join(f"{w} safe_mode={s}" for w, s in calls), ok)
    assert ok, calls


# SQL text built with f-strings must hold only constants from our own code.
ALLOWED_FORMATTED_SQL = {
    "imgrec/predlog/store.py": {"PRAGMA busy_timeout"},
    "imgrec/predlog/migrations/versions/0002_feedback_and_review_indexes.py": {"UPDATE predictions SET created_day"},
}


def test_sql_is_never_formatted_from_values():
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = _call_name(node)
            if not (name.endswith(("execute", "exec_driver_sql", "text", "executescript"))):
                continue
            first = node.args[0]
            formatted = isinstance(first, ast.JoinedStr) or (
                isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Mod, ast.Add))) or (
                isinstance(first, ast.Call) and _call_name(first).endswith("format"))
            if not formatted:
                continue
            text = ast.unparse(first)
            allowed = ALLOWED_FORMATTED_SQL.get(_relative(path), set())
            if not any(prefix in text for prefix in allowed):
                found.append(f"{_relative(path)}:{node.lineno} {text[:80]}")
    RECORDER.add("SQL text never formatted from values (only bound parameters)", "imgrec/", "none beyond 2 "
                 "constant PRAGMA/migration statements", ", ".join(found) or "none", not found)
    assert not found


def test_uploaded_names_never_reach_a_path():
    """``Upload.filename`` is for display only: no code builds a path, open() or write from it."""
    found = []
    pattern = re.compile(r"(Path\(|open\(|/ |write_bytes|write_text|os\.path\.join).*\b(filename|file_name|\.name\b)")
    for path in SOURCES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "upload" in line.lower() and pattern.search(line) and "file_name=" not in line:
                found.append(f"{_relative(path)}:{number}: {line.strip()[:80]}")
    RECORDER.add("user-given upload names never used to build a path", "imgrec/ ui/ pages/", "none",
                 ", ".join(found) or "none", not found)
    assert not found, found
