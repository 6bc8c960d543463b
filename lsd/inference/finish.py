"""The one finishing step of every inference (plain, streamed, embedding; answered or failed).

`Finisher.finish` settles the rate-limit reservation by what was used, lets feedback target the inference at once,
records its rows (waiting for the commit when `async_writes = false`) and emits its metrics and spans. A stream
abandoned by its client, finished while its request is being cancelled, uses `finish_now`: the same step, queuing
its rows without waiting. Batch results are the exception, by design: their rows are committed together with the
batch's completion (exactly once across processes, lsd.store.batch.complete), so they are built by the same
functions (lsd.inference.recording) but not queued here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from lsd.inference.recording import Attempt, attempt_records
from lsd.inference.telemetry import InferenceTelemetry
from lsd.ratelimit.limiter import Reservation
from lsd.records import Record
from lsd.store.recent import InferenceTarget, RecentInferences
from lsd.types import ProviderRequest, Usage

NOTHING_USED = Usage(0, 0)


class Recorder(Protocol):
    """Where rows go (the store's Writer): `record` honours async_writes; `submit` never waits. With `enabled`
    false (`[gateway.observability] enabled = false`) both drop what they get, so callers may skip building rows."""

    enabled: bool

    async def record(self, records: Sequence[Record]) -> None: ...

    def submit(self, records: Sequence[Record]) -> None: ...


@dataclass(slots=True)
class Done:
    """One inference as it ended: who it was, every provider attempt, and what it used and produced."""

    inference_id: UUID
    kind: str  # chat | json | embedding: the inference table and model_inferences.inference_kind
    function_name: str  # "" for an embedding
    started: float  # perf_counter() when the request arrived
    attempts: Sequence[Attempt]
    dryrun: bool = False
    episode_id: UUID | None = None
    reservation: Reservation | None = None
    usage: Usage | None = None  # None when no provider answered
    cost: float | None = None
    finish_reason: str | None = None
    error: str | None = None  # None when answered
    stream: bool = False
    ttft_s: float | None = None
    cache_read: bool = False
    rows: Callable[[], list[Record]] | None = None  # the inference-level rows (None when it failed)
    target: InferenceTarget | None = None  # what feedback may target before the rows are committed
    request: ProviderRequest | None = None  # for spans
    output: Callable[[], Any] | None = None  # the stored output, for spans that include content
    model_name: str | None = None  # telemetry's labels when no attempt names them (an embedding's model)
    tags: Mapping[str, str] | None = None  # the request's: kept on the attempts when no inference row holds them


@dataclass
class Finisher:
    recorder: Recorder
    recent: RecentInferences | None = None
    telemetry: InferenceTelemetry | None = None

    async def finish(self, done: Done) -> None:
        """Finish, waiting for the rows when the recorder does (`async_writes = false`)."""
        records = self._close(done)
        try:
            if records:
                await self.recorder.record(records)  # cancelled while waiting, the rows stay queued
        finally:
            if self.telemetry is not None:
                self.telemetry.finished(done)

    def finish_now(self, done: Done) -> None:
        """Finish without waiting: rows are queued (safe while the request is being cancelled)."""
        records = self._close(done)
        if records:
            self.recorder.submit(records)
        if self.telemetry is not None:
            self.telemetry.finished(done)

    def _close(self, done: Done) -> list[Record] | None:
        if done.usage is None:
            settle(done.reservation, NOTHING_USED, 0.0)
        else:
            settle(done.reservation, done.usage, done.cost)
        if done.dryrun:
            return None
        if done.target is not None and self.recent is not None:
            self.recent.add(done.target)
        if not self.recorder.enabled:  # no rows built for a gateway that records nothing
            return None
        function_name = done.function_name or None
        rows = done.rows() if done.rows is not None else []
        # rows[0] is the inference's own row: its input and output texts are stored once (payload_refs)
        return rows + attempt_records(
            done.inference_id,
            done.kind,
            function_name,
            done.attempts,
            rows[0] if rows else None,
            None if rows else done.tags,  # unanswered: its session and user are found by its attempts
        )


def settle(reservation: Reservation | None, usage: Usage, cost: float | None) -> None:
    """Correct a rate-limit reservation by what the call really used (an unknown figure keeps the estimate)."""
    if reservation is not None:
        known = usage.input_tokens is not None or usage.output_tokens is not None
        tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0) if known else None
        reservation.settle(tokens=tokens, cost=cost)
