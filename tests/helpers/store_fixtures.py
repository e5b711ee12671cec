"""Fixtures and helpers for the prediction-log tests: real SQLite files and a throw-away PostgreSQL cluster.

The cluster lives in a private temp dir, listens only on a Unix socket there (no TCP port at all, so
nothing to collide with) and runs with fsync off: it is disposable. PostgreSQL refuses to run as
root, so when the tests run as root the server runs as an unprivileged user (``postgres`` if the
packages created it, else ``nobody``) via ``runuser``.

Test modules load this file with ``pytest_plugins = ["tests.helpers.store_fixtures"]`` (one cluster per
session) and also import its helpers, hence PYTEST_DONT_REWRITE: it has no asserts to rewrite,
and pytest would otherwise warn that the plugin was imported before it was registered.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from imgrec.predlog.store import PredictionRecord, Store

SERVER_USER_CANDIDATES = ("postgres", "nobody")
SUPERUSER = "postgres"  # the database role initdb creates (not the OS user)


def find_postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PostgresCluster:
    root: Path
    run_as: str | None  # OS user that owns and runs the server; None when we are not root
    pg_ctl: str

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def admin_connection(self):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", autocommit=True)

    def create_database(self) -> str:
        name = f"imgrec_{uuid.uuid4().hex[:12]}"
        with self.admin_connection() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin_connection() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            run_as(self.run_as, [self.pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"], self.root)
        shutil.rmtree(self.root, ignore_errors=True)


def run_as(user: str | None, command: list[str], cwd: Path) -> None:
    full_command = ["runuser", "-u", user, "--", *command] if user else command
    result = subprocess.run(full_command, cwd=cwd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def server_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in SERVER_USER_CANDIDATES:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError(f"Running as root and none of the users {SERVER_USER_CANDIDATES} exists to run PostgreSQL.")


def start_postgres_cluster() -> PostgresCluster:
    initdb, pg_ctl = find_postgres_binary("initdb"), find_postgres_binary("pg_ctl")
    user = server_user()
    # Not under pytest's tmp dir: that is private to root, and the server user must reach its files.
    root = Path(tempfile.mkdtemp(prefix="imgrec-pg-"))
    cluster = PostgresCluster(root=root, run_as=user, pg_ctl=pg_ctl)
    cluster.socket_dir.mkdir()
    if user:
        account = pwd.getpwnam(user)
        for path in (root, cluster.socket_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
    try:
        run_as(
            user,
            [initdb, "-D", str(cluster.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"],
            root,
        )
        settings = {
            "listen_addresses": "''",  # Unix socket only
            "unix_socket_directories": f"'{cluster.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "100",
        }
        with open(cluster.data_dir / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        log_file = root / "server.log"
        run_as(user, [pg_ctl, "-D", str(cluster.data_dir), "-l", str(log_file), "-w", "-t", "30", "start"], root)
    except BaseException:
        server_log = root / "server.log"
        details = server_log.read_text(errors="replace") if server_log.exists() else ""
        cluster.stop()
        if details:
            raise RuntimeError(f"PostgreSQL did not start. Server log:\n{details}") from None
        raise
    return cluster


@pytest.fixture(scope="session")
def postgres_cluster():
    if find_postgres_binary("initdb") is None:
        pytest.skip("PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql)")
    cluster = start_postgres_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster):
    """A fresh, empty database on the session cluster."""
    name = postgres_cluster.create_database()
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh database on each backend: a SQLite file in a not-yet-existing dir, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'imgrec.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url):
    with Store(database_url) as opened:
        yield opened


# -- records -----------------------------------------------------------------------------------

_counter = itertools.count()


def fake_sha256(seed: object) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()


def make_record(
    seed: object | None = None,
    *,
    label: str = "cat",
    score: float = 0.9,
    model_name: str = "tiny-cnn",
    model_version: str = "1",
    latency_ms: float = 12.5,
    source: str = "app",
    created_at: datetime | None = None,
    **overrides,
) -> PredictionRecord:
    """A valid record; ``seed`` picks the image (same seed, same sha256), the rest is the prediction."""
    seed = next(_counter) if seed is None else seed
    runner_up = round((1.0 - score) / 2, 6)
    values = dict(
        sha256=fake_sha256(seed),
        byte_size=1000 + len(str(seed)),
        width=64,
        height=48,
        format="JPEG",
        model_name=model_name,
        model_version=model_version,
        top_k=[(label, score), ("other", runner_up)],
        latency_ms=latency_ms,
        source=source,
        session_id="session-1",
        created_at=created_at,
    )
    values.update(overrides)
    return PredictionRecord(**values)


BASE_TIME = datetime(2026, 3, 1, 8, 0, 0)


def write_predictions_worker(url: str, worker: int, count: int, distinct_images: int, barrier) -> None:
    """Child-process body for the multi-process test: open the store at the same moment, then write."""
    barrier.wait(timeout=60)
    with Store(url) as store:
        for index in range(count):
            store.log_prediction(
                make_record(
                    index % distinct_images,
                    score=0.5,
                    source="cli",
                    created_at=BASE_TIME + timedelta(seconds=index),
                    metadata={"worker": worker},
                )
            )


def write_on_request_worker(url: str, requests, replies) -> None:
    """Child-process body: create the store, then write one prediction per request and reply with the count."""
    with Store(url) as store:
        while requests.get(timeout=60) == "write":
            store.log_prediction(make_record(0))
            replies.put(store.count_predictions())
