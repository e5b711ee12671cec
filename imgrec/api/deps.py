"""The routers' FastAPI dependencies: the app's ``ApiState``, the request id and the admin token check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imgrec.api.errors import REQUEST_ID_KEY, ApiError
from imgrec.api.state import ApiState


def get_state(request: Request) -> ApiState:
    return request.app.state.imgrec


def request_id(request: Request) -> str | None:
    return request.scope.get(REQUEST_ID_KEY)


State = Annotated[ApiState, Depends(get_state)]
RequestId = Annotated[str | None, Depends(request_id)]


# Declares the bearer scheme in the OpenAPI schema; ``require_admin`` reads the header itself.
_ADMIN_BEARER = HTTPBearer(auto_error=False, scheme_name="adminToken", description="IMGREC_ADMIN_TOKEN")


def require_admin(request: Request, state: State,
                  _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_ADMIN_BEARER)] = None) -> None:
    expected = state.settings.admin_token
    if not expected:
        raise ApiError(403, "admin_disabled",
                       "Admin endpoints are disabled: no admin token is configured. Set IMGREC_ADMIN_TOKEN to enable them.")
    scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "unauthorized", "Missing admin token. Expected the header 'Authorization: Bearer <token>'.",
                       challenge)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "Wrong admin token.", challenge)
