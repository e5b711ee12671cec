"""Issue 19, item 4: no prediction answered during a database outage is lost (PostgreSQL stopped and started,
SQLite locked by another process), nor written twice: the spool takes what the database refuses and replays it."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from tests.helpers.probe import ApiServer, copy_models, image_bytes, metric_samples, recorder, shared_root
from tests.helpers.store_fixtures import find_postgres_binary, run_as, start_postgres_cluster

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()
REQUESTS, THREADS = 300, 3
OUTAGE_AT_S, OUTAGE_S = 2.0, 8.0


def run_load(server, outage_start, outage_end, threads: int = THREADS) -> list[tuple[int, object]]:
    """REQUESTS predictions from THREADS clients, paced to last past the outage; the outage runs meanwhile."""
    results, lock, counter = [], threading.Lock(), iter(range(REQUESTS))

    def client():
        with server.client(timeout=60) as http:
            while True:
                with lock:
                    seed = next(counter, None)
                if seed is None:
                    return
                response = http.post("/predict", files={"files": (f"{seed}.png", image_bytes(seed))})
                with lock:
                    results.append((response.status_code, response.json().get("prediction_id")))
                time.sleep(0.08)

    threads = [threading.Thread(target=client) for _ in range(threads)]
    for thread in threads:
        thread.start()
    time.sleep(OUTAGE_AT_S)
    outage_start()
    try:
        time.sleep(OUTAGE_S)
    finally:
        outage_end()
    for thread in threads:
        thread.join(120)
    return results


def drain(server, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    with server.client() as http:
        while True:
            spool = http.get("/health").json()["spool"]
            if spool["records"] == 0 or time.monotonic() > deadline:
                return {**spool, "metrics": http.get("/metrics").text}
            time.sleep(0.5)


BEFORE = {
    "PostgreSQL": "before the fix (no spool; measured on the commit before it): 63 of 300 answered predictions "
                  "logged, 237 lost, nothing in /metrics",
    "SQLite": "before the fix (no spool; measured on the commit before it): 292 of 300 logged, 8 lost (the writes "
              "past the 16 waiting ones)",
}


def record(backend, how, results, rows, distinct, spool):
    answered = sum(1 for status, _ in results if status == 200)
    spooled = sum(v for _, v in metric_samples(spool["metrics"], "imgrec_log_spooled_total"))
    dropped = sum(v for _, v in metric_samples(spool["metrics"], "imgrec_log_dropped_total"))
    ok = answered == len(results) == REQUESTS and rows == answered and distinct == rows and spooled > 0 and dropped == 0
    RECORDER.add(f"{backend} {how} for {OUTAGE_S:g} s under load ({REQUESTS} predictions)", f"api+{backend.lower()}",
                 "every prediction answered 200 and logged exactly once (rows = answered, 0 lost, 0 duplicates); "
                 "imgrec_log_spooled_total > 0, dropped 0",
                 f"answered {answered} of {len(results)}, rows logged {rows} ({answered - rows} lost), "
                 f"distinct keys {distinct}; spooled {spooled:.0f}, replayed {spool['replayed']}, dropped {dropped:.0f}, "
                 f"left in spool {spool['records']}", ok, note=BEFORE[backend])
    return ok


@pytest.mark.postgres
def test_no_prediction_is_lost_across_a_postgres_restart(tiny_settings):
    import psycopg

    if find_postgres_binary("initdb") is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = start_postgres_cluster()
    root = shared_root()
    try:
        database = cluster.create_database()
        server = ApiServer(root, {"IMGREC_MODELS_DIR": str(copy_models(tiny_settings, root)),
                                  "IMGREC_DATA_DIR": str(root / "data"), "IMGREC_DEFAULT_MODEL": "tiny-cnn",
                                  "IMGREC_DATABASE_URL": cluster.url(database), "IMGREC_LOG_TIMEOUT_S": "2"},
                           name="pg-outage").start()
        try:
            pg = [cluster.pg_ctl, "-D", str(cluster.data_dir)]
            results = run_load(
                server,
                lambda: run_as(cluster.run_as, [*pg, "-m", "fast", "-w", "stop"], cluster.root),
                lambda: run_as(cluster.run_as, [*pg, "-l", str(cluster.root / "server.log"), "-w", "-t", "30",
                                                "start"], cluster.root),
            )
            spool = drain(server)
        finally:
            server.stop()
        with psycopg.connect(host=str(cluster.socket_dir), user="postgres", dbname=database) as connection:
            rows, distinct = connection.execute(
                "SELECT count(*), count(DISTINCT request_key) FROM predictions").fetchone()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    ok = record("PostgreSQL", "stopped (pg_ctl stop -m fast) and started again", results, rows, distinct, spool)
    assert ok, (rows, distinct, spool["records"], server.tail())


LOCKER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
connection.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


def test_no_prediction_is_lost_while_another_process_locks_the_sqlite_file(tiny_settings):
    import sqlite3
    import subprocess
    import sys

    root = shared_root()
    db = root / "data" / "imgrec.db"
    locker = {}

    def lock():
        locker["process"] = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), str(OUTAGE_S)],
                                             stdout=subprocess.PIPE, text=True)
        assert locker["process"].stdout.readline().strip() == "locked"

    try:
        server = ApiServer(root, {"IMGREC_MODELS_DIR": str(copy_models(tiny_settings, root)),
                                  "IMGREC_DATA_DIR": str(root / "data"), "IMGREC_DEFAULT_MODEL": "tiny-cnn",
                                  "IMGREC_LOG_TIMEOUT_S": "2"},
                           name="sqlite-outage").start()
        try:
            results = run_load(server, lock, lambda: locker["process"].wait(60), threads=8)
            spool = drain(server)
        finally:
            server.stop()
        with sqlite3.connect(db) as connection:
            rows, distinct = connection.execute(
                "SELECT count(*), count(DISTINCT request_key) FROM predictions").fetchone()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ok = record("SQLite", "locked by another process (BEGIN EXCLUSIVE)", results, rows, distinct, spool)
    assert ok, (rows, distinct, spool["records"], server.tail())
