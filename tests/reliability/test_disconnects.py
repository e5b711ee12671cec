"""Issue 19, item 6: a client that hangs up mid-upload is a client disconnect, not a server error."""

from __future__ import annotations

import socket
import time

import pytest

from tests.helpers.probe import (
    image_bytes,
    metric_samples,
    recorder,
    requests_by_status,
    serve_tiny_model,
)

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()
HANG_UPS = 6


@pytest.fixture(scope="module")
def server(tiny_settings):
    yield from serve_tiny_model(tiny_settings, "disconnects")


def hang_up_mid_upload(port: int, image: bytes) -> None:
    """Announce a whole multipart body, send a third of it, then close the socket."""
    boundary = "probeboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(body)}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body[: len(body) // 3])
        time.sleep(0.3)  # the server is reading the body when we go


def test_a_client_hanging_up_mid_upload_is_no_500(server):
    with server.client() as http:
        before = http.get("/metrics").text
        log_before = len(server.log())
        for seed in range(HANG_UPS):
            hang_up_mid_upload(server.port, image_bytes(seed, size=(200, 200)))
        time.sleep(1.0)
        after = http.get("/metrics").text
        still_fine = http.post("/predict", files={"files": ("ok.png", image_bytes(50))}).status_code
    errors_500 = requests_by_status(after).get("500", 0) - requests_by_status(before).get("500", 0)
    disconnects = sum(v for _, v in metric_samples(after, "imgrec_client_disconnects_total"))
    tracebacks = server.log()[log_before:].count("Traceback")
    ok = errors_500 == 0 and disconnects == HANG_UPS and tracebacks == 0 and still_fine == 200
    RECORDER.add(f"{HANG_UPS} clients hang up mid-upload", "api",
                 f"0 new 500s, imgrec_client_disconnects_total {HANG_UPS} (status 499), no traceback logged",
                 f"{errors_500:.0f} new 500s, disconnects counted {disconnects:.0f}, tracebacks {tracebacks}, "
                 f"next /predict {still_fine}", ok,
                 note=f"before the fix: {HANG_UPS} new 500s in the metrics and {2 * HANG_UPS} tracebacks in the log (measured)")
    assert ok, (errors_500, disconnects, tracebacks, server.log()[-3000:])
