"""Issue 19, item 3: a PostgreSQL server frozen by SIGSTOP does not hold requests longer than the log deadline."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from tests.helpers.probe import image_bytes, recorder, serve_tiny_model, signal_cluster
from tests.helpers.store_fixtures import find_postgres_binary, start_postgres_cluster

pytestmark = pytest.mark.postgres
RECORDER = recorder()
_write_outcomes = RECORDER.fixture()
FREEZE_S = 12
LOG_TIMEOUT_S = 2.0
THREADS, PER_THREAD = 3, 4


@pytest.fixture
def cluster():
    if find_postgres_binary("initdb") is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = start_postgres_cluster()  # a cluster of its own: it is frozen
    yield cluster
    signal_cluster(cluster, signal.SIGCONT)
    cluster.stop()


@pytest.fixture
def server(tiny_settings, cluster):
    url = cluster.url(cluster.create_database())
    yield from serve_tiny_model(tiny_settings, "frozen-postgres",
                                {"IMGREC_DATABASE_URL": url, "IMGREC_LOG_TIMEOUT_S": str(LOG_TIMEOUT_S)})


def test_requests_during_a_frozen_database_end_within_the_log_deadline(server, cluster):
    with server.client() as http:
        for seed in range(4):  # pooled connections, in use before the freeze
            assert http.post("/predict", files={"files": ("w.png", image_bytes(seed))}).status_code == 200
    durations, statuses, lock = [], [], threading.Lock()

    def client(index):
        with server.client(timeout=FREEZE_S + 30) as http:
            for n in range(PER_THREAD):
                started = time.monotonic()
                response = http.post("/predict", files={"files": ("x.png", image_bytes(100 + index * 10 + n))})
                with lock:
                    durations.append(time.monotonic() - started)
                    statuses.append(response.status_code)

    frozen = signal_cluster(cluster, signal.SIGSTOP)
    thawed_at = time.monotonic() + FREEZE_S
    try:
        threads = [threading.Thread(target=client, args=(index,)) for index in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, thawed_at - time.monotonic()))
    finally:
        time.sleep(max(0.0, thawed_at - time.monotonic()))
        signal_cluster(cluster, signal.SIGCONT)
    for thread in threads:
        thread.join(60)
    with server.client() as http:
        after = http.post("/predict", files={"files": ("after.png", image_bytes(999))})
    longest = max(durations)
    ok = (len(durations) == THREADS * PER_THREAD and set(statuses) == {200} and longest < LOG_TIMEOUT_S + 3
          and after.status_code == 200)
    RECORDER.add(f"PostgreSQL frozen (SIGSTOP, {frozen} processes) for {FREEZE_S} s, {THREADS * PER_THREAD} requests",
                 "api+postgres",
                 f"every request 200 within the log deadline ({LOG_TIMEOUT_S:g} s) + 3 s",
                 f"statuses {sorted(set(statuses))}, longest request {longest:.1f} s, "
                 f"median {sorted(durations)[len(durations) // 2]:.1f} s; after the thaw {after.status_code}", ok,
                 note=f"before the fix the longest request took {FREEZE_S} s, the whole freeze (measured)")
    assert ok, (statuses, durations, server.tail())
