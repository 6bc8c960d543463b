"""The scale benchmark's history: N chat inferences spread over D days, written with LSD's own COPY path.

    from bench.history import load
    stats = load(database_url, 1_000_000, days=90)

Each inference is what LSD records for one successful call to an OpenAI model (the rows of bench.inferences: the
inference, its payloads, one provider attempt and the attempt's raw request and response), with tags, and a share
of them get feedback on a boolean metric (`thumbs_up`) and a float metric (`quality`), both inference-level.
The rows are written oldest first, as a gateway writes them, in transactions of `batch` inferences through
lsd.store.bulk.BulkInserter (the writer's binary COPY). Deterministic for a given seed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
import psycopg

from lsd.records import (
    BooleanMetricFeedbackRecord,
    ChatInferenceDataRecord,
    ChatInferenceRecord,
    FloatMetricFeedbackRecord,
    ModelInferenceDataRecord,
    ModelInferenceRecord,
    Record,
)
from lsd.store import bulk, migrate

FUNCTIONS = tuple(f"fn{n}" for n in range(8))
# Traffic is skewed: fn0 takes about half of it, as one product's main call does.
FUNCTION_WEIGHTS = (48, 16, 12, 8, 6, 4, 3, 3)
VARIANTS = ("a", "b", "c")
BOOLEAN_METRIC = "thumbs_up"
FLOAT_METRIC = "quality"
USERS = 10_000


@dataclass(frozen=True, slots=True)
class LoadStats:
    """What `load` wrote: inferences, feedback rows per metric, and how long it took."""

    inferences: int
    boolean_feedback: int
    float_feedback: int
    seconds: float
    first_id: UUID | None
    last_id: UUID | None

    @property
    def rate(self) -> float:
        """Inferences per second (each is four rows, plus its feedback)."""
        return self.inferences / self.seconds if self.seconds else 0.0


def _uuid7(ms: int, rng: random.Random) -> UUID:
    """A UUIDv7 of millisecond `ms` with random bits from `rng` (reproducible, unlike lsd.ids.uuid7)."""
    rand = rng.getrandbits(74)
    return UUID(int=(ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1)))


def _inference(
    at: datetime, inference_id: UUID, episode: UUID, n: int, rng: random.Random, copies: bool
) -> tuple[Record, Record, Record, Record]:
    function = rng.choices(FUNCTIONS, FUNCTION_WEIGHTS)[0]
    variant = VARIANTS[rng.randrange(3)]
    attempt_id = _uuid7(int(at.timestamp() * 1000), rng)
    text = f"question {n}: what is {rng.randrange(1000)} + {rng.randrange(1000)}?"
    answer = f"the answer to question {n}"
    raw_request = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).decode()
    raw_response = orjson.dumps(
        {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(at.timestamp()),
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
            "system_fingerprint": "fp_fake",
        }
    ).decode()
    messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    tags = {"env": "prod" if rng.random() < 0.95 else "staging", "user_id": f"u{rng.randrange(USERS)}"}
    if n % 1000 == 0:
        tags["experiment"] = "rare"
    cost = Decimal("0.0000036")
    return (
        ChatInferenceRecord(
            id=inference_id,
            created_at=at,
            function_name=function,
            variant_name=variant,
            episode_id=episode,
            input={"messages": messages},
            output=[{"type": "text", "text": answer}],
            tool_params=None,
            inference_params={"chat_completion": {}},
            tags=tags,
            processing_time_ms=rng.randrange(200, 3000),
            ttft_ms=None,
            input_tokens=12,
            output_tokens=6,
            cost=cost,
            finish_reason="stop",
            cached=False,
            config_hash="4f2c9a0b7d1e",
            api_key_public_id=None,
        ),
        ChatInferenceDataRecord(
            inference_id=inference_id,
            created_at=at,
            # As the gateway records a call without templates: the rendered messages are the input's own and the
            # original response is the attempt's raw response, so both are left out (0012_payload_once.sql)
            # unless `copies` asks for the earlier layout that stored them again.
            rendered_input={"messages": messages} if copies else None,
            extra_body=None,
            extra_headers=None,
            original_response=raw_response if copies else None,
            rendered_input_is_input=not copies,
            original_response_is_raw=not copies,
        ),
        ModelInferenceRecord(
            id=attempt_id,
            created_at=at,
            inference_id=inference_id,
            inference_kind="chat",
            attempt=1,
            function_name=function,
            variant_name=variant,
            model_name="gpt",
            model_provider_name="openai",
            provider_type="openai",
            status="ok",
            error_kind=None,
            error=None,
            latency_ms=rng.randrange(150, 2900),
            ttft_ms=None,
            input_tokens=12,
            output_tokens=6,
            cost=cost,
            finish_reason="stop",
            cached=False,
            streamed=False,
        ),
        ModelInferenceDataRecord(
            model_inference_id=attempt_id,
            created_at=at,
            inference_id=inference_id,
            raw_request=raw_request,
            raw_response=raw_response,
            request_headers={"content-type": "application/json", "authorization": "[REDACTED]"},
            api_key_sha256=None,
        ),
    )


def _feedback(at: datetime, target: UUID, rng: random.Random, share: float) -> list[Record]:
    rows: list[Record] = []
    later = at + timedelta(seconds=rng.uniform(1, 600))
    ms = int(later.timestamp() * 1000)
    if rng.random() < share:
        rows.append(
            BooleanMetricFeedbackRecord(
                id=_uuid7(ms, rng),
                created_at=later,
                target_id=target,
                target_level="inference",
                metric_name=BOOLEAN_METRIC,
                value=rng.random() < 0.7,
                tags={},
                api_key_public_id=None,
            )
        )
    if rng.random() < share:
        rows.append(
            FloatMetricFeedbackRecord(
                id=_uuid7(ms, rng),
                created_at=later,
                target_id=target,
                target_level="inference",
                metric_name=FLOAT_METRIC,
                value=round(rng.random(), 4),
                tags={},
                api_key_public_id=None,
            )
        )
    return rows


def history(
    rows: int,
    start: datetime,
    end: datetime,
    *,
    seed: int = 0,
    feedback_share: float = 0.2,
    first: int = 0,
    copies: bool = False,
) -> Iterator[list[Record]]:
    """The records of `rows` inferences evenly spread over [start, end), oldest first, one list per inference
    (about four in ten episodes have more than one inference; `feedback_share` of inferences get each metric).
    `copies`: store the rendered input and original response again, as LSD did before migration 0012."""
    rng = random.Random(seed)
    span_ms = (end - start) / timedelta(milliseconds=1)
    start_ms = start.timestamp() * 1000
    episode = _uuid7(int(start_ms), rng)
    for n in range(first, first + rows):
        ms = int(start_ms + span_ms * (n - first) / rows)
        at = datetime.fromtimestamp(ms / 1000, tz=UTC)
        if rng.random() < 0.6:
            episode = _uuid7(ms, rng)
        inference_id = _uuid7(ms, rng)
        records: list[Record] = list(_inference(at, inference_id, episode, n, rng, copies))
        records.extend(_feedback(at, inference_id, rng, feedback_share))
        yield records


async def _write(
    url: str, groups: Iterator[list[Record]], batch: int, progress: bool
) -> tuple[int, int, int, UUID | None, UUID | None]:
    inserter = bulk.BulkInserter()
    counts = {"chat_inferences": 0, BooleanMetricFeedbackRecord.TABLE: 0, FloatMetricFeedbackRecord.TABLE: 0}
    first: UUID | None = None
    last: UUID | None = None
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        bulk.configure(conn)
        pending: list[Record] = []
        started = time.perf_counter()
        for done, group in enumerate(groups, 1):
            pending.extend(group)
            if first is None:
                first = group[0].id  # type: ignore[union-attr]
            last = group[0].id  # type: ignore[union-attr]
            if done % batch == 0:
                for table, n in (await inserter.insert(conn, pending, idempotent=False, cooperative=False)).items():
                    counts[table] = counts.get(table, 0) + n
                pending = []
                if progress and done % (batch * 20) == 0:
                    rate = done / (time.perf_counter() - started)
                    print(f"  loaded {done:,} inferences ({rate:,.0f}/s)", flush=True)
        if pending:
            for table, n in (await inserter.insert(conn, pending, idempotent=False, cooperative=False)).items():
                counts[table] = counts.get(table, 0) + n
    return (
        counts["chat_inferences"],
        counts[BooleanMetricFeedbackRecord.TABLE],
        counts[FloatMetricFeedbackRecord.TABLE],
        first,
        last,
    )


def ensure_partitions(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> None:
    """Daily partitions of every table from `start`'s day to a week after `end`."""
    days = (end.date() - start.date()).days + 8
    conn.execute("SELECT lsd_ensure_partitions(%s::date, %s)", (start.date(), days))


