"""`POST /inference`: parse the TensorZero-shaped body, run the engine, answer in TensorZero's shape."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.errors import InvalidRequest
from lsd.inference.request import parse_inference_request
from lsd.inference.run import InferenceResult, block_to_json


def result_to_json(result: InferenceResult) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inference_id": str(result.inference_id),
        "episode_id": str(result.episode_id),
        "variant_name": result.variant_name,
    }
    if result.output is not None:
        body["output"] = {"raw": result.output.raw, "parsed": result.output.parsed}
    else:
        body["content"] = [_output_block(b) for b in result.content]
    body["usage"] = {
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost": result.cost,
    }
    if result.finish_reason is not None:
        body["finish_reason"] = result.finish_reason
    if result.original_response is not None:
        body["original_response"] = result.original_response
    return body


def _output_block(block: Any) -> dict[str, Any]:
    if block.type == "tool_call":
        return {
            "type": "tool_call",
            "id": block.id,
            "name": block.name,
            "arguments": _parsed_arguments(block.arguments),
            "raw_name": block.name,
            "raw_arguments": block.arguments,
        }
    return block_to_json(block)


def _parsed_arguments(raw: str) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def inference(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["config"].gateway.max_body_bytes)
    parsed = parse_inference_request(body)
    if parsed.stream:
        raise InvalidRequest("stream: streaming responses are not available yet", field="stream")
    result = await state["engine"].infer(parsed)
    return Response(json_response_bytes(result_to_json(result)), media_type="application/json")
