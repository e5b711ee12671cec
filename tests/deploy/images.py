"""The imgrec image for the tests: built once from a locally made base, then reused while its inputs are unchanged.

``ensure_image()`` makes the base (``deploy/base-image.sh``: debootstrap + ``docker import``, cached by
tag), copies what the Dockerfile reads into a temporary build context together with the Keras ImageNet
weights (``keras_home/``, so ``imgrec init`` registers the stock model offline at build time), and tags
the result ``imgrec:test-<hash of that context and the base>``. A second run with the same inputs finds
the tag and builds nothing; a build removes the older ``imgrec:test-*`` tags and its own dangling stage
images, so only the newest image is kept as the cache.

Containers run with ``--network host`` on free 127.0.0.1 ports (no traffic off loopback) and are removed
by ``Container.remove()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgrec.core.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "deploy"
REPOSITORY = "imgrec"
TAG_PREFIX = "test-"
# What the Dockerfile copies (and .dockerignore keeps): the whole build context of the tests.
CONTEXT_ITEMS = (
    "deploy/Dockerfile", ".dockerignore", "requirements.txt", "pyproject.toml", "streamlit_app.py", ".streamlit",
    "imgrec", "ui", "pages", "models/cifar10-mobilenetv2", "models/fashion-mnist-cnn",
    "models/cifar10-mosaic-multilabel",
)
WEIGHTS = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
BUILD_TIMEOUT_S = 1800


def unavailable(reason: str):
    """Skip where Docker cannot be had; under CI (``make test`` installs and starts it) that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (make deploy-tools installs and starts it)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


def require_docker() -> None:
    if shutil.which("docker") is None:
        unavailable("the docker client is not installed")
    try:
        result = docker("info", "--format", "{{.ServerVersion}}", timeout=30, check=False)
    except subprocess.TimeoutExpired:
        unavailable("the Docker engine did not answer")
    if result.returncode != 0:
        unavailable(f"no Docker engine is running: {result.stderr.strip()[:200]}")


def keras_home() -> Path:
    """The offline Keras weights: KERAS_HOME (set by the Makefile), else ../shared/keras_home."""
    for candidate in (os.environ.get("KERAS_HOME"), PROJECT_ROOT.parent / "shared" / "keras_home"):
        if candidate and (Path(candidate) / "models" / WEIGHTS).exists():
            return Path(candidate)
    pytest.skip("the Keras ImageNet weights are not at hand (KERAS_HOME or ../shared/keras_home)")


def base_image(log: Path) -> str:
    if shutil.which("debootstrap") is None and os.geteuid() == 0:
        unavailable("debootstrap is not installed")
    with open(log, "w") as stderr:
        result = subprocess.run(["sh", str(DEPLOY / "base-image.sh")], stdout=subprocess.PIPE, stderr=stderr,
                                text=True, timeout=1200)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/base-image.sh failed:\n{log.read_text()[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def _ignored(name: str) -> bool:
    return name == "__pycache__" or name.endswith(".pyc")


def make_context(root: Path, weights: Path) -> str:
    """Copy the build inputs and the weights into ``root``; returns the hash of everything copied."""
    digest = hashlib.sha256()
    for item in CONTEXT_ITEMS:
        source = PROJECT_ROOT / item
        target = root / item
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=lambda _dir, names: [n for n in names if _ignored(n)])
        else:
            shutil.copy2(source, target)
    shutil.copytree(weights, root / "keras_home")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class BuiltImage:
    tag: str
    base: str
    size_bytes: int
    build_seconds: float | None  # None when the cached image was reused

    def config(self) -> dict:
        return json.loads(docker("image", "inspect", self.tag, "--format", "{{json .Config}}").stdout)


def _images(repository: str) -> list[str]:
    listed = docker("images", repository, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return [name for name in listed if not name.endswith(":<none>")]


def _dangling() -> set[str]:
    return set(docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split())


def ensure_image() -> BuiltImage:
    require_docker()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    weights = keras_home()
    base = base_image(ARTIFACTS / "base-image.log")
    with tempfile.TemporaryDirectory(prefix="imgrec-context-") as context:
        digest = hashlib.sha256((make_context(Path(context), weights) + base).encode()).hexdigest()[:16]
        tag = f"{REPOSITORY}:{TAG_PREFIX}{digest}"
        build_seconds = None
        if docker("image", "inspect", tag, check=False).returncode != 0:
            before = _dangling()
            started = time.monotonic()
            log_path = ARTIFACTS / "docker-build.log"
            with open(log_path, "w") as log:
                result = subprocess.run(
                    ["docker", "build", "--network", "host", "-f", "deploy/Dockerfile", "--build-arg", f"BASE_IMAGE={base}",
                     "-t", tag, "."],
                    cwd=context, stdout=log, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S,
                    env={**os.environ, "DOCKER_BUILDKIT": "0"},  # the same builder everywhere (Debian's engine has no buildx)
                )
            build_seconds = time.monotonic() - started
            leftovers = sorted(_dangling() - before)  # the build's own stage images (the weights stage)
            if leftovers:
                docker("rmi", *leftovers, check=False)
            if result.returncode != 0:
                raise RuntimeError(f"docker build failed:\n{log_path.read_text()[-6000:]}")
            stale = [name for name in _images(REPOSITORY) if name.startswith(f"{REPOSITORY}:{TAG_PREFIX}") and name != tag]
            if stale:
                docker("rmi", *stale, check=False)
    size = int(docker("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())
    return BuiltImage(tag, base, size, build_seconds)


@dataclass
class Container:
    id: str
    name: str

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr

    def running(self) -> bool:
        result = docker("inspect", "--format", "{{.State.Running}}", self.id, check=False)
        return result.stdout.strip() == "true"

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False, timeout=60)


def run_container(image: str, name: str, command: list[str] | None = None, env: dict[str, str] | None = None,
                  options: tuple[str, ...] = ()) -> Container:
    """``docker run -d`` on the host network, read-only root file system, /tmp and /data in memory."""
    name = f"imgrec-test-{name}-{os.getpid()}"
    args = ["run", "-d", "--name", name, "--network", "host", "--read-only",
            "--tmpfs", "/tmp:rw,mode=1777", "--tmpfs", "/data:rw,uid=10001,gid=10001", *options]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    args.append(image)
    args += command or []
    return Container(docker(*args, timeout=120).stdout.strip(), name)


def wait_for(container: Container, url: str, timeout: float) -> float:
    """Seconds until ``url`` answered 200; fails with the container's log if it stops or time runs out."""
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        if not container.running():
            raise RuntimeError(f"container {container.name} stopped:\n{container.logs()[-4000:]}")
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready within {timeout:.0f} s:\n{container.logs()[-4000:]}")


def record(name: str, values: dict) -> None:
    """Keep a measurement in test-artifacts/deploy/<name>.json (read by people, not by tests)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(values, indent=2) + "\n")
