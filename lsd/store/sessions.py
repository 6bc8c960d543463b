"""Agent sessions' totals (session_statistics, sql/migrations/0018_session_statistics.sql): newest first, one, and a
session's subagents. Every read is an index read with a LIMIT; the statistics refresh keeps the table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from decimal import Decimal
from uuid import UUID

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lsd.store.database import Database
from lsd.store.escaping import escape_text, needs_escape, unescape_optional, unescape_text
from lsd.store.list_query import uuid7_floor_ms

MAX_CHILDREN = 200
SESSION_TAG = "lsd::session_id"  # what makes an inference a session's (the refresh's SQL names it too)
MARGIN = dt.timedelta(minutes=1)  # around a session's first and last inference: its inferences' and attempts' ids
_COLUMNS = (
    "session_id, parent_session_id, first_seen, last_seen, inference_count, input_tokens, output_tokens, "
    "CASE WHEN priced_count > 0 THEN cost END AS cost, priced_count, processing_time_ms_sum, models, "
    "api_key_public_ids, users, failed_inference_count"
)


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session's totals over its inferences (chat and json) that the statistics refresh has folded in."""

    session_id: str
    parent_session_id: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime
    inference_count: int
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # None: no inference of it had a cost (unknown, not free)
    priced_count: int
    processing_time_ms_sum: int
    models: list[str]
    api_key_public_ids: list[str]
    users: list[str]  # the tag `user` (the body's `user`; Open WebUI's forwarded user id)
    # inferences with no whole answer: every attempt failed, the client left first, or the provider cut the stream
    failed_inference_count: int


@dataclass(frozen=True, slots=True)
class FailedRow:
    """An inference of a session that got no answer: its first attempt."""

    inference_id: UUID
    created_at: dt.datetime
    function_name: str | None
    variant_name: str | None
    model_name: str
    error_kind: str | None


async def list_sessions(
    database: Database,
    *,
    limit: int,
    before: tuple[dt.datetime, str] | None = None,
    api_key_public_id: str | None = None,
    user: str | None = None,
    session_id: str | None = None,
    parent_session_id: str | None = None,
    purpose: str = "query",
) -> list[SessionRow]:
    """Sessions by their latest inference, newest first; `before` is the (last_seen, session_id) a page ended at.
    Filters: one key's or one user's (their sessions by a GIN index, then sorted), one session, one session's
    subagents'."""
    where: list[str] = []
    params: list[object] = []
    if before is not None:
        where.append("(last_seen, session_id) < (%s, %s)")
        params.extend((before[0], escape_text(before[1])))
    if api_key_public_id is not None:
        where.append("api_key_public_ids @> ARRAY[%s]::text[]")
        params.append(api_key_public_id)
    if user is not None:
        where.append("users @> ARRAY[%s]::text[]")
        params.append(escape_text(user))
    if session_id is not None:
        where.append("session_id = %s")
        params.append(escape_text(session_id))
    if parent_session_id is not None:
        where.append("parent_session_id = %s")
        params.append(escape_text(parent_session_id))
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    statement = (
        f"SELECT {_COLUMNS} FROM session_statistics {condition}ORDER BY last_seen DESC, session_id DESC LIMIT %s"
    )
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(statement, (*params, limit))
        return [_unescaped(r) for r in await cur.fetchall()]


async def get_session(database: Database, session_id: str, *, purpose: str = "query") -> SessionRow | None:
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM session_statistics WHERE session_id = %s", (escape_text(session_id),)
        )
        row = await cur.fetchone()
        return None if row is None else _unescaped(row)


async def subsessions(database: Database, session_id: str, *, purpose: str = "query") -> list[SessionRow]:
    """The sessions whose parent is `session_id` (its subagents'), oldest first, at most MAX_CHILDREN."""
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM session_statistics WHERE parent_session_id = %s "
            "ORDER BY first_seen, session_id LIMIT %s",
            (escape_text(session_id), MAX_CHILDREN),
        )
        return [_unescaped(r) for r in await cur.fetchall()]


async def failed_inferences(
    database: Database, session: SessionRow, *, limit: int, purpose: str = "query"
) -> list[FailedRow]:
    """A session's inferences that got no answer, oldest first: the first attempt of each, found by the session's
    tag through the index of the attempts that hold tags, within its first and last inference."""
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(FailedRow)) as cur:
        await cur.execute(
            "SELECT inference_id, created_at, function_name, variant_name, model_name, error_kind "
            "FROM model_inferences WHERE tags IS NOT NULL AND tags @> %s AND attempt = 1 AND id >= %s AND id < %s "
            "ORDER BY id LIMIT %s",
            (
                Jsonb({SESSION_TAG: session.session_id}),
                uuid7_floor_ms(_ms(session.first_seen - MARGIN)),
                uuid7_floor_ms(_ms(session.last_seen + MARGIN)),
                limit,
            ),
        )
        return await cur.fetchall()


def _unescaped(row: SessionRow) -> SessionRow:
    """A row's ids as the client sent them: tag values are stored escaped (lsd.store.escaping), and so are the ids
    the refresh copies from them."""
    if not any(needs_escape(t) for t in (row.session_id, row.parent_session_id or "", *row.users)):
        return row
    return replace(
        row,
        session_id=unescape_text(row.session_id),
        parent_session_id=unescape_optional(row.parent_session_id),
        users=[unescape_text(u) for u in row.users],
    )


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)
