"""Issue 19, item 2: clients that send their upload at 1 byte/s hold no place in the queue, and are
answered 408 and disconnected once the body timeout passes (a real server, raw sockets on 127.0.0.1)."""

from __future__ import annotations

import select
import socket
import threading
import time

import pytest

from tests.helpers.probe import image_bytes, recorder, serve_tiny_model

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()
SLOW_CLIENTS = 300
BODY_TIMEOUT_S = 8
NORMAL_REQUESTS = 20


@pytest.fixture
def server(tiny_settings):
    yield from serve_tiny_model(tiny_settings, "slow-uploads", {"IMGREC_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S)})


def open_slow_client(port: int) -> socket.socket:
    boundary = "slowboundary"
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"slow.png\"\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head)
    return sock


def test_slow_uploads_do_not_lock_others_out_and_are_cut_off(server):
    sockets = [open_slow_client(server.port) for _ in range(SLOW_CLIENTS)]
    stop = threading.Event()
    closed: set[int] = set()

    def trickle():  # one byte per second on every open slow connection, until told to stop (bounded below)
        for _ in range(BODY_TIMEOUT_S + 10):
            for index, sock in enumerate(sockets):
                if index not in closed:
                    try:
                        sock.send(b"x")
                    except OSError:
                        closed.add(index)
            if stop.wait(1.0):
                return

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        time.sleep(1.5)
        with server.client() as http:
            statuses = [http.post("/predict", files={"files": (f"{n}.png", image_bytes(n))}).status_code
                        for n in range(NORMAL_REQUESTS)]
            health = http.get("/health").json()
        answered_408 = 0
        deadline = time.monotonic() + BODY_TIMEOUT_S + 8
        while time.monotonic() < deadline and len(closed) < SLOW_CLIENTS:
            readable, _, _ = select.select([s for i, s in enumerate(sockets) if i not in closed], [], [], 0.5)
            for sock in readable:
                index = sockets.index(sock)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                answered_408 += data.startswith(b"HTTP/1.1 408")
                closed.add(index)
    finally:
        stop.set()
        trickler.join(30)
        for sock in sockets:
            sock.close()
    ok = (set(statuses) == {200} and len(closed) == SLOW_CLIENTS and answered_408 >= SLOW_CLIENTS * 0.9
          and health["batching"]["in_flight"] == 0)
    RECORDER.add(f"{SLOW_CLIENTS} clients sending their upload at 1 byte/s, then {NORMAL_REQUESTS} normal /predict",
                 "api", f"every /predict 200; slow clients not counted in flight; each answered 408 and closed after "
                 f"IMGREC_BODY_TIMEOUT_S={BODY_TIMEOUT_S}",
                 f"/predict statuses {sorted(set(statuses))} ({statuses.count(200)} of {NORMAL_REQUESTS} 200); in flight "
                 f"{health['batching']['in_flight']}; {len(closed)} of {SLOW_CLIENTS} slow connections closed, "
                 f"{answered_408} with 408", ok,
                 note="before the fix all 20 /predict were 503 (the slow clients filled the queue of 256) and no slow "
                      "connection was answered 408 (44 of 300 closed, measured)")
    assert ok, (statuses, len(closed), answered_408, health["batching"], server.tail())
