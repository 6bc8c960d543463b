"""Embeddings: route to the embedding model's providers in order and record one embedding_inferences row."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from uuid import UUID

from lsd.config.model import Config
from lsd.errors import AllAttemptsFailed, NotFound, ProviderError
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.models import Model, ModelTable
from lsd.inference.recording import Attempt, attempt_records, money, time_of
from lsd.inference.routing import summarise
from lsd.inference.run import Recorder
from lsd.providers.base import CallContext
from lsd.providers.transport import Transport
from lsd.records import EmbeddingInferenceRecord, Record
from lsd.types import EmbeddingResponse


@immutable
class EmbeddingRequest:
    model_name: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)
    dryrun: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    api_key_public_id: str | None = None  # the verified key's, set by the API layer


@immutable
class EmbeddingResult:
    inference_id: UUID
    model_name: str
    response: EmbeddingResponse


@dataclass
class Embedder:
    config: Config
    models: ModelTable
    transport: Transport
    recorder: Recorder

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        try:
            model = self.models.get(request.model_name)
        except NotFound:
            raise NotFound(f"unknown embedding model {request.model_name!r}", field="model") from None
        inference_id = uuid7()
        started = time.perf_counter()
        ctx = CallContext(transport=self.transport, credentials=request.credentials)
        attempts: list[Attempt] = []
        for provider in model.providers:
            names = ("", model.name, provider.name, provider.type_name)
            started_ms = int(time.time() * 1000)
            t0 = time.perf_counter()
            try:
                response = await provider.embed(request.inputs, ctx, dimensions=request.dimensions)
            except ProviderError as exc:
                attempts.append(Attempt.failed(names, started_ms, t0, exc))
                continue
            attempts.append(
                Attempt(
                    *names,
                    started_ms=started_ms,
                    latency_ms=int((time.perf_counter() - t0) * 1000),
                    usage=response.usage,
                    cost=response.cost,
                    raw_request=response.raw_request,
                    raw_response=response.raw_response,
                    request_headers=dict(response.request_headers) or None,
                    api_key_sha256=response.api_key_sha256,
                )
            )
            if not request.dryrun:
                self.recorder.submit(self._records(request, inference_id, model, response, attempts, started))
            return EmbeddingResult(inference_id, model.name, response)
        if not request.dryrun:
            self.recorder.submit(attempt_records(inference_id, "embedding", None, attempts))
        raise AllAttemptsFailed(summarise(attempts))

    def _records(
        self,
        request: EmbeddingRequest,
        inference_id: UUID,
        model: Model,
        response: EmbeddingResponse,
        attempts: Sequence[Attempt],
        started: float,
    ) -> list[Record]:
        vectors = response.embeddings
        record = EmbeddingInferenceRecord(
            id=inference_id,
            created_at=time_of(inference_id),
            embedding_model_name=model.name,
            model_provider_name=attempts[-1].provider_name,
            input=list(request.inputs),
            num_inputs=len(request.inputs),
            dimensions=len(vectors[0]) if vectors else None,
            embeddings=[list(v) for v in vectors],
            tags=dict(request.tags),
            processing_time_ms=int((time.perf_counter() - started) * 1000),
            input_tokens=response.usage.input_tokens,
            cost=money(response.cost),
            cached=False,
            config_hash=self.config.source_hash,
            api_key_public_id=request.api_key_public_id,
        )
        return [record, *attempt_records(inference_id, "embedding", None, attempts)]
