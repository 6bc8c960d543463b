"""An inference's payloads as sent and received (rendered input, original response), each stored once.

Since 0012_payload_once.sql the gateway stores the messages sent to the provider only when a template made them
differ from the inference's input, and the provider's original response only in the successful attempt's
`raw_response`; `rendered_input_is_input` / `original_response_is_raw` flag the copies left out. The view
`inference_payloads` rebuilds them; this module is the Python door to it (the console, and anything else that shows
what was sent, reads here). Rows written before 0012 hold their own copies and read back unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lsd.store.database import Database
from lsd.store.escaping import unescape_optional

# `inference_id = ANY(...)`: each id prunes to its daily partition.
_PAYLOADS = """
SELECT inference_id, kind, rendered_input, extra_body, extra_headers, original_response
FROM inference_payloads WHERE inference_id = ANY(%(ids)s)
"""


@dataclass(frozen=True, slots=True)
class InferencePayloads:
    """What one chat or json inference sent and received, as the gateway saw it."""

    inference_id: UUID
    kind: str  # chat | json
    rendered_input: Any  # {"system", "messages"} as sent to the provider, after templates
    extra_body: Any
    extra_headers: Any
    original_response: str | None  # the provider's raw answer (None for streamed inferences)


async def inference_payloads(database: Database, inference_ids: Sequence[UUID]) -> dict[UUID, InferencePayloads]:
    """The payloads of these inferences, by id (ids not recorded are absent). Raises DatabaseUnavailable when
    PostgreSQL cannot answer."""
    if not inference_ids:
        return {}
    async with database.reading("query") as conn:
        cur = await conn.execute(_PAYLOADS, {"ids": list(inference_ids)})
        rows = await cur.fetchall()
    return {
        row[0]: InferencePayloads(row[0], row[1], row[2], row[3], row[4], unescape_optional(row[5])) for row in rows
    }
