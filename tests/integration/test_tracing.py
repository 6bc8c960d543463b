"""OTLP traces from the real exporter into an in-test OTLP/HTTP receiver: span tree, GenAI attributes, the
caller's trace continued, no content unless asked, and a dead collector that fails no request."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from lsd.api.front import FrontDoor
from lsd.app import Gateway, build_app
from lsd.config import parse
from lsd.runtime import build_tracing
from lsd.store.local import free_port
from tests.fakes.openai_server import FakeOpenAI
from tests.support.configs import boolean_metric, dummy_fallback_model
from tests.support.gateway import ROOT, in_process_gateway

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

# What every test here serves, after its own [gateway.export.otlp.traces].
MODELS = f"""
{dummy_fallback_model("broken", failing="bad", answering="good")}

[functions.chat]
type = "chat"
[functions.chat.variants.a]
type = "chat_completion"
model = "broken"
temperature = 0.5
{boolean_metric("thumbs_up")}
"""

MESSAGE = {"messages": [{"role": "user", "content": "a private prompt"}]}


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    error: bool
    start_ns: int
    end_ns: int
    kind: int = 0  # OTLP's SpanKind: 1 internal, 3 client
    status_message: str = ""


@dataclass
class Receiver:
    """An OTLP/HTTP collector: decodes ExportTraceServiceRequest bodies posted to /v1/traces."""

    spans: list[Span] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        self.headers.append(dict(request.headers))
        self.add(message)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(), content_type="application/x-protobuf"
        )

    def add(self, message: ExportTraceServiceRequest) -> None:
        for resource_spans in message.resource_spans:
            self.resources.append({a.key: _value(a.value) for a in resource_spans.resource.attributes})
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            error=s.status.code == 2,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            kind=s.kind,
                            status_message=s.status.message,
                        )
                    )

    async def wait_for(self, predicate: Any, within_s: float = 10.0) -> list[Span]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching span among {[s.name for s in self.spans]}")


@pytest.fixture
async def receiver(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Receiver, str]]:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms, not the default 5 s
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield receiver, f"http://127.0.0.1:{port}/v1/traces"
    finally:
        await runner.cleanup()


def config(endpoint: str, *, include_content: bool = False) -> str:
    return (
        f"""
