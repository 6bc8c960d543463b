"""The evaluation endpoints' domain: a person's judgement of a run's result, and runs with their results as JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from lsd.errors import InvalidRequest, NotFound
from lsd.evaluations.runner import DATAPOINT_TAG, EVALUATOR_TAG, RUN_TAG, Recorder, feedback_record
from lsd.ids import timestamp_of, uuid7
from lsd.store import evaluations as store
from lsd.store.database import Database

_FIELDS = frozenset({"evaluation_run_id", "datapoint_id", "evaluator_name", "value", "tags"})
DEFAULT_RUNS_LIMIT = 100
MAX_RUNS_LIMIT = 1000
HUMAN_TAG = "lsd::human_feedback"


@dataclass(frozen=True, slots=True)
class HumanFeedbackRequest:
    evaluation_run_id: UUID
    datapoint_id: str
    evaluator_name: str
    value: Any
    tags: Mapping[str, str] = field(default_factory=dict)


def _uuid(value: Any, path: str) -> UUID:
    if not isinstance(value, str):
        raise InvalidRequest.at(path, "expected a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequest.at(path, f"invalid UUID {value!r}") from None


def parse_human_feedback(body: Any) -> HumanFeedbackRequest:
    if not isinstance(body, dict):
        raise InvalidRequest.at("body", "expected a JSON object")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown field")
    for key in ("datapoint_id", "evaluator_name"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise InvalidRequest.at(key, "expected a non-empty string")
    if "value" not in body:
        raise InvalidRequest.at("value", "missing required field")
    tags = body["tags"] if body.get("tags") is not None else {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise InvalidRequest.at("tags", "expected an object of strings")
    for key in tags:
        if key.startswith(("lsd::", "tensorzero::")):
            raise InvalidRequest.at(f"tags.{key}", "tag keys starting with 'lsd::' or 'tensorzero::' are reserved")
    return HumanFeedbackRequest(
        evaluation_run_id=_uuid(body.get("evaluation_run_id"), "evaluation_run_id"),
        datapoint_id=body["datapoint_id"],
        evaluator_name=body["evaluator_name"],
        value=body["value"],
        tags=tags,
    )


@dataclass(frozen=True, slots=True)
class RunListing:
    evaluation_name: str | None = None
    limit: int = DEFAULT_RUNS_LIMIT
    before: UUID | None = None


def parse_run_listing(params: Mapping[str, str]) -> RunListing:
    """Query parameters of `GET /v1/evaluations/runs`: evaluation_name, limit, before (a run id, for paging)."""
    unknown = sorted(set(params) - {"evaluation_name", "limit", "before"})
    if unknown:
        raise InvalidRequest.at(unknown[0], "unknown query parameter")
    limit = DEFAULT_RUNS_LIMIT
    if "limit" in params:
        # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
        if (
            not (params["limit"].isascii() and params["limit"].isdigit())
            or not 1 <= int(params["limit"]) <= MAX_RUNS_LIMIT
        ):
            raise InvalidRequest.at("limit", f"expected an integer from 1 to {MAX_RUNS_LIMIT}")
        limit = int(params["limit"])
    before = _uuid(params["before"], "before") if "before" in params else None
    return RunListing(params.get("evaluation_name") or None, limit, before)


@dataclass
class EvaluationService:
    """Built per request from the app state's database and writer."""

    database: Database
    recorder: Recorder

    async def human_feedback(self, request: HumanFeedbackRequest) -> UUID:
        """Store a person's judgement of one result: it is reused, instead of the judge, by later runs of the same
        evaluation that meet the same datapoint with the same output. Also recorded as metric feedback on the
        evaluated inference (tagged lsd::human_feedback). Returns the feedback id (of both rows)."""
        run = await store.get_run(self.database, request.evaluation_run_id)
        if run is None:
            raise NotFound(f"unknown evaluation run {request.evaluation_run_id}", field="evaluation_run_id")
        evaluator = (run.config.get("evaluators") or {}).get(request.evaluator_name)
        if evaluator is None:
            raise NotFound(
                f"evaluation {run.evaluation_name!r} has no evaluator {request.evaluator_name!r}",
                field="evaluator_name",
            )
        if evaluator.get("type") != "llm_judge":
            raise InvalidRequest.at(
                "evaluator_name", "human feedback applies to llm_judge evaluators (the others are exact)"
            )
        result = await store.find_result(
            self.database, request.evaluation_run_id, request.datapoint_id, request.evaluator_name
        )
        if result is None:
            raise NotFound(f"run {run.id} has no datapoint {request.datapoint_id!r}", field="datapoint_id")
        if result.inference_id is None or result.output_hash is None:
            raise InvalidRequest.at(
                "datapoint_id", "the inference failed for this datapoint: there is no output to judge"
            )
        value = _value(request.value, evaluator.get("output_type"))
        feedback_id = uuid7()
        tags = {
            **request.tags,
            HUMAN_TAG: "true",
            RUN_TAG: str(run.id),
            DATAPOINT_TAG: request.datapoint_id,
            EVALUATOR_TAG: request.evaluator_name,
        }
        row = store.HumanFeedbackRow(
            id=feedback_id,
            created_at=timestamp_of(feedback_id),
            evaluation_run_id=run.id,
            inference_id=result.inference_id,
            metric_name=result.metric_name,
            value=value,
            output=result.output,
            tags=tags,
            datapoint_id=request.datapoint_id,
            evaluator_name=request.evaluator_name,
            output_hash=result.output_hash,
        )
        await store.insert_human_feedback(self.database, row)
        output_type = "boolean" if isinstance(value, bool) else "float"
        await self.recorder.record(
            [feedback_record(result.inference_id, result.metric_name, output_type, value, tags, feedback_id)]
        )
        return feedback_id

    async def list_runs(self, listing: RunListing) -> dict[str, Any]:
        rows = await store.list_runs(
            self.database, evaluation_name=listing.evaluation_name, limit=listing.limit, before=listing.before
        )
        return {"runs": [run_json(r) for r in rows]}

    async def run_detail(self, run_id: UUID) -> dict[str, Any]:
        run = await store.get_run(self.database, run_id, replica=True)
        if run is None:
            raise NotFound(f"unknown evaluation run {run_id}", field="run_id")
        datapoints: dict[str, dict[str, Any]] = {}
        for r in await store.run_results(self.database, run_id):
            point = datapoints.setdefault(
                r.datapoint_id,
                {
                    "datapoint_id": r.datapoint_id,
                    "inference_id": str(r.inference_id) if r.inference_id else None,
                    "input": r.input,
                    "output": r.output,
                    "reference": r.reference,
                    "results": {},
                },
            )
            point["results"][r.evaluator_name] = {
                "metric_name": r.metric_name,
                "value": r.value,
                "source": r.source,
                "error": r.error,
                "feedback_id": str(r.feedback_id) if r.feedback_id else None,
                "evaluator_inference_id": str(r.evaluator_inference_id) if r.evaluator_inference_id else None,
            }
        return {"run": {**run_json(run), "config": run.config}, "datapoints": list(datapoints.values())}


def run_json(run: store.RunRow) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "created_at": run.created_at.isoformat(),
        "evaluation_name": run.evaluation_name,
        "function_name": run.function_name,
        "variant_name": run.variant_name,
        "status": run.status,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "tags": run.tags,
        "summary": run.summary,
    }


def _value(value: Any, output_type: Any) -> bool | float:
    if output_type == "boolean":
        if not isinstance(value, bool):
            raise InvalidRequest.at("value", "the evaluator is boolean: expected true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest.at("value", "the evaluator is float: expected a finite number")
    return float(value)
