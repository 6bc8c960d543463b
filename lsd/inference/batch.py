"""Batch inference: submit inputs through a provider's batch API, poll it, record its results like live ones.

`BatchService.submit` validates and renders every input with the engine's own steps (schemas, templates,
tools, variant params) before anything is sent, so a bad input fails the whole request with its index and
nothing is submitted. One variant is used for the whole batch (the pinned one, else the one sampled for the
first episode id), and only its model's first provider, which must support batches: there are no retries or
fallbacks. `poll` asks the provider at most every `gateway.batch.poll_interval_s` per batch across the
cluster (a claim in the database), and records the results exactly once (lsd.store.batch.complete).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lsd.config.model import FunctionConfig, VariantConfig
from lsd.errors import BatchNotFound, DatabaseUnavailable, InvalidRequest, NotFound, ProviderError, UnknownFunction
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.batch_request import BatchRequest, reindexed
from lsd.inference.batch_results import result_records
from lsd.inference.models import Model
from lsd.inference.recording import input_to_json, messages_to_json, params_to_json, time_of
from lsd.inference.routing import order_variants
from lsd.inference.run import Engine, Prepared
from lsd.providers.base import BatchPoll, CallContext, KeyLocation, Provider
from lsd.records import ModelInferenceRecord, Record
from lsd.store import batch as store
from lsd.store.database import Database
from lsd.telemetry.metrics import Metrics
from lsd.telemetry.tracing import Clock, Tracing
from lsd.types import ProviderRequest

log = logging.getLogger("lsd.batch")

# How long a started provider batch waits for the database to record it (a billed batch is not given up lightly).
RECORD_RETRY_S = 30.0


@immutable
class BatchSubmitted:
    batch_id: UUID
    inference_ids: tuple[UUID, ...]
    episode_ids: tuple[UUID, ...]


@immutable
class BatchView:
    """What `GET /batch_inference/{id}` reports: status, and once ended the recorded inferences and errors."""

    batch_id: UUID
    status: str
    provider_status: str | None
    num_inferences: int
    inferences: tuple[store.StoredResult, ...] = ()
    errors: tuple[dict[str, Any], ...] = ()


@dataclass
class BatchService:
    engine: Engine
    database: Database
    poll_interval_s: float
    tracing: Tracing | None = None
    metrics: Metrics | None = None

    def _span(self, name: str, started: float, attributes: dict[str, Any], error: str | None = None) -> None:
        """Telemetry: a `batch_submit` or `batch_poll` span (provider, model, batch id and status; no content)."""
        tracing = self.tracing
        if tracing is not None and tracing.is_open:
            clock = Clock()
            end = clock.ns(time.perf_counter())
            tracing.record_span(name, tracing.parent(), clock.ns(started), end, attributes, error=error)

    # -- submission -----------------------------------------------------------------------------------------

    def _variant(self, function: FunctionConfig, pinned: str | None, first_episode: UUID) -> VariantConfig:
        variant = order_variants(function, first_episode, pinned, self.engine.allocations.get(function.name))[0]
        if variant.type != "chat_completion":
            raise InvalidRequest(
                f"variant_name: variant {variant.name!r} is of type {variant.type!r}; batches run "
                "chat_completion variants only",
                field="variant_name",
            )
        return variant

    def _batch_provider(self, variant: VariantConfig) -> tuple[Model, Provider]:
        model = self.engine.models.get(variant.model, field_name="variant_name")
        if not model.providers:
            raise InvalidRequest(f"variant_name: model {model.name!r} has no providers", field="variant_name")
        provider = model.providers[0]
        if not provider.supports_batch:
            raise InvalidRequest(
                f"variant_name: variant {variant.name!r} uses model {model.name!r}, whose provider "
                f"{provider.name!r} has type {provider.type_name!r}, which does not support batch inference",
                field="variant_name",
            )
        location = getattr(provider, "key_location", None)
        last = (location.fallback or location) if isinstance(location, KeyLocation) else None
        if last is not None and last.kind == "dynamic":  # no key of the gateway's to fall back on
            raise InvalidRequest(
                f"credentials: provider {provider.name!r} reads its key from the request (dynamic::{last.name}); "
                "batches are polled later without the request, so they need a key the gateway holds (env::VAR)",
                field="credentials",
            )
        return model, provider

    async def submit(self, request: BatchRequest) -> BatchSubmitted:
        """Validate and render every input, start the provider batch, then store it; returns the ids."""
        function = self.engine.config.functions.get(request.function_name)
        if function is None:
            raise UnknownFunction(request.function_name)
        first_episode = request.requests[0].episode_id or uuid7()
        variant = self._variant(function, request.variant_name, first_episode)
        model, provider = self._batch_provider(variant)
        prepared: list[tuple[Prepared, ProviderRequest, dict[str, Any] | None]] = []
        for i, single in enumerate(request.requests):
            episode_id = first_episode if i == 0 else single.episode_id or uuid7()
            p = Prepared(single, function, uuid7(), episode_id, time.perf_counter())
            try:
                tools = self.engine.tool_params(p)
                provider_request = self.engine.provider_request(p, variant, tools, stream=False)
            except InvalidRequest as exc:
                raise reindexed(exc, i) from None
            prepared.append((p, provider_request, tools.to_json() if tools else None))
        batch_id = uuid7()
        submitted = BatchSubmitted(
            batch_id, tuple(p.inference_id for p, _, _ in prepared), tuple(p.episode_id for p, _, _ in prepared)
        )
        if request.dryrun:
            return submitted
        ctx = CallContext(transport=self.engine.transport, credentials=request.credentials)
        started = time.perf_counter()
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": provider.type_name,
            "gen_ai.request.model": model.name,
            "lsd.batch_id": str(batch_id),
            "lsd.function_name": function.name,
            "lsd.variant_name": variant.name,
            "lsd.model_provider_name": provider.name,
            "lsd.batch_size": len(prepared),
        }
        try:
            start = await provider.start_batch([(str(p.inference_id), r) for p, r, _ in prepared], ctx)
        except ProviderError as exc:
            self._span("batch_submit", started, attributes, error=exc.message)
            raise
        self._span("batch_submit", started, {**attributes, "lsd.provider_batch_id": start.provider_batch_id})
        created = time_of(batch_id)
        row = store.BatchRow(
            id=batch_id,
            created_at=created,
            function_name=function.name,
            function_type=function.type,
            variant_name=variant.name,
            model_name=model.name,
            model_provider_name=provider.name,
            provider_type=provider.type_name,
            provider_batch_id=start.provider_batch_id,
            provider_status=start.provider_status,
            provider_data=dict(start.data),
            status="pending",
            num_inferences=len(prepared),
            raw_request=start.raw_request,
            raw_response=start.raw_response,
            errors=None,
            tags={},
            last_polled_at=None,
            completed_at=None,
        )
        items = [
            store.BatchItemRow(
                inference_id=p.inference_id,
                created_at=time_of(p.inference_id),
                batch_id=batch_id,
                function_name=function.name,
                variant_name=variant.name,
                episode_id=p.episode_id,
                input=input_to_json(p.request.input),
                rendered_input={"system": r.system, "messages": messages_to_json(r.messages)},
                tool_params=tool_params,
                inference_params=params_to_json(r.params),
                output_schema=dict(r.output_schema) if function.type == "json" and r.output_schema else None,
                raw_request=start.item_requests.get(str(p.inference_id)),
                model_name=model.name,
                model_provider_name=provider.name,
                tags=dict(p.request.tags),
            )
            for p, r, tool_params in prepared
        ]
        event = store.BatchEvent(
            uuid7(), created, batch_id, "pending", start.provider_status, start.raw_request, start.raw_response, None
        )
        await self._record(row, items, event, provider)
        return submitted

    async def _record(
        self, row: store.BatchRow, items: list[store.BatchItemRow], event: store.BatchEvent, provider: Provider
    ) -> None:
        """Commit a batch the provider has started (and bills): through a database outage of up to RECORD_RETRY_S,
        retrying; past it, the provider batch is named in the error log and in the 503, so that nobody resubmits it
        blind (a resubmission is a second, billed batch) and it can be cancelled at the provider."""
        delay, deadline = 0.25, time.monotonic() + RECORD_RETRY_S
        while True:
            try:
                await store.insert_batch(self.database, row, items, event)
                return
            except DatabaseUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    message = (
                        f"the database is unavailable (batch): provider {provider.name!r} started batch "
                        f"{row.provider_batch_id!r}, which LSD could not record and will not poll; cancel it at the "
                        "provider before you submit these inputs again"
                    )
                    log.error("%s (LSD batch id %s, %d inputs)", message, row.id, len(items))
                    raise DatabaseUnavailable(message) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
            try:  # the commit may have landed before the connection broke: then it is recorded
                if await store.get_batch(self.database, row.id) is not None:
                    return
            except DatabaseUnavailable:
                continue

    # -- polling --------------------------------------------------------------------------------------------

    def _provider(self, row: store.BatchRow) -> Provider:
        model = self.engine.models.get(row.model_name)
        for provider in model.providers:
            if provider.name == row.model_provider_name:
                return provider
        raise NotFound(f"model {row.model_name!r} no longer has provider {row.model_provider_name!r}")

    async def poll(self, batch_id: UUID) -> bool:
        """Ask the provider about a pending batch, unless any process did within poll_interval_s; record the
        results once it ended. True when this call recorded them. Provider failures are logged, not raised:
        the next poll tries again."""
        row = await store.claim_poll(self.database, batch_id, self.poll_interval_s)
        if row is None or row.provider_batch_id is None:
            return False
        started = time.perf_counter()
        attributes: dict[str, Any] = {
            "gen_ai.system": row.provider_type,
            "gen_ai.request.model": row.model_name,
            "lsd.batch_id": str(batch_id),
            "lsd.provider_batch_id": row.provider_batch_id,
            "lsd.function_name": row.function_name,
        }
        try:
            provider = self._provider(row)
            ctx = CallContext(transport=self.engine.transport)
            state = await provider.poll_batch(row.provider_batch_id, row.provider_data or {}, ctx)
        except (ProviderError, NotFound) as exc:
            log.warning("polling batch %s (%s) failed: %s", batch_id, row.provider_batch_id, exc.message)
            self._span("batch_poll", started, attributes, error=exc.message)
            return False
        attributes["lsd.batch_status"] = state.status
        if state.status == "pending":
            event = self._event(row, state)
            await store.record_progress(self.database, batch_id, event)
            self._span("batch_poll", started, attributes)
            return False
        recorded = await self._complete(row, state)
        self._span("batch_poll", started, {**attributes, "lsd.results_recorded": recorded})
        return recorded

    def _event(self, row: store.BatchRow, state: BatchPoll, errors: Any = None) -> store.BatchEvent:
        event_id = uuid7()
        return store.BatchEvent(
            event_id, time_of(event_id), row.id, state.status, state.provider_status, None, state.raw_response, errors
        )

    async def _complete(self, row: store.BatchRow, state: BatchPoll) -> bool:
        items = await store.batch_items(self.database, row.id)
        records, item_errors = result_records(row, items, state, self.engine.config.source_hash)
        errors = [{"message": m} for m in state.errors] + [
            {"inference_id": str(i), "message": m} for i, m in item_errors.items()
        ]
        recorded = await store.complete(self.database, self._event(row, state, errors), records)
        if recorded and self.metrics is not None:
            _count(self.metrics, row, state.status, records)
        if recorded:
            log.info(
                "batch %s %s: %d of %d results recorded",
                row.id,
                state.status,
                row.num_inferences - len(item_errors),
                row.num_inferences,
            )
        else:
            log.info("batch %s had already been recorded by another process; nothing written", row.id)
        return recorded

    async def poll_pending(self) -> int | None:
        """The background poller: every pending batch, once per cluster (None when another process holds the
        lock). Returns how many batches this run recorded."""
        async with store.poller_lock(self.database) as locked:
            if not locked:
                return None
            recorded = 0
            for batch_id in await store.pending_batch_ids(self.database):
                recorded += await self.poll(batch_id)
            return recorded

    # -- reading --------------------------------------------------------------------------------------------

    async def status(self, batch_id: UUID) -> BatchView:
        """The batch now: a pending batch is polled first (rate limited), so a client's GET completes it."""
        row = await self._row(batch_id)
        if row.status == "pending":
            await self.poll(batch_id)
            row = await self._row(batch_id)
        return await self._view(row)

    async def inference_status(self, batch_id: UUID, inference_id: UUID) -> BatchView:
        view = await self.status(batch_id)
        if not await store.item_in_batch(self.database, batch_id, inference_id):
            raise NotFound(f"batch {batch_id} has no inference {inference_id}", field="inference_id")
        key = str(inference_id)
        return BatchView(
            view.batch_id,
            view.status,
            view.provider_status,
            1,
            tuple(i for i in view.inferences if i.inference_id == inference_id),
            tuple(e for e in view.errors if e.get("inference_id") in (None, key)),
        )

    async def _row(self, batch_id: UUID) -> store.BatchRow:
        row = await store.get_batch(self.database, batch_id)
        if row is None:
            raise BatchNotFound(batch_id)
        return row

    async def _view(self, row: store.BatchRow) -> BatchView:
        if row.status == "pending":
            return BatchView(row.id, row.status, row.provider_status, row.num_inferences)
        items = await store.batch_items(self.database, row.id)
        stored = await store.stored_results(self.database, row.function_type, [i.inference_id for i in items])
        inferences = tuple(stored[i.inference_id] for i in items if i.inference_id in stored)
        return BatchView(
            row.id, row.status, row.provider_status, row.num_inferences, inferences, tuple(row.errors or ())
        )


def _count(metrics: Metrics, row: store.BatchRow, status: str, records: Sequence[Record]) -> None:
    """Metrics for a batch whose results this process recorded: the batch, and each input's result."""
    metrics.observe_batch(row.function_name, row.model_name, row.model_provider_name, status)
    for record in records:
        if isinstance(record, ModelInferenceRecord):
            labels = (
                record.function_name or "",
                record.variant_name or "",
                record.model_name,
                record.model_provider_name,
            )
            cost = float(record.cost) if record.cost is not None else None
            metrics.observe_batch_result(labels, record.status == "ok", record.input_tokens, record.output_tokens, cost)
