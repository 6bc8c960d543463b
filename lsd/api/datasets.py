"""`/v1/datasets/...`: datapoints of a dataset — create, update, rename, delete, list, get, from inferences."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes, read_json
from lsd.api.datasets_wire import datapoints_json, deleted_json, ids_json
from lsd.api.state import AppState
from lsd.datasets.requests import parse_dataset_name


def _json(value: Any) -> Response:
    return Response(json_response_bytes(value), media_type="application/json")


def _dataset(request: Request[AppState]) -> str:
    return parse_dataset_name(request.path_params["dataset_name"])


async def _body(request: Request[AppState]) -> Any:
    return await read_json(request, request.state["services"].config.gateway.max_body_bytes)


async def create_datapoints(request: Request[AppState]) -> Response:
    dataset = _dataset(request)
    return _json(ids_json(await request.state["services"].datasets.create(dataset, await _body(request))))


async def update_datapoints(request: Request[AppState]) -> Response:
    dataset = _dataset(request)
    return _json(ids_json(await request.state["services"].datasets.update(dataset, await _body(request))))


async def update_metadata(request: Request[AppState]) -> Response:
    dataset = _dataset(request)
    return _json(ids_json(await request.state["services"].datasets.rename(dataset, await _body(request))))


async def delete_datapoints(request: Request[AppState]) -> Response:
    dataset = _dataset(request)
    return _json(deleted_json(await request.state["services"].datasets.delete(dataset, await _body(request))))


async def delete_dataset(request: Request[AppState]) -> Response:
    return _json(deleted_json(await request.state["services"].datasets.delete_dataset(_dataset(request))))


async def list_datapoints(request: Request[AppState]) -> Response:
    dataset = _dataset(request)
    return _json(datapoints_json(await request.state["services"].datasets.list_page(dataset, await _body(request))))


async def get_datapoints(request: Request[AppState]) -> Response:
    """With or without the dataset in the path (TensorZero's client sends both)."""
    dataset = _dataset(request) if "dataset_name" in request.path_params else None
    return _json(datapoints_json(await request.state["services"].datasets.get(dataset, await _body(request))))


async def from_inferences(request: Request[AppState]) -> Response:
    services = request.state["services"]
    dataset = _dataset(request)
    ids = await services.datasets.from_inferences(dataset, await _body(request), services.config.metrics)
    return _json(ids_json(ids))
