"""The session pages: agent sessions by their latest inference (keyset paging), and one session with its totals,
its subagents' sessions and its inferences (lsd.sessions; the inferences through the query API's list)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.page import services
from lsd.api.console.render import render
from lsd.errors import InvalidRequest, NotFound
from lsd.inference import listing
from lsd.sessions import MAX_SESSION_ID_CHARS, SESSION_TAG, decode_cursor, encode_cursor, with_subsessions
from lsd.store import sessions as store
from lsd.store.sessions import MARGIN

PAGE_SIZE = 50
MAX_INFERENCES = 500


async def sessions(request: Request[Any], viewer: Viewer) -> Response:
    params = request.query_params
    before = decode_cursor(params["cursor"]) if params.get("cursor") else None
    key = params.get("key", "").strip() or None
    if key is not None and "\x00" in key:
        raise InvalidRequest.at("key", "must not contain U+0000")
    user = params.get("user", "").strip() or None
    rows = await store.list_sessions(
        services(request).database,
        limit=PAGE_SIZE,
        before=before,
        api_key_public_id=key,
        user=user,
        purpose="console",
    )
    kept = {k: v for k, v in (("key", key), ("user", user)) if v}
    next_url = None
    if len(rows) == PAGE_SIZE:
        next_url = "/ui/sessions?" + urlencode({**kept, "cursor": encode_cursor(rows[-1])})
    first_url = "/ui/sessions?" + urlencode(kept) if before else None
    return render(
        request,
        "sessions.html",
        viewer,
        rows=rows,
        key=key or "",
        user=user or "",
        next_url=next_url,
        first_url=first_url,
    )


async def session(request: Request[Any], viewer: Viewer) -> Response:
    rt = services(request)
    session_id = request.query_params.get("id", "")
    row = None
    if len(session_id) <= MAX_SESSION_ID_CHARS:
        row = await store.get_session(rt.database, session_id, purpose="console")
    if row is None:
        raise NotFound(f"unknown session {session_id!r} (or not counted yet)", field="session_id")
    children = await store.subsessions(rt.database, session_id, purpose="console")
    body = {
        "tags": {SESSION_TAG: session_id},
        "since": (row.first_seen - MARGIN).isoformat(),
        "until": (row.last_seen + MARGIN).isoformat(),
        "limit": MAX_INFERENCES,
        "order_by": [{"by": "timestamp", "direction": "ascending"}],
    }
    found = await listing.list_inferences(rt.database, body, rt.config.metrics)
    failed = []
    if row.failed_inference_count:
        failed = await store.failed_inferences(rt.database, row, limit=MAX_INFERENCES, purpose="console")
    return render(
        request,
        "session.html",
        viewer,
        session=row,
        children=children,
        total=with_subsessions(row, children) if children else None,
        rows=found.rows,
        truncated=len(found.rows) == MAX_INFERENCES,
        failed=failed,
    )
