"""Issue 19, item 9: ``?model=`` serves only allowed models, loads each once off the request path, keeps a bounded LRU."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.probe import ApiServer, copy_models, image_bytes, metric_samples, recorder, shared_root
from tests.helpers.settings import make_settings

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()


@pytest.fixture(scope="module")
def server(tiny_settings):
    from imgrec.registry import catalog

    root = shared_root()
    models = copy_models(tiny_settings, root)
    settings = make_settings(root, models_dir=models)
    for version, seed in (("2", 1), ("3", 2), ("4", 3)):
        catalog.save_model(build_tiny_model(seed=seed), tiny_card(version=version), settings)
    catalog.set_active_model("tiny-cnn", "1", settings)
    server = ApiServer(root, {"IMGREC_MODELS_DIR": str(models), "IMGREC_DATA_DIR": str(root / "data"),
                              "IMGREC_DEFAULT_MODEL": "tiny-cnn", "IMGREC_API_MODELS": "tiny-cnn@1, tiny-cnn@2, tiny-cnn@4",
                              "IMGREC_API_RESIDENT_MODELS": "1", "IMGREC_API_MODEL_LOAD_WAIT_S": "0"},
                       name="model-loads")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def predict(http, model, seed=0):
    return http.post("/predict", params={"model": model}, files={"files": ("x.png", image_bytes(seed))})


def test_model_query_is_allow_listed_loaded_once_in_the_background_and_bounded(server):
    with server.client() as http:
        refused = predict(http, "tiny-cnn@3")
        statuses, lock = [], threading.Lock()

        def ask(seed):
            response = predict(http, "tiny-cnn@2", seed)
            with lock:
                statuses.append((response.status_code, response.headers.get("retry-after")))

        started = time.monotonic()
        threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        burst_s = time.monotonic() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (later := predict(http, "tiny-cnn@2")).status_code != 200:
            time.sleep(0.2)
        fourth = predict(http, "tiny-cnn@4")
        while time.monotonic() < deadline and (fourth := predict(http, "tiny-cnn@4")).status_code != 200:
            time.sleep(0.2)
        models = http.get("/health").json()["models"]
        metrics = http.get("/metrics").text
    loads = sum(value for labels, value in metric_samples(metrics, "imgrec_model_query_loads_total")
                if labels.get("model") == "tiny-cnn@2")
    waited = {status for status, _ in statuses}
    ok = (refused.status_code == 404 and waited <= {200, 503} and all(retry for status, retry in statuses if status == 503)
          and later.status_code == 200 and loads == 1 and fourth.status_code == 200
          and models["resident"] == ["tiny-cnn@4"])
    RECORDER.add("?model= for a model outside IMGREC_API_MODELS, a burst for one not loaded, LRU of 1", "api",
                 "404 outside the allow-list; burst answered at once (503 model_loading + Retry-After while it loads), "
                 "one load for the burst, then 200; resident ['tiny-cnn@4'] after @2 then @4",
                 f"outside: {refused.status_code}; burst of 8: {sorted(s for s, _ in statuses)} in {burst_s:.2f} s, "
                 f"{loads} load(s), then {later.status_code}; resident {models['resident']}", ok,
                 note="before the fix: tiny-cnn@3 (not allowed) was loaded and answered 200, and every request "
                      "for a model not loaded waited for its load on the request path")
    assert ok, (refused.text, statuses, loads, later.text, models)
