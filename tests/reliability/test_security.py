"""Security settings, code rules and hostile data, checked as tests.

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

# database_url: a fresh SQLite file, or a fresh PostgreSQL database when PostgreSQL is installed.
pytest_plugins = ["tests.helpers.store_fixtures"]

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


# What an attacker, or an unlucky user, may type into a label, a model name, a note or a filter: quotes that end
# a literal and statements after them, comments, every DBAPI placeholder style, str.format and %-format fields,
# LIKE wildcards, backslashes and non-ASCII text (no NUL: PostgreSQL text cannot hold it).
HOSTILE_VALUES = (
    "'; DROP TABLE predictions; --",
    "x' OR '1'='1",
    'say "hi"; DELETE FROM uploads WHERE "1"="1"',
    "Robert'); DROP TABLE feedback;--",
    "100% {0} {label} %s %(id)s :name ? $1",
    "%",
    "_",
    "back\\slash \\' \\\"",
    "/* an unclosed comment",
    "ünïcödé ☀ 猫 🐈 \u202ertl",
)
# Long enough not to occur in SQL text by chance ("%" and "_" do: placeholders, column names).
DISTINCTIVE = tuple(value for value in HOSTILE_VALUES if len(value) > 3)
DECOYS = (("cat", "tiny-cnn", "1"), ("dog", "tiny-cnn", "2"), ("cat", "other-model", ""))


def _strings(value) -> list[str]:
    """Every string inside a DBAPI parameter set (dict, tuple or list, nested for executemany)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return []


def test_hostile_values_through_the_prediction_log_are_data_never_sql(database_url):
    """Every public way into the prediction log, fed hostile text on a real database (SQLite, and PostgreSQL
    when installed): each value comes back exactly as given, filters on it find exactly its row, the tables and
    the other rows are intact, and no statement the driver receives holds the text (it travels as a parameter)."""
    import sqlalchemy as sa

    backend = sa.make_url(database_url).get_backend_name()
    problems: list[str] = []
    sent: list[tuple[str, list[str]]] = []  # (statement, the strings among its parameters), as the driver got them
    try:
        _feed_and_read_back_hostile_values(database_url, sent, problems)
    except Exception as exc:  # recorded for RELIABILITY.md, then the test fails with it
        problems.append(f"raised {type(exc).__name__}: {exc}")
        raise
    finally:
        RECORDER.add(f"hostile text through every prediction-log entry point ({backend})",
                     f"imgrec.predlog ({backend})",
                     f"{len(HOSTILE_VALUES)} values logged, given as feedback, run statuses, filters and exports: "
                     "each back exactly, exactly its row found, tables and other rows intact, never in the SQL text",
                     "; ".join(problems) or f"as expected ({len(sent)} statements, values bound as parameters)",
                     not problems)
    assert not problems, problems


