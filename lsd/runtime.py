"""The process runtime: prepare the database, then open (and close, in order) pool, writer, transport and engine.

`lsd serve` (through the app lifespan) and `lsd evaluate` open the same runtime; only the lifespan adds jobs.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsd import __version__
from lsd.auth import AuthService
from lsd.config.model import Config
from lsd.datasets.service import DatasetService
from lsd.feedback import FeedbackService
from lsd.inference.batch import BatchService
from lsd.inference.embeddings import Embedder
from lsd.inference.models import ModelTable
from lsd.inference.run import Engine
from lsd.inference.telemetry import InferenceTelemetry
from lsd.inference.templates import Templates
from lsd.inference.workflow_runs import WorkflowRuns
from lsd.providers.transport import Transport
from lsd.ratelimit.limiter import RateLimiter
from lsd.store import admin, migrate
from lsd.store.database import Database, DatabaseUrls, connect_with_retry
from lsd.store.recent import RecentInferences
from lsd.store.writer import Writer
from lsd.telemetry.metrics import Metrics
from lsd.telemetry.tracing import Tracing

if TYPE_CHECKING:
    from lsd.telemetry.otlp import OtlpPipeline  # imported for real by build_tracing, only with tracing on

OTLP_MODULE = "lsd.telemetry.otlp"


def prepare_database(config: Config, url: str | DatabaseUrls) -> list[str]:
    """Migrate (or, with automatic migrations disabled, check), create partitions ahead, snapshot the config.

    Runs on the session URL (the migration lock is a session lock). Returns the migrations applied. Raises
    DatabaseUnreachable and migrate.MigrationError."""
    db = config.gateway.database
    applied: list[str] = []
    with connect_with_retry(DatabaseUrls.of(url).session_url, db.connect_timeout_s) as conn:
        if db.disable_automatic_migrations:
            migrate.check(conn)
        else:
            applied = migrate.apply(conn)
        admin.ensure_partitions(conn, db.partitions_ahead_days)
        admin.save_config_snapshot(conn, config.source_hash, config.source_text, __version__)
    return applied


@dataclass(frozen=True, slots=True)
class Runtime:
    """The open resources and the services built on them."""

    config: Config
    database: Database
    writer: Writer
    transport: Transport
    recent: RecentInferences
    engine: Engine
    batches: BatchService
    feedback: FeedbackService
    embedder: Embedder
    auth: AuthService
    limiter: RateLimiter
    metrics: Metrics
    tracing: Tracing | None
    datasets: DatasetService
    workflow_runs: WorkflowRuns


def build_metrics(config: Config) -> Metrics:
    buckets = config.gateway.metrics
    return Metrics(
        latency_buckets=buckets.latency_buckets,
        overhead_buckets=buckets.overhead_buckets,
        ttft_buckets=buckets.ttft_buckets,
        configured_models=frozenset(config.models),
    )


def build_tracing(config: Config) -> Tracing | None:
    """None unless `[gateway.export.otlp.traces] enabled`: then no span object is ever made.

    Only then is the OpenTelemetry SDK with its OTLP exporters imported (lsd.telemetry.otlp): ~14 MiB of RSS per
    worker, gRPC's ~10 of it, that a gateway with tracing off does not load. Raises ValueError for an unsupported
    protocol."""
    traces = config.gateway.otlp_traces
    if not traces.enabled:
        return None
    pipeline: type[OtlpPipeline] = importlib.import_module(OTLP_MODULE).OtlpPipeline
    return Tracing(
        pipeline(protocol=traces.protocol, endpoint=traces.endpoint, extra_headers=traces.extra_headers),
        include_content=traces.include_content,
    )


def access_sampler(metrics: Metrics, auth: AuthService, limiter: RateLimiter) -> Callable[[], None]:
    """Moves the auth failures and rate-limit refusals counted since the last sample into the metrics (the
    request path only adds to plain Counters)."""
    exported: dict[tuple[str, str], int] = {}

    def sample() -> None:
        for kind, counts, counter in (
            ("auth", auth.failures, metrics.auth_failures),
            ("limit", limiter.refusals, metrics.rate_limit_refusals),
        ):
            for label, count in list(counts.items()):
                new = count - exported.get((kind, label), 0)
                if new > 0:
                    counter.labels(label).inc(new)
                    exported[(kind, label)] = count
        # Requests admitted during an outage: with a stale key verdict, or with no rate limit at all (fail_open).
        for key, total, plain in (
            (("auth", "stale"), auth.stale_hits, metrics.auth_stale_verdicts),
            (("limit", "failed_open"), limiter.failed_open, metrics.rate_limit_failed_open),
        ):
            new = total - exported.get(key, 0)
            if new > 0:
                plain.inc(new)
                exported[key] = total

    return sample


@contextlib.asynccontextmanager
async def open_runtime(
    config: Config,
    database_url: str | DatabaseUrls,
    *,
    models: ModelTable | None = None,
    embedding_models: ModelTable | None = None,
    templates: Templates | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> AsyncIterator[Runtime]:
    """Open everything; on exit flush the writer before closing the pool (shutdown order protects rows).

    `database_url` is the primary's URL, or all three (see lsd.store.database). Raises ConfigError (from the model
    tables and templates) before connecting anything."""
    model_table = ModelTable.from_config(config) if models is None else models
    embedding_table = ModelTable.embeddings_from_config(config) if embedding_models is None else embedding_models
    compiled = Templates(config) if templates is None else templates
    urls = DatabaseUrls.of(database_url)
    db = config.gateway.database
    metrics = build_metrics(config) if metrics is None else metrics
    database = Database.from_urls(
        urls,
        min_size=db.pool_min_size,
        max_size=db.pool_max_size,
        prepared_statements=db.prepared_statements,
        acquire_timeout_s=db.acquire_timeout_s,
        metrics=metrics,
    )
    tracing = build_tracing(config) if tracing is None else tracing
    writer = Writer(
        urls.primary, config.gateway.observability, metrics=metrics, prepare_threshold=database.prepare_threshold
    )
    transport = Transport()
    await database.open(timeout_s=config.gateway.database.connect_timeout_s)
    try:
        if tracing is not None:
            tracing.open()

        def sample() -> None:
            pool = database.stats()
            metrics.set_pool(pool.size, pool.size - pool.available, pool.waiting, pool.max_size)
            stats = writer.stats
            totals = {name: getattr(stats, name) for name in metrics.writer_totals}
            metrics.set_writer_state(stats.queued_rows, stats.spool_bytes, stats.queued_bytes, totals)

        metrics.add_sampler(sample)
        await writer.open()
        await transport.open()
        recent = RecentInferences()
        limiter = RateLimiter(config.rate_limiting, database)
        auth = AuthService(config.gateway.auth, database)
        metrics.add_sampler(access_sampler(metrics, auth, limiter))
        engine = Engine(
            config=config,
            models=model_table,
            transport=transport,
            recorder=writer,
            database=database,
            templates=compiled,
            recent=recent,
            limiter=limiter,
            telemetry=InferenceTelemetry(metrics, tracing),
        )
        # dicl variants embed their input through the same Embedder as /openai/v1/embeddings
        embedder = Embedder(config=config, models=embedding_table, transport=transport, finisher=engine.finisher)
        engine.embedder = embedder
        yield Runtime(
            config=config,
            database=database,
            writer=writer,
            transport=transport,
            recent=recent,
            engine=engine,
            batches=BatchService(
                engine, database, config.gateway.batch.poll_interval_s, tracing=tracing, metrics=metrics
            ),
            feedback=FeedbackService(
                config=config, database=database, recent=recent, recorder=writer, metrics=metrics, tracing=tracing
            ),
            embedder=embedder,
            auth=auth,
            limiter=limiter,
            metrics=metrics,
            tracing=tracing,
            datasets=DatasetService(config, database),
            workflow_runs=WorkflowRuns(config, database),
        )
        if limiter.active:
            await limiter.flush(everything=True)  # leased capacity goes back for the other replicas
    finally:
        await writer.close()
        metrics.flush()  # a worker's last counts reach the multiprocess files before it exits
        if tracing is not None:
            await tracing.close()
        await transport.close()
        await database.close()
