"""The observability rows LSD writes, one frozen dataclass per table; field names are the column names.

The domain builds these (ids and timestamps included); the store writes them as given.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from lsd.immutable import immutable

Json = Any


# lsd.inference.recording builds ChatInferenceRecord and JsonInferenceRecord by position (one call, on the event loop
# for every inference): both keep the same field order, output_schema/tool_params eighth; add new fields at the end.
@immutable
class ChatInferenceRecord:
    TABLE: ClassVar[str] = "chat_inferences"
    id: UUID
    created_at: datetime
    function_name: str
    variant_name: str
    episode_id: UUID
    input: Json
    output: Json
    tool_params: Json | None
    inference_params: Json
    tags: Json
    processing_time_ms: int | None
    ttft_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None  # numeric column: exact sums
    finish_reason: str | None
    cached: bool
    config_hash: str | None
    api_key_public_id: str | None
    cache_read_input_tokens: int | None = None  # parts of input_tokens (0008_cache_tokens.sql)
    cache_write_input_tokens: int | None = None
    # The paths in `input` whose string is stored in input_strings, its key in its place (0020_input_strings.sql)
    input_refs: list[str] | None = None


@immutable
class JsonInferenceRecord:
    TABLE: ClassVar[str] = "json_inferences"
    id: UUID
    created_at: datetime
    function_name: str
    variant_name: str
    episode_id: UUID
    input: Json
    output: Json
    output_schema: Json | None
    inference_params: Json
    tags: Json
    processing_time_ms: int | None
    ttft_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None  # numeric column: exact sums
    finish_reason: str | None
    cached: bool
    config_hash: str | None
    api_key_public_id: str | None
    cache_read_input_tokens: int | None = None  # parts of input_tokens (0008_cache_tokens.sql)
    cache_write_input_tokens: int | None = None
    input_refs: list[str] | None = None  # as ChatInferenceRecord's


@immutable
class ChatInferenceDataRecord:
    TABLE: ClassVar[str] = "chat_inference_data"
    inference_id: UUID
    created_at: datetime
    rendered_input: Json | None
    extra_body: Json | None
    extra_headers: Json | None
    original_response: str | None
    # Stored once (0012_payload_once.sql): the copy is left out (NULL) when it can be rebuilt, and the flag says so.
    rendered_input_is_input: bool = False  # rendered_input was {"system": input.system, "messages": input.messages}
    original_response_is_raw: bool = False  # original_response was the successful attempt's raw_response


@immutable
class JsonInferenceDataRecord:
    TABLE: ClassVar[str] = "json_inference_data"
    inference_id: UUID
    created_at: datetime
    rendered_input: Json | None
    extra_body: Json | None
    extra_headers: Json | None
    original_response: str | None
    # Stored once (0012_payload_once.sql): the copy is left out (NULL) when it can be rebuilt, and the flag says so.
    rendered_input_is_input: bool = False  # rendered_input was {"system": input.system, "messages": input.messages}
    original_response_is_raw: bool = False  # original_response was the successful attempt's raw_response


# Built by position too (lsd.inference.recording.attempt_records), as is ModelInferenceDataRecord: new fields last.
@immutable
class ModelInferenceRecord:
    TABLE: ClassVar[str] = "model_inferences"
    id: UUID
    created_at: datetime
    inference_id: UUID
    inference_kind: str
    attempt: int
    function_name: str | None
    variant_name: str | None
    model_name: str
    model_provider_name: str
    provider_type: str
    status: str
    error_kind: str | None
    error: str | None
    latency_ms: int | None
    ttft_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None  # numeric column: exact sums
    finish_reason: str | None
    cached: bool
    streamed: bool
    cache_read_input_tokens: int | None = None  # parts of input_tokens (0008_cache_tokens.sql)
    cache_write_input_tokens: int | None = None
    tags: Json | None = None  # an unanswered inference's tags: it has no inference row (0019_failed_tags.sql)


@immutable
class ModelInferenceDataRecord:
    TABLE: ClassVar[str] = "model_inference_data"
    model_inference_id: UUID
    created_at: datetime
    inference_id: UUID
    raw_request: str | None
    raw_response: str | None
    request_headers: Json | None
    api_key_sha256: str | None
    # raw_request/raw_response hold references to the inference's input/output texts (0012_payload_once.sql)
    payload_refs: bool = False


@immutable
class EmbeddingInferenceRecord:
    TABLE: ClassVar[str] = "embedding_inferences"
    id: UUID
    created_at: datetime
    embedding_model_name: str
    model_provider_name: str | None
    input: Json
    num_inputs: int
    dimensions: int | None
    embeddings: Json | None
    tags: Json
    processing_time_ms: int | None
    input_tokens: int | None
    cost: Decimal | None  # numeric column: exact sums
    cached: bool
    config_hash: str | None
    api_key_public_id: str | None


@immutable
class BooleanMetricFeedbackRecord:
    TABLE: ClassVar[str] = "boolean_metric_feedback"
    id: UUID
    created_at: datetime
    target_id: UUID
    target_level: str
    metric_name: str
    value: bool
    tags: Json
    api_key_public_id: str | None


@immutable
class FloatMetricFeedbackRecord:
    TABLE: ClassVar[str] = "float_metric_feedback"
    id: UUID
    created_at: datetime
    target_id: UUID
    target_level: str
    metric_name: str
    value: float
    tags: Json
    api_key_public_id: str | None


@immutable
class CommentFeedbackRecord:
    TABLE: ClassVar[str] = "comment_feedback"
    id: UUID
    created_at: datetime
    target_id: UUID
    target_level: str
    value: str
    tags: Json
    api_key_public_id: str | None


@immutable
class DemonstrationFeedbackRecord:
    TABLE: ClassVar[str] = "demonstration_feedback"
    id: UUID
    created_at: datetime
    inference_id: UUID
    value: Json
    tags: Json
    api_key_public_id: str | None


@immutable
class InputStringRecord:
    """A long string of an inference's input, stored once a day (0020_input_strings.sql, lsd.store.input_strings)."""

    TABLE: ClassVar[str] = "input_strings"
    hash: UUID  # the first 16 bytes of the string's SHA-256 (UTF-8)
    inference_id: UUID  # the first inference of the day to refer to it: its partition
    value: str


Record = (
    EmbeddingInferenceRecord
    | ChatInferenceRecord
    | JsonInferenceRecord
    | ChatInferenceDataRecord
    | JsonInferenceDataRecord
    | ModelInferenceRecord
    | ModelInferenceDataRecord
    | BooleanMetricFeedbackRecord
    | FloatMetricFeedbackRecord
    | CommentFeedbackRecord
    | DemonstrationFeedbackRecord
    | InputStringRecord
)
