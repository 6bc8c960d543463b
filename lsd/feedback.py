"""Feedback: metrics, comments and demonstrations attached to inferences and episodes (`POST /feedback`).

When PostgreSQL cannot answer the target check, metric and comment feedback is accepted unchecked (its row goes
through the writer's queue and spool like every row); a demonstration, which needs its inference's function to be
validated and shaped, answers 503 unless this process answered that inference itself (docs/durability.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import jsonschema
import orjson

from lsd.config.model import Config, ToolConfig
from lsd.errors import DatabaseUnavailable, InvalidRequest, LsdError, NotFound, UnknownMetric
from lsd.ids import is_workflow_episode, uuid7
from lsd.records import (
    BooleanMetricFeedbackRecord,
    CommentFeedbackRecord,
    DemonstrationFeedbackRecord,
    FloatMetricFeedbackRecord,
    Record,
)
from lsd.store.database import Database
from lsd.store.feedback import episode_exists, find_inference
from lsd.store.recent import InferenceTarget, RecentInferences
from lsd.store.workflow_evaluations import episode_exists as run_episode_exists
from lsd.telemetry.metrics import Metrics
from lsd.telemetry.tracing import Clock, Tracing

log = logging.getLogger("lsd.feedback")

_FIELDS = frozenset({"metric_name", "inference_id", "episode_id", "value", "tags", "dryrun", "internal"})
# A target made by another replica may still sit in that replica's write queue: look again for this long.
TARGET_WAIT_S = 1.0


class Recorder(Protocol):
    async def record(self, records: Sequence[Record]) -> None: ...


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    metric_name: str
    value: Any
    inference_id: UUID | None = None
    episode_id: UUID | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    dryrun: bool = False
    api_key_public_id: str | None = None  # the verified key's, set by the API layer


def _uuid(value: Any, path: str) -> UUID | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest.at(path, "expected a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequest.at(path, f"invalid UUID {value!r}") from None


def parse_feedback_request(body: Any) -> FeedbackRequest:
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")
    metric = body.get("metric_name")
    if not isinstance(metric, str) or not metric:
        raise InvalidRequest.at("metric_name", "expected a non-empty string")
    if "value" not in body:
        raise InvalidRequest.at("value", "missing required field")
    tags = body["tags"] if body.get("tags") is not None else {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest.at("tags", "expected an object of strings")
    dryrun = body.get("dryrun")
    if dryrun is not None and not isinstance(dryrun, bool):
        raise InvalidRequest.at("dryrun", "expected a boolean")
    return FeedbackRequest(
        metric_name=metric,
        value=body["value"],
        inference_id=_uuid(body.get("inference_id"), "inference_id"),
        episode_id=_uuid(body.get("episode_id"), "episode_id"),
        tags=tags,
        dryrun=bool(dryrun),
    )


@dataclass
class FeedbackService:
    config: Config
    database: Database
    recent: RecentInferences
    recorder: Recorder
    target_wait_s: float = TARGET_WAIT_S
    metrics: Metrics | None = None
    tracing: Tracing | None = None

    async def submit(self, request: FeedbackRequest) -> UUID:
        """Validate, check the target exists, queue the row; return the feedback id."""
        if self.metrics is None and self.tracing is None:
            return await self._submit(request)
        started = time.perf_counter()
        feedback_id: UUID | None = None
        error: str | None = None
        try:
            feedback_id = await self._submit(request)
        except LsdError as exc:
            error = f"{exc.error_code}: {exc}"
            raise
        finally:
            self._observe(request, started, feedback_id, error)
        return feedback_id

    def _observe(self, request: FeedbackRequest, started: float, feedback_id: UUID | None, error: str | None) -> None:
        """Telemetry: the feedback counter and a `feedback` span (the metric name only when it is configured)."""
        known = request.metric_name in ("comment", "demonstration") or request.metric_name in self.config.metrics
        kind = "unknown"
        if known:
            kind = self._metric(request.metric_name)[0]
        if self.metrics is not None:
            self.metrics.observe_feedback(kind, "error" if error else "ok")
        tracing = self.tracing
        if tracing is not None and tracing.is_open:
            clock = Clock()
            attributes: dict[str, Any] = {"lsd.feedback_kind": kind}
            if known:
                attributes["lsd.metric_name"] = request.metric_name
            if feedback_id is not None:
                attributes["lsd.feedback_id"] = str(feedback_id)
            if request.inference_id is not None:
                attributes["lsd.inference_id"] = str(request.inference_id)
            if request.episode_id is not None:
                attributes["lsd.episode_id"] = str(request.episode_id)
            end = clock.ns(time.perf_counter())
            tracing.record_span("feedback", tracing.parent(), clock.ns(started), end, attributes, error=error)

    async def _submit(self, request: FeedbackRequest) -> UUID:
        if not self.config.gateway.observability.enabled:  # nothing would be stored: say so (as TensorZero does)
            raise InvalidRequest(
                "feedback is not accepted while gateway.observability.enabled is false: nothing would be stored"
            )
        kind, level = self._metric(request.metric_name)
        target_id = self._target_id(request, kind, level)
        feedback_id = uuid7()
        created = datetime.fromtimestamp((feedback_id.int >> 80) / 1000, tz=UTC)
        tags = dict(request.tags)
        target_level = "inference" if request.inference_id is not None else "episode"
        key = request.api_key_public_id
        record: Record
        if kind == "boolean":
            if not isinstance(request.value, bool):
                raise InvalidRequest.at("value", f"metric {request.metric_name!r} is boolean: expected true or false")
            await self._require(request)
            record = BooleanMetricFeedbackRecord(
                feedback_id, created, target_id, target_level, request.metric_name, request.value, tags, key
            )
        elif kind == "float":
            value = request.value
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidRequest.at("value", f"metric {request.metric_name!r} is float: expected a finite number")
            await self._require(request)
            record = FloatMetricFeedbackRecord(
                feedback_id, created, target_id, target_level, request.metric_name, float(value), tags, key
            )
        elif kind == "comment":
            if not isinstance(request.value, str):
                raise InvalidRequest.at("value", "a comment is a string")
            await self._require(request)
            record = CommentFeedbackRecord(feedback_id, created, target_id, target_level, request.value, tags, key)
        else:
            target = await self._require(request, needs_target=True)
            assert target is not None
            value = self._demonstration(target, request.value)
            record = DemonstrationFeedbackRecord(feedback_id, created, target_id, value, tags, key)
        if not request.dryrun:
            await self.recorder.record([record])
        return feedback_id

    def _metric(self, name: str) -> tuple[str, str]:
        if name == "comment":
            return "comment", "any"
        if name == "demonstration":
            return "demonstration", "inference"
        metric = self.config.metrics.get(name)
        if metric is None:
            raise UnknownMetric(name)
        return metric.type, metric.level

    def _target_id(self, request: FeedbackRequest, kind: str, level: str) -> UUID:
        if (request.inference_id is None) == (request.episode_id is None):
            raise InvalidRequest.at("inference_id", "exactly one of inference_id and episode_id is required")
        if level == "inference" and request.inference_id is None:
            raise InvalidRequest.at(
                "episode_id", f"metric {request.metric_name!r} is inference-level: send inference_id"
            )
        if level == "episode" and request.episode_id is None:
            raise InvalidRequest.at("inference_id", f"metric {request.metric_name!r} is episode-level: send episode_id")
        target = request.inference_id or request.episode_id
        assert target is not None
        return target

    async def _require(self, request: FeedbackRequest, *, needs_target: bool = False) -> InferenceTarget | None:
        """The target must exist: in this process's recent answers, else in the database (waiting briefly for
        rows another replica has queued). Returns the inference for inference-level feedback.

        When PostgreSQL cannot answer, the target is taken on trust (None) unless `needs_target` (a demonstration
        needs the inference itself): then DatabaseUnavailable propagates (503)."""
        deadline = time.monotonic() + self.target_wait_s
        while True:
            try:
                if request.inference_id is not None:
                    found = self.recent.inference(request.inference_id) or await find_inference(
                        self.database, request.inference_id
                    )
                    if found is not None:
                        return found
                elif request.episode_id is not None and (
                    self.recent.has_episode(request.episode_id)
                    or await episode_exists(self.database, request.episode_id)
                    # a workflow evaluation run's episode exists from its creation, inferences or not
                    or (
                        is_workflow_episode(request.episode_id)
                        and await run_episode_exists(self.database, request.episode_id)
                    )
                ):
                    return None
            except DatabaseUnavailable:
                if needs_target:
                    raise
                log.warning("feedback accepted without checking that its target exists: the database is unavailable")
                return None
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        if request.inference_id is not None:
            raise NotFound(f"unknown inference {request.inference_id}", field="inference_id")
        raise NotFound(f"unknown episode {request.episode_id}", field="episode_id")

    def _demonstration(self, target: InferenceTarget, value: Any) -> Any:
        function = self.config.functions.get(target.function_name)
        if target.function_type == "json":
            schema = function.output_schema if function else None
            if schema:
                error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
                if error is not None:
                    raise InvalidRequest.at("value", f"demonstration does not match the output schema: {error.message}")
            return value
        if isinstance(value, str):
            return [{"type": "text", "text": value}]
        if not isinstance(value, list):
            raise InvalidRequest.at("value", "a chat demonstration is a string or a list of text and tool_call blocks")
        tools = {self.config.tools[t].name: self.config.tools[t] for t in function.tools} if function else {}
        blocks: list[dict[str, Any]] = []
        for i, block in enumerate(value):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                blocks.append({"type": "text", "text": block["text"]})
            elif kind == "tool_call" and isinstance(block.get("name"), str):
                blocks.append(_demonstrated_call(block, tools, f"value[{i}]"))
            else:
                raise InvalidRequest.at(
                    f"value[{i}]", "expected {type: text, text} or {type: tool_call, id, name, arguments}"
                )
        return blocks


def _demonstrated_call(block: Mapping[str, Any], tools: Mapping[str, ToolConfig], path: str) -> dict[str, Any]:
    """A demonstrated tool call as an inference's output holds one (TensorZero's shape: `raw_name` and
    `raw_arguments` beside the checked `name` and `arguments`), once its tool and arguments are checked."""
    name = block["name"]
    tool = tools.get(name)
    if tool is None:
        raise InvalidRequest.at(f"{path}.name", f"unknown tool {name!r} for this function")
    call_id = block.get("id")
    if not isinstance(call_id, str):
        raise InvalidRequest.at(f"{path}.id", "a tool call's id is a string")
    arguments = block.get("arguments")
    if isinstance(arguments, str):  # as a model writes them
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            raise InvalidRequest.at(f"{path}.arguments", "not valid JSON") from None
    if not isinstance(arguments, dict) or not _matches(arguments, tool.parameters):
        raise InvalidRequest.at(f"{path}.arguments", f"do not match the parameters of tool {name!r}")
    raw = orjson.dumps(arguments).decode()
    return {
        "type": "tool_call",
        "id": call_id,
        "name": name,
        "arguments": arguments,
        "raw_name": name,
        "raw_arguments": raw,
    }


def _matches(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether `value` matches `schema` (the draft its `$schema` names, else the latest); an invalid schema matches
    nothing."""
    cls = jsonschema.validators.validator_for(schema)
    try:
        return bool(cls(schema).is_valid(value))
    except jsonschema.SchemaError:
        return False
