"""The Dockerfile's base is an argument (the official image by default), and no registry host is written down."""

from __future__ import annotations

import re

from imgrec.core.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
# Hosts of the registries this project reaches; they are read from the machine at run time, never written here.
REGISTRY_HOSTS = re.compile(r"deb\.debian\.org|security\.debian\.org|pypi\.org|pythonhosted\.org|registry\.npmjs\.org",
                            re.IGNORECASE)


def test_base_image_is_an_argument_defaulting_to_the_official_slim_image():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.MULTILINE)
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms[0] == "${BASE_IMAGE}" and set(froms[1:]) <= {"runtime"}, froms


def test_the_image_copies_the_shipped_models_and_not_the_tests():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    shipped = ("cifar10-mobilenetv2", "fashion-mnist-cnn", "cifar10-mosaic-multilabel")
    assert {*(f"!models/{name}" for name in shipped), "tests"} <= set(ignored)
    for name in shipped:
        assert (PROJECT_ROOT / "models" / name / "1" / "model.keras").exists()


def test_no_registry_host_is_written_in_the_deployment_files():
    files = [path for folder in (DEPLOY, PROJECT_ROOT / "tests" / "deploy") for path in folder.rglob("*")
             if path.is_file() and path.suffix != ".pyc"]
    offenders = [str(path.relative_to(PROJECT_ROOT)) for path in files
                 if path.name != "test_dockerfile_base.py" and REGISTRY_HOSTS.search(path.read_text(errors="replace"))]
    assert offenders == []
