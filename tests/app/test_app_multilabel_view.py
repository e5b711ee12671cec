"""The multi-label views in a real Streamlit script run (AppTest): labels found or "no label found", every score
with its threshold, and the evaluation report's figures, per-class table, PR curves and co-occurrence."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.helpers.apptest import elements, shown

TIMEOUT = 120  # a shared, busy machine: the first run imports scikit-learn and Altair


def _result_script(scores):
    import numpy as np

    from imgrec.registry.card import ModelCard
    from imgrec.tasks.base import DecodeOptions
    from imgrec.tasks.multilabel import MultiLabelTask
    from ui.multilabel_view import pick_label, show_result

    card = ModelCard(name="toy", version="1", backbone="small_cnn", input_size=(8, 8), preprocessing="unit",
                     class_names=("person", "bicycle", "car"), dataset="generated", task=MultiLabelTask.name,
                     decoding={"thresholds": [0.5, 0.3, 0.8]})
    [result] = MultiLabelTask().decode(np.array([scores], np.float32), card, DecodeOptions(), 1.0)
    show_result(result)
    pick_label(result, "explain")


def _report_script():
    import numpy as np

    from imgrec.tasks.multilabel import MultiLabelTask
    from ui.multilabel_view import show_report

    rng = np.random.default_rng(0)
    y = (rng.random((80, 3)) < 0.4).astype(int)
    scores = np.clip(y * 0.5 + rng.random((80, 3)) * 0.5, 0, 1)
    show_report(MultiLabelTask().evaluate(y, scores, ("person", "bicycle", "car"), "test", calibration=(y, scores)),
                "models")


def test_the_labels_found_are_named_and_every_score_is_charted():
    at = AppTest.from_function(_result_script, args=([0.6, 0.35, 0.79],), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert shown(at.success[0].value) == "Labels found: person 60.0%, bicycle 35.0%"
    assert len(elements(at, "vega_lite_chart")) == 1
    assert at.selectbox[0].options == ["person (found)", "bicycle (found)", "car"]


def test_no_label_over_its_threshold_says_no_label_found():
    at = AppTest.from_function(_result_script, args=([0.1, 0.2, 0.3],), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.success
    assert shown(at.warning[0].value).startswith("No label found")


def test_the_report_shows_map_f1s_per_class_thresholds_pr_curves_and_cooccurrence():
    at = AppTest.from_function(_report_script, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["mAP", "Micro F1", "Macro F1", "Subset accuracy", "Hamming loss"]
    table = at.dataframe[0].value
    assert list(table.columns) == ["class", "threshold", "precision", "recall", "F1", "AP", "images"]
    assert len(elements(at, "vega_lite_chart")) == 2  # PR curves and co-occurrence
    at.toggle[0].set_value(True).run()
    assert not at.exception
