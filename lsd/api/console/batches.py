"""The batch pages: the newest batches, and one batch with its inputs and its stored (redacted) raw payloads."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.page import services
from lsd.api.console.render import render
from lsd.errors import BatchNotFound, InvalidRequest
from lsd.store import batch as store
from lsd.store import console

LOOKBACK = dt.timedelta(days=30)
MAX_ITEMS = 200


async def batches(request: Request[Any], viewer: Viewer) -> Response:
    since = dt.datetime.now(dt.UTC) - LOOKBACK
    found = await console.recent_batches(services(request).database, since)
    return render(request, "batches.html", viewer, batches=found, days=LOOKBACK.days)


async def batch(request: Request[Any], viewer: Viewer) -> Response:
    try:
        batch_id = UUID(request.path_params["batch_id"])
    except ValueError:
        raise InvalidRequest.at("batch_id", "invalid UUID") from None
    database = services(request).database
    found = await store.get_batch(database, batch_id)
    if found is None:
        raise BatchNotFound(batch_id)
    items = await store.batch_items(database, batch_id)
    raw_request, raw_response = console.batch_raw(found)
    return render(
        request,
        "batch.html",
        viewer,
        batch=found,
        items=items[:MAX_ITEMS],
        more=max(len(items) - MAX_ITEMS, 0),
        raw_request=raw_request,
        raw_response=raw_response,
    )
