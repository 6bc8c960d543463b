"""The rows of the writer benchmark: chat inferences as lsd records one successful call to an OpenAI model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from lsd.ids import uuid7
from lsd.records import (
    ChatInferenceDataRecord,
    ChatInferenceRecord,
    ModelInferenceDataRecord,
    ModelInferenceRecord,
    Record,
)

Group = Sequence[Record]  # the rows of one inference, submitted together


def make_inferences(count: int) -> list[Group]:
    """`count` chat inferences as lsd records them for one successful call to an OpenAI model: an inference,
    its payloads, one provider attempt and the attempt's raw request and response."""
    groups: list[Group] = []
    for i in range(count):
        inference_id = uuid7()
        attempt_id = uuid7()
        now = datetime.now(tz=UTC)
        text = f"hi {i}"
        answer = f"echo: {text}"
        raw_request = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
        raw_response = orjson.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(now.timestamp()),
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
                "system_fingerprint": "fp_fake",
            }
        ).decode()
        groups.append(
            (
                ChatInferenceRecord(
                    id=inference_id,
                    created_at=now,
                    function_name="tensorzero::default",
                    variant_name="gpt",
                    episode_id=uuid7(),
                    input={"messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
                    output=[{"type": "text", "text": answer}],
                    tool_params=None,
                    inference_params={"chat_completion": {}},
                    tags={},
                    processing_time_ms=3,
                    ttft_ms=None,
                    input_tokens=2,
                    output_tokens=3,
                    cost=Decimal("0.0000021"),
                    finish_reason="stop",
                    cached=False,
                    config_hash="4f2c9a0b7d1e",
                    api_key_public_id=None,
                ),
                ChatInferenceDataRecord(
                    inference_id=inference_id,
                    created_at=now,
                    rendered_input={"messages": [{"role": "user", "content": text}]},
                    extra_body=None,
                    extra_headers=None,
                    original_response=raw_response,
                ),
                ModelInferenceRecord(
                    id=attempt_id,
                    created_at=now,
                    inference_id=inference_id,
                    inference_kind="chat",
                    attempt=1,
                    function_name="tensorzero::default",
                    variant_name="gpt",
                    model_name="gpt",
                    model_provider_name="fake",
                    provider_type="openai",
                    status="ok",
                    error_kind=None,
                    error=None,
                    latency_ms=2,
                    ttft_ms=None,
                    input_tokens=2,
                    output_tokens=3,
                    cost=Decimal("0.0000021"),
                    finish_reason="stop",
                    cached=False,
                    streamed=False,
                ),
                ModelInferenceDataRecord(
                    model_inference_id=attempt_id,
                    created_at=now,
                    inference_id=inference_id,
                    raw_request=raw_request.decode(),
                    raw_response=raw_response,
                    request_headers={"content-type": "application/json", "authorization": "[REDACTED]"},
                    api_key_sha256=None,
                ),
            )
        )
    return groups
