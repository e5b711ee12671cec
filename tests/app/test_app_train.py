"""The Train page under AppTest: the form launches a run; a finished run shows curves and its evaluation."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from imgrec.training import config, runs, trainer
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings
from tests.helpers.training import tiny_config

PAGE = "pages/train.py"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Settings with one completed tiny run (and its registered model) plus its dataset folder."""
    root = tmp_path_factory.mktemp("train-page")
    settings = make_settings(root)
    folder = make_image_folder(root / "ds", per_class=12)
    run = trainer.train(tiny_config(folder, name="page-model", epochs=2), settings)
    assert run.state == runs.COMPLETED, run.log_tail()
    return settings, folder, run


def test_empty_page_offers_the_form_and_launches_a_run(monkeypatch, tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    launched = []
    monkeypatch.setattr(runs, "launch", lambda run, settings=None, extra_env=None: launched.append(run.id) or 1)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert at.title[0].value == "Train"
        assert any("No runs yet" in i.value for i in at.info)
        at.selectbox(key="train.dataset").set_value("A folder path…").run()
        at.text_input(key="train.folder").input(str(folder)).run()
        assert not at.exception, at.exception
        assert any("Dataset check: ready" in e.label for e in at.expander)
        at.selectbox(key="train.backbone").set_value("small_cnn").run()
        at.toggle(key="train.aug.flip").set_value(True).run()
        at.toggle(key="train.aug.cutout").set_value(True).run()
        at.toggle(key="train.aug.preview").set_value(True).run()
        assert len(elements(at, "image")) >= 6  # the augmentation preview grid
        at.text_input(key="train.name").input("from-page").run()
        at.button(key="train.launch").click().run()
        assert not at.exception, at.exception
    assert len(launched) == 1
    run = runs.get_run(launched[0], settings)
    run_config = config.RunConfig.from_dict(run.config_dict())
    assert (run_config.name, run_config.backbone, run_config.dataset) == ("from-page", "small_cnn", str(folder))
    assert run_config.augment.flip and run_config.augment.cutout == 0.25 and run_config.weights is None
    assert run.raw_status()["state"] == runs.QUEUED


def test_bad_folder_shows_the_validation_report(monkeypatch, tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    (folder / "empty").mkdir()
    (folder / "red" / "notes.txt").write_text("hello")
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.dataset").set_value("A folder path…").run()
        at.text_input(key="train.folder").input(str(folder)).run()
        assert not at.exception, at.exception
        assert any("no usable images: empty" in shown(e.value) for e in at.error)
        assert any("not images we can read" in w.value for w in at.warning)


@pytest.mark.slow
def test_finished_run_shows_curves_report_and_makes_the_model_active(monkeypatch, finished):
    settings, _, run = finished
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        assert any(run.id in m.value and "completed" in m.value for m in at.markdown)
        charts = elements(at, "vega_lite_chart")
        assert len(charts) >= 3  # curves, confusion heatmap, reliability diagram
        labels = [m.label for m in at.metric]
        assert {"Accuracy", "Top-3", "Macro F1", "ECE", "Best val accuracy"} <= set(labels)
        assert at.button(key="train.activate.page-model@1")
        at.button(key="train.activate.page-model@1").click().run()
        assert not at.exception, at.exception
        assert catalog.active_model(settings) == ("page-model", "1")
        assert any("This is the active model" in s.value for s in at.success)


@pytest.mark.slow
def test_resumable_run_offers_resume(monkeypatch, finished, tmp_path):
    settings, folder, _ = finished
    run = runs.create_run(tiny_config(folder, name="dead"), settings)
    run.update_status(state=runs.RUNNING, pid=2**22 + 12345)  # a PID that is not running: reads as interrupted
    resumed = []
    monkeypatch.setattr(runs, "launch", lambda r, settings=None, extra_env=None: resumed.append(r.id) or 1)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.pick_run").set_value(run.id).run()
        assert not at.exception, at.exception
        assert any("interrupted" in m.value for m in at.markdown)
        at.button(key=f"train.resume.{run.id}").click().run()
        assert not at.exception, at.exception
    assert resumed == [run.id] and run.raw_status()["state"] == runs.QUEUED


@pytest.mark.slow
def test_cancel_button_stops_a_live_run(monkeypatch, tmp_path):
    """A queued run whose real worker waits for the training slot (held here): Cancel flags it, the page
    stops offering Cancel, and the worker ends the run as cancelled, which the page then shows."""
    import fcntl

    from tests.helpers.training import wait_until

    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    runs.runs_dir(settings).mkdir(parents=True)
    with open(runs.runs_dir(settings) / runs.SLOT_LOCK, "w") as slot:
        fcntl.flock(slot, fcntl.LOCK_EX)  # as if another run were training
        run = runs.submit(tiny_config(folder, name="to-cancel"), settings)
        cancel_key = f"train.cancel.{run.id}"
        with app_with_settings(monkeypatch, settings, page=PAGE) as at:
            at.run()
            assert not at.exception, at.exception
            assert any(run.id in m.value and "queued" in m.value for m in at.markdown)
            at.button(key=cancel_key).click().run()
            assert not at.exception, at.exception
            assert run.cancel_requested()
            assert cancel_key not in [b.key for b in at.button]  # no second Cancel for the same run
            header = next(m.value for m in at.markdown if run.id in m.value)
            assert header.endswith(("cancelling…", "cancelled")), header  # the worker may already have stopped
            if header.endswith("cancelling…"):
                assert any(i.value.startswith("Cancelling…") for i in at.info)
            wait_until(lambda: run.state == runs.CANCELLED, 60, "the worker to stop", run)
            at.run()
            assert not at.exception, at.exception
            assert any(run.id in m.value and m.value.endswith("cancelled") for m in at.markdown)
            assert at.button(key=f"train.resume.{run.id}")
    assert not run.metrics() and "started" not in run.status()  # it never trained


def test_the_model_name_follows_the_dataset_until_the_user_types_one(monkeypatch, tmp_path):
    from imgrec.datasets.loading import datasets_dir

    settings = make_settings(tmp_path)
    for name in ("flowers", "birds"):
        make_image_folder(datasets_dir(settings) / "folders" / name, per_class=4)
    folders = {name: str(datasets_dir(settings) / "folders" / name) for name in ("flowers", "birds")}
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.dataset").set_value(folders["flowers"]).run()
        assert at.text_input(key="train.name").value == "flowers"
        at.selectbox(key="train.dataset").set_value(folders["birds"]).run()
        assert at.text_input(key="train.name").value == "birds"
        at.text_input(key="train.name").input("my-birds").run()
        at.selectbox(key="train.dataset").set_value(folders["flowers"]).run()
        assert not at.exception, at.exception
        assert at.text_input(key="train.name").value == "my-birds"


def test_a_preset_fills_the_form_and_the_estimate_says_when_it_has_nothing_to_go_by(monkeypatch, tmp_path):
    from ui.train_view import PRESETS

    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=4)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.dataset").set_value("A folder path…").run()
        at.text_input(key="train.folder").input(str(folder)).run()
        at.button(key="train.preset.Quick demo").click().run()
        assert not at.exception, at.exception
        quick = PRESETS["Quick demo"]
        assert at.selectbox(key="train.backbone").value == quick["backbone"]
        assert at.select_slider(key="train.size").value == quick["image_size"]
        assert (at.number_input(key="train.epochs").value, at.number_input(key="train.limit").value) == (
            quick["epochs"], quick["limit_per_class"])
        assert any("No time estimate yet" in c.value for c in at.caption)


@pytest.mark.slow
def test_run_again_fills_the_form_and_epoch_time_is_per_epoch(monkeypatch, finished):
    settings, folder, run = finished
    last_epoch = run.metrics()[-1]["seconds"]
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.pick_run").set_value(run.id).run()
        from ui.train_view import format_seconds

        epoch_time = next(m for m in at.metric if m.label == "Epoch time")
        assert epoch_time.value == format_seconds(last_epoch)
        at.button(key=f"train.again.{run.id}").click().run()
        assert not at.exception, at.exception
        assert at.selectbox(key="train.dataset").value == "A folder path…"
        assert at.text_input(key="train.folder").value == str(folder)
        assert at.text_input(key="train.name").value == "page-model"
        assert at.selectbox(key="train.backbone").value == "small_cnn"
        assert at.number_input(key="train.epochs").value == 2


@pytest.mark.slow
def test_a_stopped_run_offers_to_save_its_best_epoch(monkeypatch, finished):
    settings, folder, _ = finished
    run = runs.create_run(tiny_config(folder, name="stopped", epochs=5), settings)
    run.save_training_state({"epoch": 2})
    run.update_status(state=runs.RUNNING, pid=2**22 + 12346)  # a dead worker: reads as interrupted
    launched = []
    monkeypatch.setattr(runs, "launch", lambda r, settings=None, extra_env=None: launched.append(r.id) or 1)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.selectbox(key="train.pick_run").set_value(run.id).run()
        at.button(key=f"train.finish.{run.id}").click().run()
        assert not at.exception, at.exception
    assert launched == [run.id]
    assert config.RunConfig.from_dict(run.config_dict()).epochs == 2 and run.raw_status()["total_epochs"] == 2
