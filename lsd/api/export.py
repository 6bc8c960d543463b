"""`POST /v1/inferences/export`: stored inferences streamed as Parquet, CSV or JSON Lines (lsd.export)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from lsd.api.body import read_json
from lsd.api.state import AppState
from lsd.export import MEDIA_TYPES, parse_export_request, stream_inferences


async def export_inferences(request: Request[AppState]) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    query, format = parse_export_request(body)
    chunks = stream_inferences(services.database, query, format)
    # The first chunk before the response starts: a database that cannot answer is a JSON 503, not a cut stream.
    first = await anext(chunks)

    async def rest() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # a client gone mid-stream: the cursor's connection goes back to the pool

    filename = f"inferences.{format}"
    return StreamingResponse(
        rest(), media_type=MEDIA_TYPES[format], headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
