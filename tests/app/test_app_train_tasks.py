"""The Train page for multi-label runs under AppTest: the task's losses, dataset formats and the built-in mosaics in
the form; a finished run's curves by its monitor metric (mAP) and its report with per-class thresholds."""

from __future__ import annotations

import json

import pytest

from imgrec.datasets import multilabel
from imgrec.tasks.classification import ClassificationTask
from imgrec.tasks.detection import NOT_TRAINABLE
from imgrec.tasks.multilabel import MultiLabelTask
from imgrec.training import config, runs
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.multilabel_data import COLOURS, train_tiny_multilabel, write_colour_cifar
from tests.helpers.settings import make_settings

PAGE = "pages/train.py"
MULTILABEL = MultiLabelTask.name


def test_the_form_offers_the_tasks_losses_and_formats_and_launches_a_multilabel_run(monkeypatch, tmp_path):
    settings = make_settings(tmp_path)
    launched = []
    monkeypatch.setattr(runs, "launch", lambda run, settings=None, extra_env=None: launched.append(run.id) or 1)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert at.selectbox(key="train.task").options == [ClassificationTask.title, MultiLabelTask.title]
        assert any(NOT_TRAINABLE in shown(c.value) for c in at.caption)  # detection: said, not offered
        assert at.selectbox(key="train.loss").options == ["Cross-entropy", "Focal"]
        at.selectbox(key="train.task").set_value(MULTILABEL).run()
        assert not at.exception, at.exception
        assert at.selectbox(key="train.loss").value == "asymmetric"  # the task's default replaces cross-entropy
        assert [o.split(" ")[0] for o in at.selectbox(key="train.loss").options] == ["Asymmetric", "Binary", "Focal"]
        assert at.selectbox(key="train.dataset").options[0] == multilabel.BUILTIN[multilabel.MOSAIC]
        at.selectbox(key="train.dataset").set_value("A folder path…").run()
        formats = at.selectbox(key="train.format")
        assert [o.split(" ")[0] for o in formats.options] == ["CSV/TSV", "COCO", "Pascal", "YOLO"]
        at.selectbox(key="train.dataset").set_value(multilabel.MOSAIC).run()
        at.selectbox(key="train.loss").set_value("bce").run()
        at.selectbox(key="train.backbone").set_value("small_cnn").run()
        at.button(key="train.launch").click().run()
        assert not at.exception, at.exception
    assert len(launched) == 1
    run_config = config.RunConfig.from_dict(runs.get_run(launched[0], settings).config_dict())
    assert (run_config.task, run_config.dataset, run_config.loss) == (MULTILABEL, multilabel.MOSAIC, "bce")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-multilabel")
    settings = make_settings(root, shared_data_dir=write_colour_cifar(root / "shared"))
    run = train_tiny_multilabel(settings, multilabel.MOSAIC, limit_per_class=10)
    assert run.status()["state"] == runs.COMPLETED, run.log_tail()
    return settings, run


def test_a_finished_multilabel_run_shows_map_curves_and_per_class_thresholds(monkeypatch, finished):
    settings, run = finished
    model_ref = run.status()["model_ref"]
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Best val mAP"] == f"{run.status()['best_val_accuracy']:.1%}"
        assert {"mAP", "Micro F1", "Macro F1", "Hamming loss"} <= set(metrics)
        specs = [json.loads(chart.proto.spec) for chart in elements(at, "vega_lite_chart")]
        curves = next(spec for spec in specs if "facet" in spec)
        assert curves["facet"]["column"]["sort"] == ["loss", "map"]  # the task's monitor, val_map
        assert all(row.get("val_map") is not None for row in run.metrics())  # what the chart draws
        per_class = next(d.value for d in at.dataframe if "threshold" in d.value.columns)
        assert list(per_class["class"]) == sorted(COLOURS)
        history = next(d.value for d in at.dataframe if "test score" in d.value.columns)
        assert list(history["test score"]) == [pytest.approx(run.status()["metrics"]["mAP"])]
        assert at.multiselect(key=f"train.multilabel.{model_ref}.pr").value == sorted(COLOURS)[:5]
