"""Parsing of `[metrics.NAME]`: the feedback signals a deployment collects."""

from __future__ import annotations

from lsd.config.model import MetricConfig
from lsd.config.reader import Table

RESERVED_METRICS = ("comment", "demonstration")


def metric_from(name: str, t: Table) -> MetricConfig:
    if name in RESERVED_METRICS:
        t.error("", f"{name!r} is a built-in metric and cannot be configured")
    metric = MetricConfig(
        name=name,
        type=t.choice("type", ("boolean", "float"), "boolean", required=True),
        optimize=t.choice("optimize", ("max", "min"), "max", required=True),
        level=t.choice("level", ("inference", "episode"), "inference", required=True),
        description=t.str("description"),
    )
    t.finish()
    return metric
