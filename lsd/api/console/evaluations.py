"""The evaluation pages: runs, and one run's per-evaluator scores with intervals and per-datapoint results."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.page import services
from lsd.api.console.render import render
from lsd.errors import InvalidRequest, NotFound
from lsd.store import evaluations as store

MAX_RUNS = 100
MAX_DATAPOINTS = 500


async def runs(request: Request[Any], viewer: Viewer) -> Response:
    name = request.query_params.get("evaluation") or None
    found = await store.list_runs(services(request).database, evaluation_name=name, limit=MAX_RUNS)
    return render(request, "evaluations.html", viewer, runs=found, evaluation=name)


async def run(request: Request[Any], viewer: Viewer) -> Response:
    try:
        run_id = UUID(request.path_params["run_id"])
    except ValueError:
        raise InvalidRequest.at("run_id", "invalid UUID") from None
    database = services(request).database
    found = await store.get_run(database, run_id, replica=True)
    if found is None:
        raise NotFound(f"unknown evaluation run {run_id}", field="run_id")
    results = await store.run_results(database, run_id)
    evaluators = sorted({r.evaluator_name for r in results})
    datapoints: dict[str, dict[str, Any]] = {}
    for r in results:
        point = datapoints.setdefault(
            r.datapoint_id,
            {
                "id": r.datapoint_id,
                "inference_id": r.inference_id,
                "input": r.input,
                "output": r.output,
                "reference": r.reference,
                "results": {},
            },
        )
        point["results"][r.evaluator_name] = r
    summary = found.summary if isinstance(found.summary, dict) else {}
    return render(
        request,
        "evaluation.html",
        viewer,
        run=found,
        scores=summary.get("evaluators") or [],
        summary=summary,
        evaluators=evaluators,
        datapoints=list(datapoints.values())[:MAX_DATAPOINTS],
        more=max(len(datapoints) - MAX_DATAPOINTS, 0),
    )
