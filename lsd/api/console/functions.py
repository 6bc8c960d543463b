"""The functions page and one function's page: its variants' traffic share, metrics with 95 % intervals,
latency and cost, from the statistics tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.charts import bar_chart
from lsd.api.console.page import RANGES, services, time_range
from lsd.api.console.render import render
from lsd.config.evaluations import metric_name as evaluator_metric
from lsd.errors import UnknownFunction
from lsd.evaluations.summary import Z_95
from lsd.store import console


@dataclass(frozen=True, slots=True)
class MetricInterval:
    """One metric of one variant: mean and its 95 % interval (Wilson for boolean metrics, normal for float)."""

    metric_name: str
    variant_name: str
    n: int
    mean: float
    low: float | None
    high: float | None


def interval(row: console.VariantMetric, boolean: bool) -> MetricInterval:
    n, mean = row.feedback_count, row.mean
    if boolean:
        z2 = Z_95 * Z_95
        centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
        half = Z_95 * math.sqrt(max(mean * (1 - mean), 0.0) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return MetricInterval(
            row.metric_name, row.variant_name, n, mean, max(0.0, centre - half), min(1.0, centre + half)
        )
    if row.variance is None:
        return MetricInterval(row.metric_name, row.variant_name, n, mean, None, None)
    half = Z_95 * math.sqrt(row.variance / n)
    return MetricInterval(row.metric_name, row.variant_name, n, mean, mean - half, mean + half)


async def functions(request: Request[Any], viewer: Viewer) -> Response:
    span = time_range(request)
    rt = services(request)
    traffic = {t.label: t for t in await console.traffic_by(rt.database, "function_name", span.since, span.until)}
    names = sorted(set(rt.config.functions) | set(traffic))
    rows = [(name, rt.config.functions.get(name), traffic.get(name)) for name in names]
    return render(request, "functions.html", viewer, span=span, ranges=list(RANGES), rows=rows)


async def function(request: Request[Any], viewer: Viewer) -> Response:
    name = request.path_params["name"]
    span = time_range(request)
    rt = services(request)
    config = rt.config.functions.get(name)
    totals = {v.variant_name: v for v in await console.variant_totals(rt.database, name)}
    if config is None and not totals:
        raise UnknownFunction(name)
    traffic = {t.label: t for t in await console.traffic_by(rt.database, "variant_name", span.since, span.until, name)}
    in_range = sum(t.inferences for t in traffic.values())
    variant_names = sorted(set(config.variants if config else ()) | set(totals) | set(traffic))
    variants = [
        {
            "name": v,
            "config": config.variants.get(v) if config else None,
            "totals": totals.get(v),
            "traffic": traffic.get(v),
            "share": (traffic[v].inferences / in_range) if in_range and v in traffic else None,
        }
        for v in variant_names
    ]
    metric_types = {m: c.type for m, c in rt.config.metrics.items()}
    for evaluation in rt.config.evaluations.values():  # the metrics `lsd evaluate` records its evaluators under
        for evaluator in evaluation.evaluators.values():
            metric_types[evaluator_metric(evaluation.name, evaluator.name)] = evaluator.output_type
    metrics = [
        interval(row, metric_types.get(row.metric_name) == "boolean")
        for row in await console.variant_metrics(rt.database, name)
    ]
    share = bar_chart("Traffic share in range", [(v, float(t.inferences)) for v, t in sorted(traffic.items())])
    return render(
        request,
        "function.html",
        viewer,
        name=name,
        config=config,
        span=span,
        ranges=list(RANGES),
        variants=variants,
        metrics=metrics,
        share=share,
        experiment=config.experimentation if config else None,
        allocation=await console.experiment_allocation(rt.database, name),
    )