def _feed_and_read_back_hostile_values(database_url: str, sent: list, problems: list[str]) -> None:
    import io
    import json
    from datetime import timedelta

    import pandas as pd
    import sqlalchemy as sa

    from imgrec.predlog import stats
    from imgrec.predlog.store import Store
    from imgrec.predlog.tabular import export_predictions
    from tests.helpers.store_fixtures import BASE_TIME, make_record

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def source_of(index: int) -> str:
        return ("app", "api", "cli")[index % 3]

    run_columns = ("name", "state", "dataset", "backbone", "model_ref", "message", "error")
    export_columns = ("model_name", "model_version", "top1_label", "session_id", "user_agent", "corrected_label",
                      "note")
    with Store(database_url) as store:
        sa.event.listen(store.engine, "before_cursor_execute",
                        lambda _c, _cur, statement, parameters, *_: sent.append((statement, _strings(parameters))))
        tables = set(sa.inspect(store.engine).get_table_names())

        # In: predictions (every text field), feedback, training-run statuses (insert, then update).
        decoy_ids = [store.log_prediction(make_record(f"decoy-{index}", label=label, model_name=name,
                                                      model_version=version, created_at=BASE_TIME))
                     for index, (label, name, version) in enumerate(DECOYS)]
        ids = {}
        for index, value in enumerate(HOSTILE_VALUES):
            ids[value] = store.log_prediction(make_record(
                f"hostile-{index}", label=value, model_name=value, model_version=value, source=source_of(index),
                session_id=value, user_agent=value, metadata={value: value, "nested": [value]}, format=value[:16],
                created_at=BASE_TIME + timedelta(minutes=index + 1),
            ))
            store.add_feedback(ids[value], corrected_label=value, wrong=True, note=value)
            run = {"run_id": f"run-{index}-{value}", **dict.fromkeys(run_columns, value)}
            store.record_run_status(run)
            store.record_run_status({**run, "message": value[::-1]})

        # Out: each value exactly as given, through every read and every filter.
        for index, value in enumerate(HOSTILE_VALUES):
            prediction_id = ids[value]
            logged = store.get_prediction(prediction_id)
            as_given = {"model_name": value, "model_version": value, "top1_label": value, "session_id": value,
                        "user_agent": value, "format": value[:16], "metadata": {value: value, "nested": [value]}}
            check({key: logged[key] for key in as_given} == as_given, f"{value!r}: get_prediction {logged}")
            check(logged["top_k"][0]["label"] == value, f"{value!r}: top_k {logged['top_k']}")
            check([(f["corrected_label"], f["note"]) for f in logged["feedback"]] == [(value, value)],
                  f"{value!r}: feedback {logged['feedback']}")

            for name, filters in {
                "labels": stats.Filters(labels=[value]),
                "one label as text": stats.Filters(labels=value),
                "model_names": stats.Filters(model_names=[value]),
                "model_versions": stats.Filters(model_versions=[value]),
                "models": stats.Filters(models=[(value, value)]),
                "labels and sources": stats.Filters(labels=[value, "no such label"], sources=[source_of(index)]),
            }.items():
                where = f"{value!r} as {name}"
                check(stats.summary(store, filters).predictions == 1, f"{where}: summary")
                exported = stats.export_rows(store, filters)["prediction_id"].tolist()
                check(exported == [prediction_id], f"{where}: export {exported}")
                check(stats.by_label(store, filters)["label"].tolist() == [value], f"{where}: by_label")
                models = stats.by_model(store, filters)
                pairs = list(zip(models["model_name"], models["model_version"]))
                check(pairs == [(value, value)], f"{where}: by_model {pairs}")
                check(stats.by_day(store, filters)["predictions"].sum() == 1, f"{where}: by_day")
                check(stats.latency_over_time(store, filters)["predictions"].sum() == 1, f"{where}: latency_over_time")
                check(stats.confidence_histogram(store, filters)["predictions"].sum() == 1, f"{where}: histogram")
                window = (BASE_TIME, BASE_TIME + timedelta(days=1))
                check(stats.drift(store, window, window, filters=filters).predictions_a == 1, f"{where}: drift")
            check(stats.summary(store, stats.Filters(sources=[value])).predictions == 0, f"{value!r} as a source")

            queue = stats.frame_to_records(stats.review_queue(store, stats.Filters(labels=[value]), max_confidence=1.0))
            check([(r["prediction_id"], r["top1_label"], r["flagged"], r["corrected_label"], r["note"]) for r in queue]
                  == [(prediction_id, value, True, value, value)], f"{value!r}: review queue {queue}")

            for fmt in ("csv", "parquet"):
                data = io.BytesIO(export_predictions(store, stats.Filters(model_names=[value]), fmt))
                frame = pd.read_csv(data, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_parquet(data)
                rows = frame.to_dict("records")
                check(len(rows) == 1
                      and {key: rows[0][key] for key in export_columns} == dict.fromkeys(export_columns, value)
                      and json.loads(rows[0]["metadata"]) == {value: value, "nested": [value]},
                      f"{value!r}: {fmt} export {rows}")

        runs = {row["run_id"]: row for row in store.run_statuses()}
        check(len(runs) == len(HOSTILE_VALUES), f"run statuses: {sorted(runs)}")
        for index, value in enumerate(HOSTILE_VALUES):
            row = runs.get(f"run-{index}-{value}", {})
            expected = {**dict.fromkeys(run_columns, value), "message": value[::-1]}
            check({key: row.get(key) for key in run_columns} == expected, f"{value!r}: run status {row}")

        # The tables and the ordinary rows are intact.
        check(set(sa.inspect(store.engine).get_table_names()) == tables, "tables changed")
        every = stats.export_rows(store)
        every_id = every["prediction_id"].tolist()
        check(every_id == [*decoy_ids, *ids.values()], f"rows: {every_id}")
        check(list(zip(every["top1_label"], every["model_name"], every["model_version"]))
              == [*DECOYS, *((value, value, value) for value in HOSTILE_VALUES)], "row contents changed")
        check(stats.summary(store, stats.Filters(labels=["cat"])).predictions == 2, "decoys no longer found")

    # What the driver received: the text only ever as a parameter, never inside a statement.
    check(len(sent) > 100, f"only {len(sent)} statements captured")
    in_statements = sorted({value for statement, _ in sent for value in DISTINCTIVE if value in statement})
    check(not in_statements, f"formatted into SQL: {in_statements}")
    bound = {text for _, strings in sent for text in strings}
    check(set(DISTINCTIVE) <= bound, f"never sent as a parameter: {sorted(set(DISTINCTIVE) - bound)}")


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
