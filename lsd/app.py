"""build_app(config, database_url): the Starlette app; its lifespan opens and closes every resource."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp

from lsd.api.access_log import AccessLog
from lsd.api.console.routes import ROUTES as CONSOLE_ROUTES
from lsd.api.errors import handle_lsd_error, handle_not_found, handle_unexpected
from lsd.api.front import FrontDoor
from lsd.api.guard import Guard
from lsd.api.routes import ROUTES
from lsd.api.state import AppState
from lsd.config import load_many
from lsd.config.model import Config
from lsd.errors import LsdError
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.jobs.access import access_jobs
from lsd.jobs.experiments import experiment_jobs
from lsd.jobs.maintenance import maintenance_jobs
from lsd.jobs.runner import Job, JobRunner
from lsd.runtime import open_runtime
from lsd.store.admin import partition_upkeep
from lsd.store.database import DatabaseUrls
from lsd.telemetry import logging as lsd_logging
from lsd.telemetry.logging import LineSink
from lsd.telemetry.metrics import Metrics

PARTITION_UPKEEP_INTERVAL_S = 3600.0
GC_GEN0_THRESHOLD = 20_000
METRICS_FLUSH_INTERVAL_S = 1.0  # how stale another worker's counts may be in a scrape


def build_app(config: Config, database_url: str | DatabaseUrls, *, models: ModelTable | None = None) -> Gateway:
    """The gateway as an ASGI app. Nothing connects until the lifespan starts."""
    model_table = models or ModelTable.from_config(config)
    embedding_models = ModelTable.embeddings_from_config(config)
    templates = Templates(config)
    access_log = LineSink("lsd.access")
    doors: list[FrontDoor] = []  # the app's front door, once starlette has built its stack (at its first call)

    def front(app: ASGIApp) -> ASGIApp:
        door = FrontDoor(app, Guard(config.gateway), AccessLog(access_log), tracing=config.gateway.otlp_traces.enabled)
        doors[:] = [door]
        origins = config.gateway.cors_allowed_origins
        if not origins:
            return door
        # Outside the front door: a browser's preflight carries no key and is answered here, before the Guard.
        # Keys go in a header, never cookies: no credentials mode (the console's session cookie stays same-origin).
        return CORSMiddleware(
            door,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=["retry-after", "x-request-id"],
            max_age=600,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        async with open_runtime(
            config, database_url, models=model_table, embedding_models=embedding_models, templates=templates
        ) as rt:
            rt.metrics.add_sampler(lambda: rt.metrics.set_in_flight(sum(door.in_flight for door in doors)))
            ahead = config.gateway.database.partitions_ahead_days
            jobs = JobRunner(
                [
                    Job("partitions", PARTITION_UPKEEP_INTERVAL_S, lambda: partition_upkeep(rt.database, ahead)),
                    *maintenance_jobs(config.gateway.observability, rt.database, rt.metrics),
                    *experiment_jobs(config, rt.database, rt.engine.allocations),
                    Job("metrics", METRICS_FLUSH_INTERVAL_S, _sampler(rt.metrics)),
                    *access_jobs(rt.auth, rt.limiter),
                    Job("batch_poller", config.gateway.batch.poll_interval_s, rt.batches.poll_pending),
                ]
            )
            await jobs.open()
            # Start-up objects (modules, config, compiled templates) never die: keep them out of every collection.
            gc.collect()
            gc.freeze()
            # A request allocates thousands of short-lived objects; with the default gen-0 threshold (700) the
            # collector runs several times per request. 20,000 cut the CPU per request by ~8% (bench/README.md).
            gc.set_threshold(GC_GEN0_THRESHOLD, 10, 10)
            try:
                yield AppState(services=rt)
            finally:
                # Requests have drained; jobs stop before open_runtime flushes the writer and closes the pool.
                await jobs.close()
                access_log.flush()

    return Gateway(
        front=front,
        routes=_routes(config),
        lifespan=lifespan,
        exception_handlers={
            LsdError: handle_lsd_error,
            HTTPException: handle_not_found,
            Exception: handle_unexpected,
        },
    )


class Gateway(Starlette):
    """Starlette with the front door (lsd.api.front) outside its middleware stack: POST /inference, the hot path,
    passes one layer instead of starlette's error middleware, the Guard, the access log and the router."""

    def __init__(self, *, front: Callable[[ASGIApp], ASGIApp], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front = front

    def build_middleware_stack(self) -> ASGIApp:
        return self.front(super().build_middleware_stack())


def _routes(config: Config) -> list[BaseRoute]:
    """The API's route table, and the console at /ui unless `[gateway.ui] enabled = false`."""
    console: list[BaseRoute] = [Mount("/ui", routes=CONSOLE_ROUTES)] if config.gateway.ui.enabled else []
    return [*ROUTES, *console]


def _sampler(metrics: Metrics) -> Callable[[], Awaitable[None]]:
    """Every worker flushes its pending counts and refreshes its gauges (pool, writer queue), not only the one a
    scrape reaches."""

    async def sample() -> None:
        metrics.sample()

    return sample


def from_environment() -> Starlette:
    """App factory for multi-worker serving: config path and URLs come from the environment set by `lsd serve`."""
    lsd_logging.configure()  # a spawned worker starts with Python's default logging
    return build_app(load_many(os.environ["LSD_CONFIG"].split(os.pathsep)), DatabaseUrls.from_environ(os.environ))
