"""`GET /v1/functions/{function_name}/experiment`: the function's experiment as this replica samples it."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.body import json_response_bytes
from lsd.api.state import AppState
from lsd.errors import UnknownFunction
from lsd.inference.experiment import ExperimentReport, report


async def show(request: Request[AppState]) -> Response:
    services = request.state["services"]
    name = request.path_params["function_name"]
    function = services.config.functions.get(name)
    if function is None:
        raise UnknownFunction(name, field=None)
    found = report(function, services.config.metrics, services.engine.allocations.get(name))
    return Response(json_response_bytes(report_json(found)), media_type="application/json")


def report_json(r: ExperimentReport) -> dict[str, Any]:
    """The report's wire shape (also what `lsd experiments show --json` prints)."""
    e = r.experiment
    body: dict[str, Any] = {
        "function_name": r.function_name,
        "type": r.type,
        "source": r.source,
        "candidate_variants": list(r.candidates),
        "fallback_variants": list(r.fallbacks),
        "weights": dict(r.weights),
        "phase": r.phase,
        "stopped": r.stopped,
        "winner": r.winner,
        "stopped_at": r.stopped_at.isoformat() if r.stopped_at else None,
        "updated_at": r.updated_at.isoformat() if r.updated_at else None,
    }
    if r.type == "adaptive" and e is not None:
        body["metric"] = {
            "name": e.metric,
            "type": r.metric.type if r.metric else None,
            "optimize": r.metric.optimize if r.metric else None,
            "level": r.metric.level if r.metric else None,
        }
        body["parameters"] = {
            "delta": e.delta,
            "epsilon": e.epsilon,
            "min_prob": e.min_prob,
            "min_samples_per_variant": e.min_samples_per_variant,
            "update_period_s": e.update_period_s,
        }
        body["evidence"] = {
            name: {
                "count": v.count,
                "mean": v.mean,
                "lower": v.lower,
                "upper": v.upper,
                "eliminated": v.eliminated,
                "p_best": v.p_best,
            }
            for name, v in r.evidence.items()
        }
    return body
