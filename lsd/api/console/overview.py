"""The overview page: traffic, errors, tokens, cost and latency over time, per function and per model provider."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.charts import Series, bar_chart, line_chart
from lsd.api.console.page import RANGES, services, time_range
from lsd.api.console.render import render
from lsd.store import console


async def overview(request: Request[Any], viewer: Viewer) -> Response:
    span = time_range(request)
    database = services(request).database
    traffic = await console.traffic_series(database, span.since, span.until, span.step)
    latency = await console.latency_series(database, span.since, span.until, span.step)
    functions = await console.traffic_by(database, "function_name", span.since, span.until)
    providers = await console.providers(database, span.since, span.until)
    labels = [p.label for p in traffic]
    latency_labels = [p.label for p in latency]
    totals = {
        "inferences": sum(p.inferences for p in traffic),
        "failed_attempts": sum(p.failed_attempts for p in traffic),
        "input_tokens": sum(p.input_tokens for p in traffic),
        "output_tokens": sum(p.output_tokens for p in traffic),
        "cost": sum(p.cost for p in traffic),
    }
    charts = [
        line_chart(
            "Inferences and failed attempts",
            labels,
            [
                Series("inferences", [p.inferences for p in traffic]),
                Series("failed attempts", [p.failed_attempts for p in traffic]),
            ],
        ),
        line_chart(
            "Tokens",
            labels,
            [
                Series("input", [p.input_tokens for p in traffic]),
                Series("output", [p.output_tokens for p in traffic]),
            ],
        ),
        line_chart("Cost", labels, [Series("cost ($)", [p.cost for p in traffic])]),
        line_chart(
            "Provider latency (successful attempts)",
            latency_labels,
            [Series("p50", [p.p50_ms for p in latency]), Series("p99", [p.p99_ms for p in latency])],
            unit=" ms",
        ),
        bar_chart("Inferences per function", [(f.label, float(f.inferences)) for f in functions]),
    ]
    return render(
        request,
        "overview.html",
        viewer,
        span=span,
        ranges=list(RANGES),
        totals=totals,
        charts=charts,
        functions=functions,
        providers=providers,
    )
