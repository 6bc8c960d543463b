"""Metrics and spans for one finished inference, built once from what the engine measured anyway.

The engine calls `InferenceTelemetry.finished` once per inference (answered or failed) with its attempts.
Metrics are a few increments on cached label children; spans (function → variant → model → provider attempt)
are created after the fact with the attempts' own timings, and only when OTLP export is on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from lsd import ids
from lsd.errors import CLIENT_GONE
from lsd.inference.recording import Attempt, messages_to_json
from lsd.telemetry.metrics import Metrics
from lsd.telemetry.tracing import Clock, Tracing
from lsd.types import Usage

if TYPE_CHECKING:
    from opentelemetry.trace import SpanContext

    from lsd.inference.finish import Done

_PARAMS = ("temperature", "max_tokens", "top_p", "seed", "presence_penalty", "frequency_penalty")


class InferenceTelemetry:
    """Records finished inferences to `metrics` and, when tracing is open, to spans."""

    def __init__(self, metrics: Metrics | None, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.include_content = tracing.include_content if tracing is not None else False

    def finished(self, done: Done) -> None:
        end = time.perf_counter()
        seconds = end - done.started
        attempts = done.attempts
        last = attempts[-1] if attempts else None
        variant = last.variant_name if last is not None else ""
        model = last.model_name if last is not None else done.model_name or ""
        provider = last.provider_name if last is not None else ""
        metrics = self.metrics
        if metrics is not None:
            provider_s = 0.0
            for a in attempts:
                provider_s += a.elapsed_s
            usage = done.usage
            metrics.observe_inference(
                (
                    done.function_name,
                    variant,
                    model,
                    provider,
                    _outcome(done),
                    "true" if done.stream else "false",
                ),
                seconds,
                max(0.0, seconds - provider_s),
                done.ttft_s,
                usage.input_tokens if usage is not None else None,
                usage.output_tokens if usage is not None else None,
                done.cost,
            )
            self._attempt_metrics(done, metrics)
        if self.tracing is not None and self.tracing.is_open:
            self._spans(self.tracing, done, end)

    def _attempt_metrics(self, done: Done, metrics: Metrics) -> None:
        reading = done.cache_read
        for a in done.attempts:
            if a.cached:
                metrics.observe_cache(True)
            else:
                if reading:
                    metrics.observe_cache(False)
                metrics.observe_provider_attempt(
                    a.model_name, a.provider_name, a.error.kind if a.error is not None else None, a.elapsed_s
                )
        if len(done.attempts) > 1:  # one call (most inferences): no retry, no fallback
            self._fallbacks(done, metrics)

    @staticmethod
    def _fallbacks(done: Done, metrics: Metrics) -> None:
        function = done.function_name
        previous: Attempt | None = None
        tried: set[tuple[str, str]] = set()  # the current try of the current variant: (model, provider) called
        for a in done.attempts:
            called = (a.model_name, a.provider_name)
            # Only a call after a failure is a fallback or a retry: calls after a success are a variant's other
            # work (mixture and best-of-n candidates, DICL's embedding then its model).
            if previous is not None and previous.error is not None:
                if previous.variant_name != a.variant_name:
                    metrics.observe_fallback(function, "variant")
                    tried.clear()
                elif called in tried:  # every provider failed and the variant starts over: the same as the spans
                    metrics.observe_retry(function, a.variant_name)
                    tried.clear()
                else:
                    metrics.observe_fallback(function, "provider")
            elif previous is not None and previous.variant_name != a.variant_name:
                tried.clear()
            tried.add(called)
            previous = a

    def _spans(self, tracing: Tracing, done: Done, end: float) -> None:
        attempts, usage, request = done.attempts, done.usage, done.request
        clock = Clock()
        last = attempts[-1] if attempts else None
        embedding = done.kind == "embedding"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings" if embedding else "chat",
            "lsd.inference_id": ids.text(done.inference_id),
        }
        if done.episode_id is not None:
            attributes["lsd.episode_id"] = ids.text(done.episode_id)
        if not embedding:
            attributes["lsd.function_name"] = done.function_name
            attributes["lsd.function_type"] = done.kind
            attributes["lsd.stream"] = done.stream
        if done.dryrun:
            attributes["lsd.dryrun"] = True
        if last is not None:
            attributes["lsd.variant_name"] = last.variant_name
            attributes["lsd.model_name"] = last.model_name
            attributes["lsd.model_provider_name"] = last.provider_name
            attributes["gen_ai.request.model"] = last.model_name
            attributes["gen_ai.system"] = last.provider_type
        _usage_attributes(attributes, usage, done.finish_reason)
        if done.cost is not None:
            attributes["lsd.cost"] = done.cost
        if request is not None:
            params = request.params
            for name in _PARAMS:
                value = getattr(params, name)
                if value is not None:
                    attributes[f"gen_ai.request.{name}"] = value
            if self.include_content:
                if request.system is not None:
                    attributes["gen_ai.system_instructions"] = _json(request.system)
                attributes["gen_ai.input.messages"] = _json(messages_to_json(request.messages))
        if self.include_content and done.output is not None:
            attributes["gen_ai.output.messages"] = _json(done.output())
        root = tracing.record_span(
            "embedding_inference" if embedding else "function_inference",
            tracing.parent(),
            clock.ns(done.started),
            clock.ns(end),
            attributes,
            error=done.error,
        )
        if root is not None:
            _attempt_spans(tracing, clock, root, done)


def _attempt_spans(tracing: Tracing, clock: Clock, root: SpanContext, done: Done) -> None:
    """variant_inference spans (one per run of attempts on a variant), model_inference spans (one per try of the
    variant's model: a provider already tried starts the next try) and a model_provider_inference per attempt."""
    variants: list[list[list[Attempt]]] = []
    operation = "embeddings" if done.kind == "embedding" else "chat"
    for a in done.attempts:
        if not variants or variants[-1][-1][-1].variant_name != a.variant_name:
            variants.append([[a]])
        elif any(b.provider_name == a.provider_name for b in variants[-1][-1]):
            variants[-1].append([a])
        else:
            variants[-1][-1].append(a)
    for tries in variants:
        first, final = tries[0][0], tries[-1][-1]
        variant_ctx = tracing.record_span(
            "variant_inference",
            root,
            clock.ns(first.t0),
            clock.ns(final.t0 + final.elapsed_s),
            {"lsd.function_name": done.function_name, "lsd.variant_name": first.variant_name},
            error=_error(final),
        )
        for group in tries:
            head, tail = group[0], group[-1]
            model_ctx = tracing.record_span(
                "model_inference",
                variant_ctx,
                clock.ns(head.t0),
                clock.ns(tail.t0 + tail.elapsed_s),
                {"lsd.model_name": head.model_name, "gen_ai.request.model": head.model_name},
                error=_error(tail),
            )
            for a in group:
                attributes: dict[str, Any] = {
                    "gen_ai.operation.name": operation,
                    "gen_ai.system": a.provider_type,
                    "gen_ai.request.model": a.model_name,
                    "lsd.model_name": a.model_name,
                    "lsd.model_provider_name": a.provider_name,
                    "lsd.cached": a.cached,
                }
                if a.ttft_ms is not None:
                    attributes["lsd.ttft_ms"] = a.ttft_ms
                if a.error is not None:
                    attributes["error.type"] = a.error.kind
                else:
                    _usage_attributes(attributes, a.usage, a.finish_reason)
                tracing.record_span(
                    "model_provider_inference",
                    model_ctx,
                    clock.ns(a.t0),
                    clock.ns(a.t0 + a.elapsed_s),
                    attributes,
                    error=_error(a),
                    client=True,
                )


def _error(a: Attempt) -> str | None:
    """A failed attempt's span status: its kind and the provider's HTTP status, never the provider's message (an
    error body may quote the prompt, which spans hold only with include_content; the row keeps the message)."""
    if a.error is None:
        return None
    return f"{a.error.kind}: HTTP {a.error.status}" if a.error.status is not None else a.error.kind


def _usage_attributes(attributes: dict[str, Any], usage: Usage | None, finish_reason: str | None) -> None:
    if usage is not None:
        if usage.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        if usage.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
    if finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (finish_reason,)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _outcome(done: Done) -> str:
    """`ok`, `error`, or `cancelled` for a stream its client left mid-way (nothing failed: not an error to alert on)."""
    if not done.error:
        return "ok"
    last = done.attempts[-1].error if done.attempts else None
    return "cancelled" if last is not None and last.kind == CLIENT_GONE else "error"
