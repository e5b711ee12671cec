"""The Predict page shows the task's verdict: with the shipped CIFAR-10 model a cat photo is a confident cat, and
Grace Hopper (a person, no CIFAR-10 class) gets the "Outside this model's classes?" warning with its reason."""

from __future__ import annotations

import re

import pytest

from imgrec.core.settings import PROJECT_ROOT
from imgrec.registry import catalog
from tests.helpers.apptest import app_with_settings, shown
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow
OUT_OF_DISTRIBUTION = "Outside this model's classes?"


@pytest.fixture
def cifar10_page(monkeypatch, photos_dir, tmp_path):
    settings = make_settings(tmp_path, models_dir=PROJECT_ROOT / "models", samples_dir=photos_dir)
    # The shipped models folder must not get the stock detectors registered into it by this test.
    monkeypatch.setenv("IMGREC_SHARED_DETECTION_DIR", str(tmp_path / "no-detectors"))
    catalog.set_active_model("cifar10-mobilenetv2", "1", settings)
    return settings


def badges(at) -> list[str]:
    """The verdict kinds shown, as their badge titles (``:colour-badge[:icon: Title]``)."""
    return [m.group(1) for m in (re.search(r"-badge\[(?::[\w/]+: )?(.*)\]$", md.value) for md in at.markdown) if m]


def verdict_messages(at) -> list[str]:
    return [shown(m.value) for m in (*at.success, *at.warning, *at.info)]


def test_a_person_gets_the_out_of_distribution_warning_and_a_cat_does_not(monkeypatch, cifar10_page):
    with app_with_settings(monkeypatch, cifar10_page, timeout=300) as at:
        at.run()
        assert at.selectbox(key="predict.model").value == "cifar10-mobilenetv2@1"
        at.multiselect(key="predict.samples").set_value(["grace_hopper.jpg"]).run()
        assert not at.exception, at.exception
        [warning] = [m for m in verdict_messages(at) if OUT_OF_DISTRIBUTION in m]
        assert "entropy" in warning  # the one-line reason
        assert not at.success
        assert badges(at) == ["Uncertain"]
        at.multiselect(key="predict.samples").set_value(["cat.jpg"]).run()
        assert not at.exception, at.exception
        assert not any(OUT_OF_DISTRIBUTION in m for m in verdict_messages(at))
        assert badges(at) == ["Confident"]
        [success] = [shown(m.value) for m in at.success]
        assert success.startswith("cat ") and "(calibrated)" in success
        # The page's threshold is weighed against the calibrated score by the task, not by the page.
        at.slider(key="predict.threshold").set_value(1.0).run()
        assert badges(at) == ["Uncertain"] and not at.success
        assert [shown(w.value) for w in at.warning][0].startswith("Uncertain: cat ")
        at.slider(key="predict.threshold").set_value(0.0).run()
        assert badges(at) == ["Confident"] and at.success
