"""The Models page's batch panel under AppTest, on the session's real local Ray: launch, progress, results."""

from __future__ import annotations

import shutil

import pandas as pd

from imgrec.batch.job import past_outputs, read_results
from imgrec.registry import catalog
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings

PAGE = "pages/models.py"


def test_launch_a_batch_job_and_see_its_results(monkeypatch, ray_cluster, tmp_path, photos_dir):
    settings = make_settings(tmp_path)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    catalog.set_active_model("tiny-cnn", "1", settings)
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("cat.jpg", "owl.jpg", "parrot.jpg"):
        shutil.copy(photos_dir / name, folder / name)
    (folder / "notes.jpg").write_text("not a picture")
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert "No batch results yet" in " ".join(i.value for i in at.info)
        at.text_input(key="models.batch.source").set_value(str(folder))
        at.button(key="FormSubmitter:models.batch_form-Run batch").click().run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        assert any("4 images (1 failed, 0 already done) with tiny-cnn@1" in shown(s.value) for s in at.success)
        [output] = past_outputs(settings)
        rows = read_results(str(output))
        table = next(d.value for d in at.dataframe if "source_path" in d.value.columns)
        pd.testing.assert_frame_equal(table.reset_index(drop=True),
                                      rows[["source_path", "label", "score", "error", "detail"]])
        assert {m.label: m.value for m in at.metric}["Failed"] == "1"
        assert elements(at, "arrow_vega_lite_chart") or elements(at, "vega_lite_chart")  # the label distribution
        assert at.get("download_button")

        # A folder that is not there is a message, not a traceback.
        at.text_input(key="models.batch.source").set_value(str(tmp_path / "nowhere"))
        at.button(key="FormSubmitter:models.batch_form-Run batch").click().run()
        assert not at.exception
        assert "does not exist" in shown(at.error[0].value)
