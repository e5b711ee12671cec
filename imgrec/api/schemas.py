"""What the OpenAPI schema declares the API answers: the error body, the result objects, the bodies of
``/health``, ``/model/reload`` and ``/stats``, and per route the statuses it really returns.

These models only document (the routes build their bodies themselves); ``tests/reliability/
test_openapi_contract.py`` runs Schemathesis against a real server to keep them and the answers together.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from imgrec.core.refs import NAME_PATTERN


class ErrorBody(BaseModel):
    """Every error answer (and the 422 of a bad parameter, in place of FastAPI's ``HTTPValidationError``)."""

    error: str = Field(description="a stable code, e.g. invalid_parameter, payload_too_large, overloaded")
    detail: str = Field(description="what went wrong, for people")
    request_id: str | None = Field(description="the request's X-Request-ID")


class ModelIdentity(BaseModel):
    name: str
    version: str
    task: str


class PredictionResult(BaseModel):
    """One image's result: ``Outcome.to_json()`` and the request id. The task adds its own fields
    (classification: ``predictions``, a list of ``{"label", "score"}``; detection: ``detections``, a list of
    ``{"label", "score", "box": [x1, y1, x2, y2]}`` in the original image's pixels, and ``image``,
    ``{"width", "height"}``)."""

    model_config = ConfigDict(extra="allow")

    filename: str
    model: ModelIdentity
    latency_ms: float
    prediction_id: int | None = Field(description="the prediction log's row, None if it was not logged")
    log_warning: str | None = Field(default=None, description="present when the prediction was not logged")
    request_id: str | None


class FileError(BaseModel):
    """In a list of results, a file that could not be used (the other files still get their result)."""

    filename: str
    error: str
    detail: str
    status: int
    request_id: str | None


class ReloadResult(BaseModel):
    status: str
    model: ModelIdentity
    previous: ModelIdentity | None
    load_seconds: float
    request_id: str | None


class Readiness(BaseModel):
    status: str = Field(description="ready or not ready")
    model: bool
    database: bool


class Liveness(BaseModel):
    status: str


class Health(BaseModel):
    """Readiness with details: model, database, spool, batching, models, uptime."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ready or not ready")
    model: dict[str, Any]
    database: dict[str, Any]
    uptime_s: float


class Stats(BaseModel):
    """The aggregates of ``python -m imgrec stats --json``."""

    model_config = ConfigDict(extra="allow")


ERROR_DESCRIPTIONS = {
    401: "Missing or wrong admin token",
    403: "Admin endpoints are disabled (no admin token configured)",
    404: "Unknown model or version",
    408: "The request body did not arrive in time",
    413: "The request body is over the limit",
    415: "Not a multipart/form-data body, or (one file) not an image format we accept",
    422: "A bad parameter, form, metadata or body; a corrupt image; a model that does not load",
    503: "Unavailable (see the error code); retry later",
}


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries declaring ``ErrorBody`` for each status (``descriptions``: ``s503="..."``)."""
    return {status: {"model": ErrorBody,
                     "description": descriptions.get(f"s{status}", ERROR_DESCRIPTIONS[status])}
            for status in statuses}


_NAME = {"type": "string", "pattern": f"^{NAME_PATTERN.pattern}$"}

RELOAD_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"name": _NAME, "version": _NAME},
                    "additionalProperties": False,
                    "dependentRequired": {"version": ["name"]},
                    "description": "which model to load (default: the active one); a version needs a name",
                }
            }
        },
    }
}
