"""Stored inferences read back as conversations to continue (the Responses API's `previous_response_id`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lsd.store.database import Database

# `id = %s` prunes to the one daily partition the UUIDv7 falls in. Read from the primary: a follow-up comes
# right after its previous response, faster than a replica may catch up.
_CONVERSATION = (
    "SELECT 'chat', episode_id, lsd_input(input, input_refs, id), output, tags, api_key_public_id "
    "FROM chat_inferences WHERE id = %(id)s "
    "UNION ALL SELECT 'json', episode_id, lsd_input(input, input_refs, id), output, tags, api_key_public_id "
    "FROM json_inferences WHERE id = %(id)s "
    "LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class StoredConversation:
    """An inference's input and output as stored (lsd.inference.recording's JSON), its kind (chat or json) and
    episode, its tags and the public id of the API key that made it (None without gateway auth)."""

    kind: str
    episode_id: UUID
    input: Any
    output: Any
    tags: dict[str, str]
    api_key_public_id: str | None


async def find_conversation(database: Database, inference_id: UUID) -> StoredConversation | None:
    """The inference with this id, if its rows are committed. Raises DatabaseUnavailable when PostgreSQL cannot
    answer."""
    async with database.connection("query") as conn:
        cur = await conn.execute(_CONVERSATION, {"id": inference_id}, prepare=database.prepare)
        row = await cur.fetchone()
    return StoredConversation(*row) if row else None
