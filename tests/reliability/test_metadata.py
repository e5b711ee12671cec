"""Issue 19, item 5: metadata the database cannot store is refused with 422 (a real server process)."""

from __future__ import annotations

import pytest

from tests.helpers.probe import image_bytes, recorder, serve_tiny_model

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()

UNSTORABLE = {
    "NaN": '{"reading": NaN}',
    "Infinity": '{"reading": Infinity}',
    "-Infinity": '{"reading": [1, -Infinity]}',
    "\\u0000 in a value": '{"note": "a\\u0000b"}',
    "\\u0000 in a key": '{"a\\u0000": 1}',
    "lone surrogate": '{"note": "\\ud800"}',
    "lone low surrogate, nested": '{"deep": {"list": ["ok", "\\udfff"]}}',
}


@pytest.fixture(scope="module")
def server(tiny_settings):
    yield from serve_tiny_model(tiny_settings, "metadata")


def test_metadata_that_cannot_be_stored_is_422(server):
    statuses = {}
    with server.client() as http:
        for seed, (case, text) in enumerate(UNSTORABLE.items()):
            response = http.post("/predict", files={"files": ("x.png", image_bytes(seed))}, data={"metadata": text})
            statuses[case] = (response.status_code, response.json().get("error"))
        fine = http.post("/predict", files={"files": ("y.png", image_bytes(99))},
                         data={"metadata": '{"camera": "door", "n": 1.5, "ok": "caf\\u00e9 \\ud83d\\ude00"}'})
    refused = all(status == (422, "invalid_metadata") for status in statuses.values())
    kept = fine.status_code == 200 and fine.json()["prediction_id"] is not None
    RECORDER.add("metadata with NaN, Infinity, \\u0000 or a lone surrogate", "api",
                 f"422 invalid_metadata for all {len(UNSTORABLE)}; valid metadata (with a surrogate pair) 200 + logged",
                 "; ".join(f"{case}: {status}" for case, (status, _) in statuses.items())
                 + f"; valid: {fine.status_code}, prediction_id {fine.json().get('prediction_id')}",
                 refused and kept,
                 note="before the fix all 7 were answered 200 (and the row then failed to write on PostgreSQL)")
    assert refused, statuses
    assert kept, fine.text
