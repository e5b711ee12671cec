"""``GET /stats``: the prediction log's aggregates, as ``python -m imgrec stats --json`` gives them."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from imgrec.api.deps import State
from imgrec.api.errors import ApiError
from imgrec.api.schemas import Stats, errors

router = APIRouter()


@router.get("/stats", responses={200: {"model": Stats, "description": "The aggregates"},
                                   **errors(503, s503="The prediction log is unreachable")})
async def stats(state: State):
    store = await state.ensure_store()
    if store is None:
        raise ApiError(503, "store_unavailable", f"The prediction log is unavailable: {state.store_error}")
    from imgrec.predlog import stats as aggregates  # pandas and scipy load on first use, not at import

    threshold = state.settings.uncertain_threshold
    return await anyio.to_thread.run_sync(lambda: aggregates.report(store, uncertain_threshold=threshold))
