"""A real Prometheus (Debian's ``prometheus`` package) scraping a real API process, with the shipped alert rules,
and every query of the Grafana dashboard answered with data after some traffic.

Grafana itself is in no registry reachable here, so the dashboard is checked where it can fail: its
PromQL. Each panel query runs against this Prometheus with Grafana's ``$__rate_interval`` replaced by a
window that covers the traffic, and must return at least one series with a number.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.servers import free_port, start, stop, wait_until_ready

PROMETHEUS_DIR = PROJECT_ROOT / "deploy" / "prometheus"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "imgrec.json"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
TOKEN = "prometheus-test-token"
pytestmark = pytest.mark.timeout(600)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (make deploy-tools installs Debian's prometheus)")
        pytest.skip(f"{name} is not installed (Debian's prometheus package; make deploy-tools installs it)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS_DIR)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, rows included."""
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in panels(dashboard["panels"])
            for target in panel.get("targets", [])]


def concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def jpeg(colour, size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


# -- the shipped files, checked by promtool ---------------------------------------------------------------


def test_promtool_checks_the_config_and_the_rules():
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        result = run_promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_promtools_rule_tests():
    result = run_promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {case["alertname"] for test in yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
              for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert alerts == tested
    assert {"ImgrecHighErrorRate", "ImgrecPredictLatencyHigh", "ImgrecQueueFull", "ImgrecModelNotReady",
            "ImgrecPredictionLogWriteFailures"} <= alerts


def test_dashboard_is_provisioned_and_every_panel_has_a_query():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "imgrec" and dashboard["panels"]
    queries = dashboard_queries()
    assert len(queries) >= 15
    metrics_used = " ".join(expr for _, expr in queries)
    for metric in ("imgrec_http_requests_total", "imgrec_http_request_duration_seconds_bucket",
                   "imgrec_inference_duration_seconds_bucket", "imgrec_batch_size_sum", "imgrec_batch_queue_wait_seconds",
                   "imgrec_predictions_total", "imgrec_model_info"):
        assert metric in metrics_used, metric
    datasource = yaml.safe_load((PROJECT_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in datasource["datasources"]}
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, panel["title"]


# -- a real Prometheus scraping a real API ------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tiny_settings, tmp_path_factory):
    from tests.helpers.settings import settings_env

    root = tmp_path_factory.mktemp("prom-api")
    data = root / "data"
    data.mkdir()
    (data / "active_model.json").write_text(json.dumps({"name": "tiny-cnn", "version": "1"}))
    port = free_port()
    env = {**os.environ, **settings_env(tiny_settings), "IMGREC_DATA_DIR": str(data), "IMGREC_DATABASE_URL": "",
           "IMGREC_ADMIN_TOKEN": TOKEN, "IMGREC_BATCH_MAX_WAIT_MS": "20"}
    log_path = root / "api.log"
    process = start([sys.executable, "-m", "imgrec", "serve", "--host", "127.0.0.1", "--port", str(port)],
                    log_path=log_path, cwd=PROJECT_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/health/ready", log_path, timeout=120)
        yield url
    finally:
        stop(process, timeout=30)


@pytest.fixture(scope="module")
def prometheus(api, tmp_path_factory):
    binary = tool("prometheus")
    root = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [api.removeprefix("http://")]}]
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = root / "prometheus.log"
    process = start([binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log_path=log_path, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/-/ready", log_path, timeout=60)
        yield url
    finally:
        stop(process, timeout=20)


def send_traffic(api_url: str, seconds: float = 6) -> None:
    """Concurrent predictions (so batches form), one bad image, one reload, the other routes: all bounded."""
    deadline = time.monotonic() + seconds
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]

    statuses: list[int] = []

    def worker(index: int):
        with httpx.Client(base_url=api_url, timeout=30) as client:
            for _ in range(200):
                if time.monotonic() > deadline:
                    return
                files = {"files": (f"{index}.jpg", jpeg(colours[index % len(colours)]), "image/jpeg")}
                statuses.append(client.post("/predict", files=files).status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            bad = client.post("/predict", files={"files": ("bad.jpg", b"not an image", "image/jpeg")})
            assert bad.status_code == 415, bad.text
            assert client.post("/model/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
            for path in ("/health", "/health/live", "/stats"):
                assert client.get(path).status_code == 200
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


def query(prometheus_url: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    return body["data"]["result"]


@pytest.fixture(scope="module")
def scraped(api, prometheus):
    # Two scrapes before the traffic so every counter has a starting point, then traffic, then a few more.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not query(prometheus, 'count_over_time(up{job="imgrec-api"}[1m]) >= 2'):
        time.sleep(0.5)
    send_traffic(api)
    time.sleep(3)
    return prometheus


def test_prometheus_scrapes_the_api_and_loads_the_rules(scraped):
    targets = httpx.get(f"{scraped}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [("imgrec-api", "up")], targets
    groups = httpx.get(f"{scraped}/api/v1/rules", timeout=10).json()["data"]["groups"]
    shipped = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in shipped)
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in shipped)
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    firing = [rule["name"] for rule in rules if rule["state"] == "firing"]
    assert firing == [], f"alerts fire on a healthy API: {firing}"


def test_every_dashboard_query_returns_data(scraped):
    empty = []
    for title, expr in dashboard_queries():
        result = query(scraped, concrete(expr))
        values = [float(series["value"][1]) for series in result]
        if not values or all(math.isnan(value) for value in values):
            empty.append((title, expr, result))
    assert not empty, "panels without data:\n" + "\n".join(f"{t}: {e} -> {r}" for t, e, r in empty)


def test_batching_metrics_show_shared_inference_calls(scraped):
    (per_call,) = query(scraped, "sum(imgrec_batch_size_sum) / sum(imgrec_batch_size_count)")
    assert float(per_call["value"][1]) >= 1
    series = query(scraped, "imgrec_inference_duration_seconds_count")
    assert {(s["metric"]["model"], s["metric"]["runtime"]) for s in series} == {("tiny-cnn@1", "keras")}
    assert query(scraped, "imgrec_model_ready == 1")


def test_dashboard_files_sit_where_compose_mounts_them():
    compose = yaml.safe_load((PROJECT_ROOT / "deploy" / "compose.yaml").read_text())
    mounts = " ".join(str(volume) for name in ("prometheus", "grafana")
                      for volume in compose["services"][name].get("volumes", []))
    for path in ("./prometheus", "./grafana/provisioning", "./grafana/dashboards"):
        assert path in mounts and (PROJECT_ROOT / "deploy" / Path(path)).is_dir(), path