[gateway.export.otlp.traces]
enabled = true
endpoint = "{endpoint}"
include_content = {str(include_content).lower()}
extra_headers = {{ "x-collector-key" = "secret-123" }}
"""
        + MODELS
    )


async def test_span_tree_under_the_callers_trace(receiver: tuple[Receiver, str], database_url: str) -> None:
    rx, endpoint = receiver
    async with in_process_gateway(config(endpoint), database_url) as base_url, httpx.AsyncClient() as http:
        r = await http.post(
            f"{base_url}/inference",
            json={"function_name": "chat", "input": MESSAGE},
            headers={"traceparent": TRACEPARENT},
        )
        assert r.status_code == 200
        inference_id = r.json()["inference_id"]
        [root] = await rx.wait_for(lambda s: s.name == "function_inference")
        await rx.wait_for(lambda s: s.name == "model_provider_inference" and not s.error)

    # the caller's trace continues: same trace id, the caller's span is the parent
    assert (root.trace_id, root.parent_id) == (TRACE_ID, PARENT_ID)
    assert root.attributes["lsd.inference_id"] == inference_id
    assert root.attributes["lsd.episode_id"] == r.json()["episode_id"]
    assert root.attributes["lsd.function_name"] == "chat"
    assert root.attributes["lsd.variant_name"] == "a"
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.system"] == "dummy"
    assert root.attributes["gen_ai.request.model"] == "broken"
    assert root.attributes["gen_ai.request.temperature"] == 0.5
    assert root.attributes["gen_ai.usage.input_tokens"] == r.json()["usage"]["input_tokens"]
    assert root.attributes["gen_ai.usage.output_tokens"] == r.json()["usage"]["output_tokens"]
    assert root.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert not root.error

    by_parent: dict[str, list[Span]] = {}
    for s in rx.spans:
        assert s.trace_id == TRACE_ID
        by_parent.setdefault(s.parent_id, []).append(s)
    [variant] = by_parent[root.span_id]
    assert (variant.name, variant.attributes["lsd.variant_name"]) == ("variant_inference", "a")
    [model] = by_parent[variant.span_id]
    assert (model.name, model.attributes["lsd.model_name"]) == ("model_inference", "broken")
    bad, good = sorted(by_parent[model.span_id], key=lambda s: s.start_ns)
    assert [bad.name, good.name] == ["model_provider_inference"] * 2
    assert (bad.attributes["lsd.model_provider_name"], bad.error, bad.attributes["error.type"]) == (
        "bad",
        True,
        "provider_error",
    )
    assert (good.attributes["lsd.model_provider_name"], good.error) == ("good", False)
    # A provider call is a CLIENT span (the GenAI conventions); a failure's status names its kind, never the
    # provider's message (which may quote the prompt).
    assert (bad.kind, good.kind, model.kind, variant.kind) == (3, 3, 1, 1)
    assert bad.status_message == "provider_error: HTTP 500"
    assert good.attributes["gen_ai.usage.output_tokens"] == r.json()["usage"]["output_tokens"]
    # children sit inside their parents
    assert root.start_ns <= variant.start_ns <= bad.start_ns <= bad.end_ns <= good.start_ns <= good.end_ns
    assert good.end_ns <= model.end_ns <= variant.end_ns <= root.end_ns

    # no prompt or completion text, and the collector's header went to the collector only
    assert not any("private prompt" in str(s.attributes) for s in rx.spans)
    assert all(h.get("x-collector-key") == "secret-123" for h in rx.headers)
    assert not any("secret-123" in str(s.attributes) for s in rx.spans)
    assert rx.resources[0]["service.name"] == "lsd"


async def test_streams_feedback_and_content(receiver: tuple[Receiver, str], database_url: str) -> None:
    rx, endpoint = receiver
    async with (
        in_process_gateway(config(endpoint, include_content=True), database_url) as base_url,
        httpx.AsyncClient() as http,
    ):
        r = await http.post(f"{base_url}/inference", json={"function_name": "chat", "input": MESSAGE, "stream": True})
        assert r.status_code == 200 and "[DONE]" in r.text
        [stream] = await rx.wait_for(lambda s: s.name == "function_inference")
        inference_id = stream.attributes["lsd.inference_id"]
        r = await http.post(
            f"{base_url}/feedback", json={"metric_name": "thumbs_up", "inference_id": inference_id, "value": True}
        )
        assert r.status_code == 200
        [feedback] = await rx.wait_for(lambda s: s.name == "feedback")

    assert stream.attributes["lsd.stream"] is True
    assert stream.parent_id == ""  # no traceparent: a new trace
    assert "a private prompt" in stream.attributes["gen_ai.input.messages"]
    assert "echo: a private prompt" in stream.attributes["gen_ai.output.messages"]
    assert feedback.attributes["lsd.feedback_id"] == r.json()["feedback_id"]
    assert feedback.attributes["lsd.inference_id"] == inference_id
    assert feedback.attributes["lsd.metric_name"] == "thumbs_up"


async def test_a_dead_collector_fails_no_request(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens here
    started = time.monotonic()
    async with in_process_gateway(config(dead), database_url) as base_url, httpx.AsyncClient() as http:
        for _ in range(20):
            r = await http.post(
                f"{base_url}/inference",
                json={"function_name": "chat", "input": MESSAGE},
                headers={"traceparent": TRACEPARENT},
            )
            assert r.status_code == 200
    # and shutting down does not hang on the exporter (bounded by its timeout and the flush limit)
    assert time.monotonic() - started < 30


class GrpcReceiver(TraceServiceServicer):
    """An OTLP/gRPC collector."""

    def __init__(self, into: Receiver) -> None:
        self.into = into

    async def Export(
        self, request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> ExportTraceServiceResponse:
        self.into.headers.append(dict(context.invocation_metadata() or ()))
        self.into.add(request)
        return ExportTraceServiceResponse()


async def test_grpc_with_the_standard_environment_variables(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rx = Receiver()
    server = grpc.aio.server()
    add_TraceServiceServicer_to_server(GrpcReceiver(rx), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=acme")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    try:
        async with (
            in_process_gateway("[gateway.export.otlp.traces]\nenabled = true\n" + MODELS, database_url) as base_url,
            httpx.AsyncClient() as http,
        ):
            r = await http.post(f"{base_url}/inference", json={"function_name": "chat", "input": MESSAGE})
            assert r.status_code == 200
            [root] = await rx.wait_for(lambda s: s.name == "function_inference")
    finally:
        await server.stop(None)
    assert root.attributes["lsd.inference_id"] == r.json()["inference_id"]
    assert rx.headers[0].get("x-tenant") == "acme"
    assert rx.resources[0]["service.name"] == "gateway-eu"


OTLP_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter", "grpc", "google.protobuf")
LOADED_OTLP = """
import sys
from lsd.app import build_app
from lsd.cli import main
from lsd.config import parse
from lsd.runtime import build_tracing
config = parse(sys.argv[1], base_dir=sys.argv[2])
build_app(config, "postgresql://unused")
build_tracing(config)
print(sorted({m for m in sys.modules for p in %r if m == p or m.startswith(p + ".")}))
"""


@pytest.mark.parametrize("enabled", [False, True])
def test_the_sdk_and_exporters_load_only_with_tracing_on(enabled: bool) -> None:
    """Their modules cost ~14 MiB of RSS per worker (gRPC's ~10): a fresh interpreter that builds the app with
    tracing off has none of them loaded."""
    text = config("http://127.0.0.1:1/v1/traces").replace("enabled = true", f"enabled = {str(enabled).lower()}")
    out = subprocess.run(
        [sys.executable, "-c", LOADED_OTLP % (OTLP_MODULES,), text, str(ROOT)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loaded = ast.literal_eval(out)
    if enabled:
        assert {m for m in loaded if m in OTLP_MODULES} == set(OTLP_MODULES)
    else:
        assert loaded == []


def test_tracing_off_builds_nothing() -> None:
    """The default: no span pipeline, no traceparent lookup, so the request path skips tracing entirely."""
    text = config("http://127.0.0.1:1/v1/traces")
    off = parse(text.replace("enabled = true", "enabled = false"), base_dir=ROOT)
    assert build_tracing(off) is None
    assert not front_door(build_app(off, "postgresql://unused")).tracing
    on = parse(text, base_dir=ROOT)
    assert build_tracing(on) is not None
    assert front_door(build_app(on, "postgresql://unused")).tracing


def front_door(app: Gateway) -> FrontDoor:
    stack = app.build_middleware_stack()
    assert isinstance(stack, FrontDoor)
    return stack


BATCH_CONFIG = """
[gateway.batch]
poll_interval_s = 0.1

[models.slow_echo]
routing = ["dummy"]

[models.slow_echo.providers.dummy]
type = "dummy"
model_name = "echo"
batch_delay_ms = 0

[functions.classify]
type = "chat"

[functions.classify.variants.a]
type = "chat_completion"
model = "slow_echo"
"""


async def test_batch_submission_and_polls_are_spans(receiver: tuple[Receiver, str], database_url: str) -> None:
    rx, endpoint = receiver
    text = config(endpoint) + BATCH_CONFIG
    async with in_process_gateway(text, database_url) as base_url, httpx.AsyncClient() as http:
        r = await http.post(
            f"{base_url}/batch_inference",
            json={"function_name": "classify", "inputs": [MESSAGE, MESSAGE]},
            headers={"traceparent": TRACEPARENT},
        )
        assert r.status_code == 200, r.text
        batch_id = r.json()["batch_id"]
        [submit] = await rx.wait_for(lambda s: s.name == "batch_submit")
        assert submit.trace_id == TRACE_ID and submit.parent_id == PARENT_ID
        assert submit.attributes["lsd.batch_id"] == batch_id
        assert submit.attributes["lsd.batch_size"] == 2
        assert submit.attributes["gen_ai.system"] == "dummy"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status = (await http.get(f"{base_url}/batch_inference/{batch_id}")).json()["status"]
            if status == "completed":
                break
            await asyncio.sleep(0.1)
        polls = await rx.wait_for(lambda s: s.name == "batch_poll" and s.attributes.get("lsd.results_recorded"))
        assert polls[0].attributes["lsd.batch_status"] == "completed"
        assert polls[0].attributes["lsd.batch_id"] == batch_id
        assert not any("private prompt" in str(s.attributes) for s in rx.spans)


async def test_an_embedding_is_a_span_tree_too(receiver: tuple[Receiver, str], database_url: str) -> None:
    """Embeddings finish through the same step as chat: an embedding_inference span with its provider calls."""
    rx, endpoint = receiver
    fake = FakeOpenAI()
    await fake.start()
    embedding_model = f"""
[embedding_models.vectors]
routing = ["broken", "good"]
[embedding_models.vectors.providers.broken]
type = "openai"
model_name = "error-500"
api_base = "{fake.api_base}"
api_key_location = "none"
[embedding_models.vectors.providers.good]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{fake.api_base}"
api_key_location = "none"
"""
    try:
        async with (
            in_process_gateway(config(endpoint) + embedding_model, database_url) as base_url,
            httpx.AsyncClient() as http,
        ):
            r = await http.post(
                f"{base_url}/openai/v1/embeddings",
                json={"model": "lsd::embedding_model_name::vectors", "input": "a private prompt"},
            )
            assert r.status_code == 200, r.text
            [root] = await rx.wait_for(lambda s: s.name == "embedding_inference")
            await rx.wait_for(lambda s: s.name == "model_provider_inference" and not s.error)
    finally:
        await fake.stop()
    assert root.attributes["gen_ai.operation.name"] == "embeddings"
    assert root.attributes["lsd.model_name"] == "vectors"
    assert root.attributes["lsd.model_provider_name"] == "good"
    assert not root.error
    calls = [s for s in rx.spans if s.name == "model_provider_inference"]
    assert [(s.attributes["lsd.model_provider_name"], s.error) for s in sorted(calls, key=lambda s: s.start_ns)] == [
        ("broken", True),
        ("good", False),
    ]
    assert all(s.attributes["gen_ai.operation.name"] == "embeddings" for s in calls)
