"""What telemetry costs one inference: `InferenceTelemetry.finished` plus the HTTP counter, in µs.

    .venv/bin/python -m bench.telemetry_cost

Measures, on the calling thread (the event loop's, in the gateway): metrics only (tracing off, the default),
metrics + OTLP spans (four spans per inference; the exporter here discards, so the export thread's work is
not counted: it runs off the request path), and a three-attempt inference (a provider fallback and a retry).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from lsd.config.model import FunctionConfig, VariantConfig
from lsd.errors import ProviderError
from lsd.ids import uuid7
from lsd.inference.recording import Attempt
from lsd.inference.request import parse_inference_request
from lsd.inference.run import Prepared
from lsd.inference.telemetry import InferenceTelemetry
from lsd.telemetry.metrics import Metrics
from lsd.telemetry.otlp import OtlpPipeline
from lsd.telemetry.tracing import Tracing
from lsd.types import InferenceParams, ProviderRequest, ProviderResponse, Text, Usage

FLUSH_EVERY = 2000


class Discard(SpanExporter):
    def export(self, spans: Sequence[object]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def metrics() -> Metrics:
    return Metrics(latency_buckets=(0.01, 0.1, 1.0, 10.0), overhead_buckets=(0.001, 0.01), ttft_buckets=(0.1, 1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000)
    n = parser.parse_args().n
    variant = VariantConfig(name="a", type="chat_completion", model="m", weight=None, params=InferenceParams())
    function = FunctionConfig(name="f", type="chat", variants={"a": variant})
    request = parse_inference_request(
        {"function_name": "f", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    )
    response = ProviderResponse(
        content=(Text("hello"),), usage=Usage(10, 20), finish_reason="stop", raw_request="{}", raw_response="{}"
    )
    provider_request = ProviderRequest(system=None, messages=(), params=InferenceParams(temperature=0.2))
    t0 = time.perf_counter()
    one = [Attempt.succeeded(("a", "m", "p", "openai"), 0, t0, response)]
    error = ProviderError("down", provider="p1")
    three = [
        Attempt.failed(("a", "m", "p1", "openai"), 0, t0, error),
        Attempt.failed(("a", "m", "p2", "openai"), 0, t0, error),
        Attempt.succeeded(("a", "m", "p1", "openai"), 0, t0, response),
    ]
    tracing = Tracing(OtlpPipeline(exporter=Discard()))  # OTEL_BSP_MAX_QUEUE_SIZE: keep every span in this tight loop
    tracing.open()
    cases = {
        "metrics only (tracing off)": (InferenceTelemetry(metrics()), one),
        "metrics + spans (tracing on)": (InferenceTelemetry(metrics(), tracing), one),
        "3 attempts, metrics only": (InferenceTelemetry(metrics()), three),
        "3 attempts, metrics + spans": (InferenceTelemetry(metrics(), tracing), three),
    }
    http = metrics()
    for name, (telemetry, attempts) in cases.items():
        for _ in range(1000):  # warm the label caches
            p = Prepared(request, function, uuid7(), uuid7(), time.perf_counter())
            telemetry.finished(p.done(attempts, None, usage=response.usage, cost=0.001, finish_reason="stop"))
        # CPU time of this process (the export thread's included): steadier than wall time on a busy machine
        started = time.process_time()
        for i in range(n):
            p = Prepared(request, function, uuid7(), uuid7(), time.perf_counter())
            telemetry.finished(
                p.done(attempts, None, usage=response.usage, cost=0.001, finish_reason="stop", request=provider_request)
            )
            http.observe_http("/inference", "POST", 200, 0.001)
            if i % FLUSH_EVERY == 0:  # the gateway flushes every second: ~2,000 inferences at 2,000 req/s
                http.flush()
                if telemetry.metrics is not None:
                    telemetry.metrics.flush()
        took = time.process_time() - started
        base_start = time.process_time()
        for _ in range(n):
            p = Prepared(request, function, uuid7(), uuid7(), time.perf_counter())
        base = time.process_time() - base_start
        print(f"{name:32s} {(took - base) / n * 1e6:6.2f} µs per inference")
    tracing.force_flush()


if __name__ == "__main__":
    main()
