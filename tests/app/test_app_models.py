"""The Models page under AppTest: cards, the parity table, running exports, active model, compare, delete."""

from __future__ import annotations

import json
import shutil

import pytest

from imgrec.registry import catalog, exports
from tests.helpers.app_seeds import SEEDED_FORMATS, seed_models
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.export import requires_export_runtimes
from tests.helpers.settings import make_settings

pytestmark = requires_export_runtimes

PAGE = "pages/models.py"


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory):
    return seed_models(tmp_path_factory.mktemp("models-template"))


@pytest.fixture
def seeded(seeded_template, tmp_path):
    """A private copy of the seeded models, so a test may delete or activate freely."""
    settings = make_settings(tmp_path)
    shutil.copytree(seeded_template.models_dir, settings.models_dir)
    shutil.copytree(seeded_template.data_dir, settings.data_dir)
    return settings


def _frames(at):
    return [d.value for d in at.dataframe]


def test_no_models_says_so(monkeypatch, settings):
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception
        assert "No models are registered yet" in at.info[0].value
        assert at.button(key="models.init").label.startswith("Register")


def test_cards_and_parity_table(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert "tiny-cnn@1" in shown(at.success[0].value)  # the active model
        overview = next(f for f in _frames(at) if "Backbone" in f.columns)
        # A leaderboard: version 2 (test accuracy 83 %) above version 1 (validation accuracy 80 %).
        assert list(overview["Version"]) == ["2", "1"] and list(overview["Active"]) == [False, True]
        assert list(overview["Score"]) == [0.83, 0.8] and list(overview["Metric"]) == ["test.accuracy", "val_accuracy"]
        assert list(overview["Exports ok"])[0] == "none"
        assert at.selectbox(key="models.ref").value == "tiny-cnn@1"
        assert {m.label: m.value for m in at.metric}["val_accuracy"] == "80.0%"
        parity = next(f for f in _frames(at) if "Top-1 agreement" in f.columns)
        assert list(parity["Format"]) == [exports.FORMAT_INFO[f][0] for f in exports.FORMATS]
        exported = parity[parity["Status"] != "— not exported"]
        assert len(exported) == len(SEEDED_FORMATS)
        assert set(exported["Status"]) <= {"✓ ok", "⚠ diverging", "✗ failed"}
        assert (exported["Size (MB)"].astype(float) > 0).all() and (exported["Latency (ms)"].astype(float) > 0).all()
        lossless = parity[parity["Format"].isin(["TFLite float32", "ONNX (tf2onnx)"])]
        assert (lossless["Top-1 agreement"] == "100.0%").all()
        assert (parity.loc[parity["Status"] == "— not exported", "Top-1 agreement"] == "").all()
        notes = " ".join(c.value for c in at.caption)
        assert "Held-out set:" in notes and "generated images" in notes
        # Every file is offered for download.
        labels = [b.label for b in elements(at, "download_button")]
        assert any("model.keras" in label for label in labels) and any("ONNX" in label for label in labels)
        assert len(labels) == 3 + len(SEEDED_FORMATS)


def test_set_the_active_model(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        assert "no exports yet" in " ".join(i.value for i in at.info)
        at.button(key="models.activate").click().run()
        assert not at.exception, at.exception
        assert catalog.active_model(seeded) == ("tiny-cnn", "2")
        assert any("tiny-cnn@2 is now the active model" in shown(s.value) for s in at.success)
        assert at.selectbox(key="models.ref").options[0] == "tiny-cnn@2"


def test_a_change_that_fails_is_a_message_and_changes_nothing(monkeypatch, seeded, caplog):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()

        def disk_full(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(catalog, "set_active_model", disk_full)  # a fault injected, not the page
        at.button(key="models.activate").click().run()
        assert not at.exception, at.exception
        assert "went wrong on our side (OSError)" in " ".join(e.value for e in at.error)
        assert "No space left on device" in caplog.text  # the details are in the server log, as it says
        assert catalog.active_model(seeded) == ("tiny-cnn", "1")
        assert not any("now the active model" in s.value for s in at.success)


def test_run_exports_from_the_page(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        at.multiselect(key="models.formats").set_value(["tflite-fp32", "onnx"])
        next(b for b in at.button if b.label == "Run exports").click().run()
        assert not at.exception, at.exception
        report = exports.read_parity("tiny-cnn", "2", seeded)
        assert set(report["exports"]) == {"tflite-fp32", "onnx"}
        assert any("Exports of tiny-cnn@2 finished" in shown(s.value) for s in at.success)
        parity = next(f for f in _frames(at) if "Top-1 agreement" in f.columns)
        assert (parity["Status"] == "— not exported").sum() == len(exports.FORMATS) - 2
        assert list(parity.loc[parity["Status"] != "— not exported", "Format"]) == ["TFLite float32", "ONNX (tf2onnx)"]


def test_compare_two_versions(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert at.selectbox(key="models.compare.a.tiny-cnn@1").value == "tiny-cnn@1"
        assert at.selectbox(key="models.compare.b.tiny-cnn@1").value == "tiny-cnn@2"
        table = next(f for f in _frames(at) if "Δ (B − A)" in f.columns).set_index("")
        assert table.loc["val_accuracy", "Δ (B − A)"] == "+0.05"
        assert table.loc["test.accuracy", "tiny-cnn@1"] == "—"
        # Version A follows the version selected above the tabs.
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        assert at.selectbox(key="models.compare.a.tiny-cnn@2").value == "tiny-cnn@2"
        assert at.selectbox(key="models.compare.b.tiny-cnn@2").value == "tiny-cnn@1"


def test_one_fast_export_is_preselected_and_each_version_has_usage_snippets(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert at.multiselect(key="models.formats").value == ["onnx"]
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        code = [c.value for c in at.code]
        assert any(c.startswith("curl -F files=@photo.jpg") and "model=tiny-cnn@2" in c for c in code)
        assert any("import requests" in c and "model=tiny-cnn@2" in c for c in code)
        assert "python -m imgrec predict photo.jpg --model tiny-cnn --version 2 --top-k 3" in code


def test_usage_snippets_call_the_real_api(tiny_settings, photos_dir, tmp_path):
    """The curl snippet, run as written against the API serving that version, answers with its result."""
    import subprocess

    from tests.helpers.probe import ApiServer
    from tests.helpers.settings import settings_env
    from ui.models_view import usage_snippets

    card = catalog.load_card("tiny-cnn", "1", tiny_settings)
    shutil.copy(photos_dir / "cat.jpg", tmp_path / "photo.jpg")
    env = {**settings_env(tiny_settings), "IMGREC_DATA_DIR": str(tmp_path / "data"), "IMGREC_DEFAULT_MODEL": "tiny-cnn"}
    api = ApiServer(tmp_path, env).start()
    try:
        command = usage_snippets(card, api.url)["curl"]
        answer = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    finally:
        api.stop()
    assert answer.returncode == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["model"]["name"] == "tiny-cnn" and body["filename"] == "photo.jpg" and body["predictions"]


def test_delete_needs_confirmation_and_never_the_active_one(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert "cannot be deleted" in " ".join(i.value for i in at.info)
        assert not [b for b in at.button if b.key == "models.delete"]
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        assert at.button(key="models.delete").disabled
        at.checkbox(key="models.delete.confirm.tiny-cnn@2").check().run()
        at.button(key="models.delete").click().run()
        assert not at.exception, at.exception
        assert catalog.versions("tiny-cnn", seeded) == ["1"]
        assert any("Deleted tiny-cnn@2" in shown(s.value) for s in at.success)
        assert at.selectbox(key="models.ref").options == ["tiny-cnn@1"]


def test_a_corrupt_parity_report_is_an_error_message(monkeypatch, seeded):
    path = catalog.model_dir("tiny-cnn", "1", seeded) / "exports" / "parity.json"
    path.write_text("{not json")
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert any("not valid JSON" in e.value for e in at.error)


def test_serving_backend_choice(monkeypatch, seeded):

    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        choice = at.selectbox(key="models.serving.tiny-cnn@1")
        assert choice.value == "keras" and "ONNX (tf2onnx)" in choice.options
        choice.set_value("onnx").run()
        at.button(key="models.serving.apply").click().run()
        assert not at.exception, at.exception
        assert exports.serving_backend("tiny-cnn", "1", seeded) == "onnx"
        json.loads((catalog.model_dir("tiny-cnn", "1", seeded) / "exports" / "serving.json").read_text())


def test_failed_and_diverging_exports_are_shown_with_their_reason(monkeypatch, seeded):
    path = catalog.model_dir("tiny-cnn", "1", seeded) / "exports" / "parity.json"
    report = json.loads(path.read_text())
    report["exports"]["onnx"].update(status="failed", reason="export failed: ValueError: op Foo is not supported")
    report["exports"]["tflite-fp32"].update(status="diverging", reason="top-1 agrees with Keras on 40.0%")
    path.write_text(json.dumps(report))
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        parity = next(f for f in _frames(at) if "Top-1 agreement" in f.columns).set_index("Format")
        assert parity.loc["ONNX (tf2onnx)", "Status"] == "✗ failed"
        assert parity.loc["TFLite float32", "Status"] == "⚠ diverging"
        assert any("op Foo is not supported" in e.value for e in at.error)
        assert any("40.0%" in w.value for w in at.warning)
        # Neither can be chosen to serve predictions.
        options = at.selectbox(key="models.serving.tiny-cnn@1").options
        assert "ONNX (tf2onnx)" not in options and "TFLite float32" not in options


def test_a_shipped_model_shows_its_evaluation_with_real_misclassified_images(monkeypatch, tmp_path):
    from imgrec.core.settings import PROJECT_ROOT
    from tests.helpers.settings import shared_dir

    if not (shared_dir() / "data" / "fashion-mnist").is_dir():
        pytest.skip("Fashion-MNIST not found (expected ../shared/data/fashion-mnist)")
    settings = make_settings(tmp_path)
    shipped = PROJECT_ROOT / "models" / "fashion-mnist-cnn" / "1"
    shutil.copytree(shipped, catalog.model_dir("fashion-mnist-cnn", "1", settings))
    report = json.loads((shipped / "report.json").read_text())
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert {m.label: m.value for m in at.metric}["Accuracy"] == f"{report['accuracy']:.2%}"
        assert len(elements(at, "vega_lite_chart")) >= 2  # confusion heatmap and reliability diagram
        assert not [i for i in elements(at, "image") if i.proto.imgs[0].caption.startswith("#")]  # only on request
        at.toggle(key="models.gallery.fashion-mnist-cnn@1").set_value(True).run()
        worst = max(report["errors"], key=lambda cell: len(report["errors"][cell]))
        at.selectbox(key="models.cell.fashion-mnist-cnn@1.None").set_value(worst).run()
        assert not at.exception, at.exception
        captions = [image.proto.imgs[0].caption for image in elements(at, "image")]
        expected = [f"#{index}" for index in report["errors"][worst][:24]]
        assert sorted(c for c in captions if c.startswith("#")) == sorted(expected)  # laid out in 8 columns


def test_a_model_without_a_report_says_where_reports_come_from(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page=PAGE) as at:
        at.run()
        assert any("has no evaluation report" in i.value for i in at.info)
