"""Workflow evaluation runs: `POST /workflow_evaluation_run`, `POST /workflow_evaluation_run/{run_id}/episode`
(and TensorZero's older `/dynamic_evaluation_run` paths), and LSD's read of a run with its feedback."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.state import AppState
from lsd.api.workflow_wire import episode_json, parse_episode_request, parse_run_request, run_detail_json, run_json
from lsd.inference.request import parse_uuid


def _json(value: Any) -> Response:
    return Response(json_response_bytes(value), media_type="application/json")


async def create_run(request: Request[AppState]) -> Response:
    services = request.state["services"]
    body = await read_json(request, services.config.gateway.max_body_bytes)
    return _json(run_json(await services.workflow_runs.create_run(parse_run_request(body))))


async def create_episode(request: Request[AppState]) -> Response:
    services = request.state["services"]
    run_id = parse_uuid(request.path_params["run_id"], "run_id")
    body = await read_json(request, services.config.gateway.max_body_bytes)
    episode_id = await services.workflow_runs.create_episode(run_id, parse_episode_request(body))
    return _json(episode_json(episode_id))


async def get_run(request: Request[AppState]) -> Response:
    run_id = parse_uuid(request.path_params["run_id"], "run_id")
    return _json(run_detail_json(await request.state["services"].workflow_runs.detail(run_id)))
