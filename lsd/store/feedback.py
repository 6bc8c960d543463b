"""Feedback targets in the database: does an inference or an episode exist, and what is it."""

from __future__ import annotations

from uuid import UUID

from lsd.store.database import Database
from lsd.store.recent import InferenceTarget

# `id = %s` prunes to the one daily partition the UUIDv7 falls in.
_INFERENCE = (
    "SELECT function_name, 'chat', variant_name, episode_id FROM chat_inferences WHERE id = %(id)s "
    "UNION ALL SELECT function_name, 'json', variant_name, episode_id FROM json_inferences WHERE id = %(id)s "
    "LIMIT 1"
)
_EPISODE = (
    "SELECT EXISTS (SELECT 1 FROM chat_inferences WHERE episode_id = %(id)s) "
    "OR EXISTS (SELECT 1 FROM json_inferences WHERE episode_id = %(id)s)"
)


async def find_inference(database: Database, inference_id: UUID) -> InferenceTarget | None:
    """The inference with this id, if recorded. Raises DatabaseUnavailable when PostgreSQL cannot answer."""
    async with database.connection("feedback") as conn:
        cur = await conn.execute(_INFERENCE, {"id": inference_id}, prepare=database.prepare)
        row = await cur.fetchone()
    return InferenceTarget(inference_id, row[0], row[1], row[2], row[3]) if row else None


async def episode_exists(database: Database, episode_id: UUID) -> bool:
    """Whether an inference of this episode is recorded. Raises DatabaseUnavailable when PostgreSQL cannot answer."""
    async with database.connection("feedback") as conn:
        cur = await conn.execute(_EPISODE, {"id": episode_id}, prepare=database.prepare)
        row = await cur.fetchone()
    return bool(row and row[0])
