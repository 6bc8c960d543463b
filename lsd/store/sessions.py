"""Agent sessions' totals (session_statistics, sql/migrations/0018_session_statistics.sql): newest first, one, and a
session's subagents. Every read is an index read with a LIMIT; the statistics refresh keeps the table."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from psycopg.rows import class_row

from lsd.store.database import Database

MAX_CHILDREN = 200
_COLUMNS = (
    "session_id, parent_session_id, first_seen, last_seen, inference_count, input_tokens, output_tokens, "
    "CASE WHEN priced_count > 0 THEN cost END AS cost, priced_count, processing_time_ms_sum, models, "
    "api_key_public_ids"
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


async def list_sessions(
    database: Database,
    *,
    limit: int,
    before: tuple[dt.datetime, str] | None = None,
    api_key_public_id: str | None = None,
    purpose: str = "query",
) -> list[SessionRow]:
    """Sessions by their latest inference, newest first; `before` is the (last_seen, session_id) a page ended at."""
    where: list[str] = []
    params: list[object] = []
    if before is not None:
        where.append("(last_seen, session_id) < (%s, %s)")
        params.extend(before)
    if api_key_public_id is not None:
        where.append("%s = ANY(api_key_public_ids)")
        params.append(api_key_public_id)
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    statement = (
        f"SELECT {_COLUMNS} FROM session_statistics {condition}ORDER BY last_seen DESC, session_id DESC LIMIT %s"
    )
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(statement, (*params, limit))
        return await cur.fetchall()


async def get_session(database: Database, session_id: str, *, purpose: str = "query") -> SessionRow | None:
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM session_statistics WHERE session_id = %s", (session_id,))
        return await cur.fetchone()


async def subsessions(database: Database, session_id: str, *, purpose: str = "query") -> list[SessionRow]:
    """The sessions whose parent is `session_id` (its subagents'), oldest first, at most MAX_CHILDREN."""
    async with database.reading(purpose) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM session_statistics WHERE parent_session_id = %s "
            "ORDER BY first_seen, session_id LIMIT %s",
            (session_id, MAX_CHILDREN),
        )
        return await cur.fetchall()
