"""The overview page: traffic, errors, tokens, cost and latency over time, per function and per model provider."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.charts import Series, bar_chart, line_chart
from lsd.api.console.page import RANGES, services, time_range
from lsd.api.console.render import render
from lsd.store import console

HOUR = dt.timedelta(hours=1)


def bucket_labels(since: dt.datetime, until: dt.datetime, step: dt.timedelta) -> list[str]:
    """Every bucket start from `since` to `until`, aligned as the store's date_bin aligns them (ISO)."""
    start = console.EPOCH + (since - console.EPOCH) // step * step
    labels = []
    while start < until:
        labels.append(start.isoformat())
        start += step
    return labels


def filled(labels: list[str], points: dict[str, Any], empty: Any) -> list[Any]:
    """One point per label: a bucket with nothing in it is `empty` (zero traffic), not left out."""
    return [points.get(label, empty) for label in labels]


async def overview(request: Request[Any], viewer: Viewer) -> Response:
    span = time_range(request)
    database = services(request).database
    # Traffic is counted in UTC hours: a step under an hour would draw empty buckets between the hours.
    traffic_step = max(span.step, HOUR)
    labels = bucket_labels(span.since, span.until, traffic_step)
    zero = console.TrafficPoint("", 0, 0, 0, 0, 0.0, None)
    found = await console.traffic_series(database, span.since, span.until, traffic_step)
    traffic = filled(labels, {p.label: p for p in found}, zero)
    latency_labels = bucket_labels(span.since, span.until, span.step)
    measured = await console.latency_series(database, span.since, span.until, span.step)
    none = console.LatencyPoint("", 0, None, None)
    latency = filled(latency_labels, {p.label: p for p in measured}, none)
    firsts = await console.latency_series(database, span.since, span.until, span.step, "ttft")
    ttft = filled(latency_labels, {p.label: p for p in firsts}, none)
    functions = await console.traffic_by(database, "function_name", span.since, span.until)
    providers = await console.providers(database, span.since, span.until)
    totals = {
        "inferences": sum(p.inferences for p in traffic),
        "failed_attempts": sum(p.failed_attempts for p in traffic),
        "input_tokens": sum(p.input_tokens for p in traffic),
        "output_tokens": sum(p.output_tokens for p in traffic),
        "cost": known_sum(p.cost for p in found),  # the buckets with inferences (empty ones spent nothing)
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
        line_chart(
            "Time to first token (streamed attempts)",
            latency_labels,
            [Series("p50", [p.p50_ms for p in ttft]), Series("p99", [p.p99_ms for p in ttft])],
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


def known_sum(values: Iterable[float | None]) -> float | None:
    """The sum of the known values; None when none is known (an unpriced model's cost is unknown, not zero)."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
