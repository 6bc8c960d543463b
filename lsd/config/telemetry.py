"""`[gateway.metrics]` (histogram buckets) and `[gateway.export.otlp.traces]` (span export) from TOML."""

from __future__ import annotations

from typing import Any

from lsd.config.model import (
    DEFAULT_LATENCY_BUCKETS_S,
    DEFAULT_OVERHEAD_BUCKETS_S,
    DEFAULT_TTFT_BUCKETS_S,
    MetricsConfig,
    OtlpTracesConfig,
)
from lsd.config.reader import Table

PROTOCOLS = ("http/protobuf", "grpc")


def metrics_from(t: Table) -> MetricsConfig:
    # TensorZero's name for the overhead histogram's buckets (its `[]` turns the metric off: LSD keeps the default).
    tz_key = "tensorzero_inference_latency_overhead_seconds_buckets"
    overhead_default: tuple[float, ...] = DEFAULT_OVERHEAD_BUCKETS_S
    if t.raw(tz_key) not in (None, []):
        overhead_default = _buckets(t, tz_key, DEFAULT_OVERHEAD_BUCKETS_S)
    config = MetricsConfig(
        latency_buckets=_buckets(t, "latency_buckets", DEFAULT_LATENCY_BUCKETS_S),
        overhead_buckets=_buckets(t, "overhead_buckets", overhead_default),
        ttft_buckets=_buckets(t, "ttft_buckets", DEFAULT_TTFT_BUCKETS_S),
    )
    t.finish()
    return config


def otlp_traces_from(export: Table) -> OtlpTracesConfig:
    """Reads `export.otlp.traces` and finishes the `export` and `export.otlp` tables."""
    otlp = export.table("otlp")
    t = otlp.table("traces")
    headers: dict[str, str] = {}
    extra = t.table("extra_headers")
    for name in extra.keys():  # noqa: SIM118 (a Table, not a dict)
        value = extra.str(name)  # `env::NAME` reads a secret from the environment
        if isinstance(value, str):
            headers[name] = value
    extra.finish()
    config = OtlpTracesConfig(
        enabled=t.bool("enabled", False),
        protocol=t.choice("protocol", PROTOCOLS),
        endpoint=t.str("endpoint"),
        extra_headers=headers,
        include_content=t.bool("include_content", False),
    )
    # TensorZero's attribute convention: LSD's spans follow the OpenTelemetry GenAI conventions either way.
    t.choice("format", ("opentelemetry", "openinference"))
    t.finish()
    otlp.finish()
    export.finish()
    return config


def _buckets(t: Table, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value: Any = t.raw(key, None)
    if value is None:
        return default
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        t.error(key, "expected a non-empty list of positive numbers (seconds)")
        return default
    buckets = tuple(float(v) for v in value)
    if list(buckets) != sorted(set(buckets)):
        t.error(key, "bucket bounds must be strictly increasing")
        return default
    return buckets
