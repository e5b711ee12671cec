"""deploy/k8s: schema-valid (kubernetes-validate, schemas bundled), clean under checkov, and what the API needs.

checkov pins a dependency set that conflicts with the runtime pins (packaging, python-dateutil,
termcolor), so ``make deploy-tools`` installs it in a venv of its own, ``.venv/checkov`` (pinned in
deploy/requirements-checkov.txt). It runs with ``--skip-download``: nothing is fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imgrec.core.settings import PROJECT_ROOT

K8S = PROJECT_ROOT / "deploy" / "k8s"
pytestmark = pytest.mark.timeout(300)


def manifests() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def resources() -> dict[tuple[str, str], dict]:
    found = {}
    for path in manifests():
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def missing_tool(message: str):
    if os.environ.get("CI"):
        pytest.fail(f"{message} (make deploy-tools installs it)")
    pytest.skip(message)


def beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in manifests()]
    assert kustomization["namespace"] == "imgrec"


def test_manifests_validate_against_the_kubernetes_schemas():
    pytest.importorskip("kubernetes_validate")
    command = beside_python("kubernetes-validate")
    if command is None:
        missing_tool("kubernetes-validate is not installed (requirements-dev.txt)")
    result = subprocess.run([command, "--strict", *map(str, manifests())], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(resources()), result.stdout


def test_checkov_finds_nothing():
    checkov = Path(sys.executable).parent.parent / "checkov" / "bin" / "checkov"
    if not checkov.exists():
        found = shutil.which("checkov")
        if found is None:
            missing_tool("checkov is not installed (.venv/checkov)")
        checkov = Path(found)
    result = subprocess.run(
        [str(checkov), "-d", str(K8S), "--framework", "kubernetes", "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert summary["failed"] == 0 and result.returncode == 0, failed
    assert summary["passed"] > 100
    skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
    assert skipped <= {"CKV_K8S_43", "CKV_K8S_35"}, skipped  # image digests (users' own images), IMGREC_* env


def test_api_deployment_probes_resources_and_security():
    found = resources()
    api = found[("Deployment", "imgrec-api")]["spec"]["template"]["spec"]
    (container,) = api["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(container["resources"]["limits"])
    assert api["securityContext"]["runAsNonRoot"] and api["securityContext"]["runAsUser"] == 10001
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/data"}
    secret_keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"] if "valueFrom" in e}
    assert secret_keys == {"IMGREC_ADMIN_TOKEN", "IMGREC_DATABASE_URL"}
    assert container["envFrom"] == [{"configMapRef": {"name": "imgrec-settings"}}]
    assert set(found[("Secret", "imgrec-secrets")]["stringData"]) >= secret_keys
    assert all(key.startswith(("IMGREC_", "WEB_")) for key in found[("ConfigMap", "imgrec-settings")]["data"])


def test_service_autoscaler_budget_app_and_postgres():
    found = resources()
    selector = found[("Deployment", "imgrec-api")]["spec"]["selector"]["matchLabels"]
    assert found[("Service", "imgrec-api")]["spec"]["selector"] == selector
    assert found[("PodDisruptionBudget", "imgrec-api")]["spec"]["selector"]["matchLabels"] == selector
    hpa = found[("HorizontalPodAutoscaler", "imgrec-api")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "imgrec-api" and hpa["minReplicas"] >= 2
    app = found[("Deployment", "imgrec-app")]["spec"]["template"]["spec"]["containers"][0]
    assert "streamlit" in app["command"] and app["readinessProbe"]["httpGet"]["path"] == "/_stcore/health"
    assert found[("StatefulSet", "postgres")]["spec"]["volumeClaimTemplates"]
    database_url = found[("Secret", "imgrec-secrets")]["stringData"]["IMGREC_DATABASE_URL"]
    assert "@postgres:5432/" in database_url and found[("Service", "postgres")]["spec"]["ports"][0]["port"] == 5432
