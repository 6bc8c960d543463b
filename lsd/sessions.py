"""Agent sessions: what `GET /v1/sessions` and `GET /v1/sessions/{session_id}` take and answer (docs/api.md#sessions).

A session is every inference tagged `lsd::session_id` with one value (the OpenAI and Anthropic routes tag Codex's,
Claude Code's, opencode's and Open WebUI's session headers so; any client may send x-session-id). Its totals come
from the statistics table session_statistics, which the statistics refresh keeps (as fresh as its last run: 10 s by
default).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lsd.errors import InvalidRequest, NotFound
from lsd.store import sessions as store
from lsd.store.database import Database
from lsd.store.sessions import SESSION_TAG as SESSION_TAG  # the tag the routes set and the console filters on
from lsd.store.sessions import SessionRow

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
# A session id (the tag lsd::session_id, lsd::parent_session_id) is at most this long: a longer header is a 400, and
# the statistics refresh leaves a longer tag out (PostgreSQL's btree keys hold at most 2,704 bytes: 512 characters of
# UTF-8 fit, whatever they are). Keep sql/migrations/0018_session_statistics.sql and lsd/store/statistics.py in step.
MAX_SESSION_ID_CHARS = 512


@dataclass(frozen=True, slots=True)
class SessionListing:
    limit: int = DEFAULT_LIMIT
    before: tuple[dt.datetime, str] | None = None
    api_key_public_id: str | None = None
    user: str | None = None  # the sessions with inferences tagged `user` with this value
    session_id: str | None = None  # that session only: any id, `/` and `..` included, which a path cannot carry
    parent_session_id: str | None = None  # its subagents' sessions


def parse_session_listing(params: Mapping[str, str]) -> SessionListing:
    """Query parameters of `GET /v1/sessions`: limit, cursor (a page's `next_cursor`), api_key_public_id, user,
    session_id, parent_session_id."""
    known = {"limit", "cursor", "api_key_public_id", "user", "session_id", "parent_session_id"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown query parameter")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        text = params["limit"]
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
            raise InvalidRequest.at("limit", f"expected an integer from 1 to {MAX_LIMIT}")
        limit = int(text)
    before = decode_cursor(params["cursor"]) if "cursor" in params else None
    ids = {key: _session_id(params[key], key) for key in ("session_id", "parent_session_id") if key in params}
    key = params.get("api_key_public_id") or None
    if key is not None and "\x00" in key:  # a key id is plain text (a tag's value is stored escaped: any will do)
        raise InvalidRequest.at("api_key_public_id", "must not contain U+0000")
    return SessionListing(limit, before, key, params.get("user") or None, **ids)


def _session_id(value: str, field: str) -> str:
    if not value or len(value) > MAX_SESSION_ID_CHARS:
        raise InvalidRequest.at(field, f"expected 1 to {MAX_SESSION_ID_CHARS} characters")
    return value


def encode_cursor(row: SessionRow) -> str:
    """The cursor of the page that follows `row` (opaque to clients: base64url of its sort key)."""
    key = orjson.dumps([row.last_seen.isoformat(), row.session_id])
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[dt.datetime, str]:
    try:
        at, session_id = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        when = dt.datetime.fromisoformat(at)
        if not isinstance(session_id, str) or when.tzinfo is None:
            raise ValueError("not a session cursor")
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise InvalidRequest.at("cursor", "malformed cursor: pass a page's next_cursor as it is") from None
    return when, session_id


def session_json(row: SessionRow) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "parent_session_id": row.parent_session_id,
        "first_seen": row.first_seen.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "last_seen": row.last_seen.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "inference_count": row.inference_count,
        "failed_inference_count": row.failed_inference_count,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cost": float(row.cost) if row.cost is not None else None,
        "priced_inference_count": row.priced_count,
        "processing_time_ms": row.processing_time_ms_sum,
        "models": row.models,
        "api_key_public_ids": row.api_key_public_ids,
        "users": row.users,
    }


async def list_sessions(database: Database, listing: SessionListing) -> dict[str, Any]:
    """`{"sessions": [...], "next_cursor": str | null}`, newest activity first."""
    rows = await store.list_sessions(
        database,
        limit=listing.limit,
        before=listing.before,
        api_key_public_id=listing.api_key_public_id,
        user=listing.user,
        session_id=listing.session_id,
        parent_session_id=listing.parent_session_id,
    )
    next_cursor = encode_cursor(rows[-1]) if len(rows) == listing.limit else None
    return {"sessions": [session_json(r) for r in rows], "next_cursor": next_cursor}


async def get_session(database: Database, session_id: str) -> dict[str, Any]:
    """One session's totals, its subagents' sessions (`subsessions`, oldest first) and the sum of both
    (`with_subsessions`); NotFound when it has none."""
    row = await store.get_session(database, _session_id(session_id, "session_id"))
    if row is None:
        raise NotFound(f"unknown session {session_id!r} (or not counted yet)", field="session_id")
    children = await store.subsessions(database, session_id)
    return {
        **session_json(row),
        "subsessions": [session_json(c) for c in children],
        "with_subsessions": with_subsessions(row, children),
    }


def with_subsessions(row: SessionRow, children: Sequence[SessionRow]) -> dict[str, Any]:
    """A session's totals with its subagents' added: what an opencode session cost in all (one level down, as
    `subsessions` lists them)."""
    rows = (row, *children)
    priced = [r.cost for r in rows if r.cost is not None]
    return {
        "inference_count": sum(r.inference_count for r in rows),
        "failed_inference_count": sum(r.failed_inference_count for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cost": float(sum(priced)) if priced else None,
        "priced_inference_count": sum(r.priced_count for r in rows),
    }
