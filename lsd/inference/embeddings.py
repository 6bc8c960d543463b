"""Embeddings: the engine's path for an embedding model (same fallback loop, same finishing step as chat)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

from lsd.config.model import Config
from lsd.errors import AllAttemptsFailed, InvalidRequest, NotFound, UnknownEmbeddingModel
from lsd.ids import uuid7
from lsd.immutable import immutable
from lsd.inference.finish import Done, Finisher
from lsd.inference.models import ModelTable
from lsd.inference.recording import Attempt, money, storable, time_of
from lsd.inference.result import EmbeddingResult
from lsd.inference.routing import ABANDONED, NON_STREAMING, ModelStep, model_steps, route
from lsd.providers.base import CallContext, Provider
from lsd.providers.transport import Transport
from lsd.records import EmbeddingInferenceRecord, Record
from lsd.types import EmbeddingInput, EmbeddingResponse

__all__ = ["Embedder", "EmbeddingRequest", "EmbeddingResult"]


@immutable
class EmbeddingRequest:
    model_name: str
    inputs: tuple[EmbeddingInput, ...]  # texts, or token ids: never both
    dimensions: int | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)
    dryrun: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    api_key_public_id: str | None = None  # the verified key's, set by the API layer


@dataclass
class Embedder:
    config: Config
    models: ModelTable
    transport: Transport
    finisher: Finisher

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        """Route to the embedding model's providers (timeouts, the model's retries, fallbacks in routing order),
        then finish like any inference: rows recorded (honouring async_writes), metrics and spans."""
        try:
            model = self.models.get(request.model_name)
        except NotFound:
            raise UnknownEmbeddingModel(request.model_name) from None
        texts = tuple(i for i in request.inputs if isinstance(i, str))
        tokens = tuple(i for i in request.inputs if isinstance(i, tuple))  # token ids: the API layer never mixes them
        if tokens and not any(p.embeds_tokens for p in model.providers):
            types = ", ".join(sorted({p.type_name for p in model.providers}))
            raise InvalidRequest.at(
                "input",
                f"token ids as input: embedding model {model.name!r} has no provider that takes them (its provider "
                f"types: {types}; the openai type does): send the texts",
            )
        inference_id = uuid7()
        started = time.perf_counter()
        ctx = CallContext(transport=self.transport, credentials=request.credentials)
        attempts: list[Attempt] = []

        async def call(step: ModelStep, provider: Provider, ctx: CallContext) -> EmbeddingResponse:
            if tokens:
                return await provider.embed_tokens(tokens, ctx, dimensions=request.dimensions)
            return await provider.embed(texts, ctx, dimensions=request.dimensions)

        done = partial(
            Done, inference_id, "embedding", "", started, attempts, dryrun=request.dryrun, model_name=model.name
        )

        try:
            routed = await route(model_steps(model), NON_STREAMING, call, ctx, attempts)
        except AllAttemptsFailed:
            await self.finisher.finish(done(error="all attempts failed"))
            raise
        except asyncio.CancelledError:  # route recorded the abandoned call; finish without waiting
            self.finisher.finish_now(done(error=ABANDONED))
            raise
        response = routed.value
        attempts.append(Attempt.succeeded(routed.names, routed.started_ms, routed.t0, response))
        provider_name = routed.provider.name

        def rows() -> list[Record]:
            vectors = response.embeddings
            record = EmbeddingInferenceRecord(
                id=inference_id,
                created_at=time_of(inference_id),
                embedding_model_name=model.name,
                model_provider_name=provider_name,
                input=list(request.inputs),
                num_inputs=len(request.inputs),
                dimensions=len(vectors[0]) if vectors else None,
                embeddings=[list(v) for v in vectors],
                tags=dict(request.tags),
                processing_time_ms=int((time.perf_counter() - started) * 1000),
                input_tokens=storable(response.usage).input_tokens,
                cost=money(response.cost),
                cached=False,
                config_hash=self.config.source_hash,
                api_key_public_id=request.api_key_public_id,
            )
            return [record]

        await self.finisher.finish(done(usage=response.usage, cost=response.cost, rows=rows))
        return EmbeddingResult(
            inference_id, model.name, provider_name, response.embeddings, response.usage, response.cost, tuple(attempts)
        )
