"""build_app(config, database_url): the Starlette app; its lifespan opens and closes every resource."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from lsd.api.access_log import AccessLog
from lsd.api.errors import handle_lsd_error, handle_not_found
from lsd.api.guard import Guard
from lsd.api.routes import ROUTES
from lsd.api.state import AppState
from lsd.config import load
from lsd.config.model import Config
from lsd.errors import LsdError
from lsd.inference.models import ModelTable
from lsd.inference.templates import Templates
from lsd.jobs.access import access_jobs
from lsd.jobs.maintenance import maintenance_jobs
from lsd.jobs.runner import Job, JobRunner
from lsd.runtime import open_runtime
from lsd.store.admin import partition_upkeep
from lsd.telemetry import logging as lsd_logging

PARTITION_UPKEEP_INTERVAL_S = 3600.0


def build_app(config: Config, database_url: str, *, models: ModelTable | None = None) -> Starlette:
    """The gateway as an ASGI app. Nothing connects until the lifespan starts."""
    model_table = models or ModelTable.from_config(config)
    embedding_models = ModelTable.embeddings_from_config(config)
    templates = Templates(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        async with open_runtime(
            config, database_url, models=model_table, embedding_models=embedding_models, templates=templates
        ) as rt:
            ahead = config.gateway.database.partitions_ahead_days
            jobs = JobRunner(
                [
                    Job("partitions", PARTITION_UPKEEP_INTERVAL_S, lambda: partition_upkeep(rt.database, ahead)),
                    *maintenance_jobs(config.gateway.observability, rt.database),
                    *access_jobs(rt.auth, rt.limiter),
                ]
            )
            await jobs.open()
            # Start-up objects (modules, config, compiled templates) never die: keep them out of every collection.
            gc.collect()
            gc.freeze()
            try:
                yield AppState(
                    config=config,
                    engine=rt.engine,
                    embedder=rt.embedder,
                    feedback=rt.feedback,
                    database=rt.database,
                    writer=rt.writer,
                    auth=rt.auth,
                    limiter=rt.limiter,
                )
            finally:
                # Requests have drained; jobs stop before open_runtime flushes the writer and closes the pool.
                await jobs.close()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(AccessLog), Middleware(Guard, gateway=config.gateway)],
        lifespan=lifespan,
        exception_handlers={LsdError: handle_lsd_error, HTTPException: handle_not_found},
    )


def from_environment() -> Starlette:
    """App factory for multi-worker serving: config path and URL come from the environment set by `lsd serve`."""
    lsd_logging.configure()  # a spawned worker starts with Python's default logging
    return build_app(load(os.environ["LSD_CONFIG"]), os.environ["LSD_DATABASE_URL"])
