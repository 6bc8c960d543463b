"""`/v1/evaluations/*`: human feedback on a run's results, and runs with their per-datapoint results."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.evaluations.service import EvaluationService, parse_human_feedback, parse_run_listing
from lsd.inference.request import parse_uuid


def _service(state: AppState) -> EvaluationService:
    return EvaluationService(database=state["services"].database, recorder=state["services"].writer)


def _json(value: Any) -> Response:
    return Response(json_response_bytes(value), media_type="application/json")


async def human_feedback(request: Request[AppState]) -> Response:
    state = request.state
    body = await read_json(request, state["services"].config.gateway.max_body_bytes)
    feedback_id = await _service(state).human_feedback(parse_human_feedback(body))
    return _json({"feedback_id": str(feedback_id)})


async def list_runs(request: Request[AppState]) -> Response:
    listing = parse_run_listing(dict(request.query_params))
    return _json(await _service(request.state).list_runs(listing))


async def get_run(request: Request[AppState]) -> Response:
    run_id = parse_uuid(request.path_params["run_id"], "run_id")
    return _json(await _service(request.state).run_detail(run_id))