def load(
    database_url: str,
    rows: int,
    days: int = 90,
    *,
    seed: int = 0,
    batch: int = 5000,
    feedback_share: float = 0.2,
    end: datetime | None = None,
    migrated: bool = False,
    analyze: bool = True,
    progress: bool = False,
    copies: bool = False,
) -> LoadStats:
    """Write `rows` chat inferences spread over the `days` days before `end` (default: now) into the database at
    `database_url`: migrates it unless `migrated`, creates the partitions, writes oldest first in transactions of
    `batch` inferences with lsd.store.bulk (binary COPY), then ANALYZEs. Returns what it wrote and how fast.
    `copies`: the payload layout before migration 0012 (rendered input and original response stored again)."""
    finish = end or datetime.now(tz=UTC)
    start = finish - timedelta(days=days)
    with psycopg.connect(database_url, autocommit=True) as conn:
        if not migrated:
            migrate.apply(conn)
        ensure_partitions(conn, start, finish)
    started = time.perf_counter()
    groups = history(rows, start, finish, seed=seed, feedback_share=feedback_share, copies=copies)
    inferences, booleans, floats, first, last = asyncio.run(_write(database_url, groups, batch, progress))
    seconds = time.perf_counter() - started
    if analyze:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
    return LoadStats(inferences, booleans, floats, seconds, first, last)


def append(database_url: str, rows: int, *, seed: int = 1, minutes: float = 10.0, batch: int = 5000) -> LoadStats:
    """`rows` more inferences (with feedback) over the last `minutes`: the new rows of a statistics refresh."""
    end = datetime.now(tz=UTC)
    start = end - timedelta(minutes=minutes)
    started = time.perf_counter()
    groups = history(rows, start, end, seed=seed, first=10**9)
    inferences, booleans, floats, first, last = asyncio.run(_write(database_url, groups, batch, False))
    return LoadStats(inferences, booleans, floats, time.perf_counter() - started, first, last)
