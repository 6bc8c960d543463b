"""build_app(config, database_url): the Starlette app; its lifespan opens and closes every resource."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from lsd.api.access_log import AccessLog
from lsd.api.errors import handle_lsd_error, handle_not_found
from lsd.api.routes import ROUTES
from lsd.api.state import AppState
from lsd.config import load
from lsd.config.model import Config
from lsd.errors import LsdError
from lsd.feedback import FeedbackService
from lsd.inference.embeddings import Embedder
from lsd.inference.models import ModelTable
from lsd.inference.run import Engine
from lsd.inference.templates import Templates
from lsd.jobs.maintenance import maintenance_jobs
from lsd.jobs.runner import Job, JobRunner
from lsd.providers.transport import Transport
from lsd.store.admin import partition_upkeep
from lsd.store.database import Database
from lsd.store.recent import RecentInferences
from lsd.store.writer import Writer

PARTITION_UPKEEP_INTERVAL_S = 3600.0


def build_app(config: Config, database_url: str, *, models: ModelTable | None = None) -> Starlette:
    """The gateway as an ASGI app. Nothing connects until the lifespan starts."""
    model_table = models or ModelTable.from_config(config)
    embedding_models = ModelTable.embeddings_from_config(config)
    templates = Templates(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[AppState]:
        database = Database(
            database_url,
            min_size=config.gateway.database.pool_min_size,
            max_size=config.gateway.database.pool_max_size,
        )
        writer = Writer(database_url, config.gateway.observability)
        transport = Transport()
        ahead = config.gateway.database.partitions_ahead_days
        jobs = JobRunner(
            [
                Job("partitions", PARTITION_UPKEEP_INTERVAL_S, lambda: partition_upkeep(database, ahead)),
                *maintenance_jobs(config.gateway.observability, database),
            ]
        )
        await database.open(timeout_s=config.gateway.database.connect_timeout_s)
        try:
            await writer.open()
            await transport.open()
            await jobs.open()
            recent = RecentInferences()
            engine = Engine(
                config=config,
                models=model_table,
                transport=transport,
                recorder=writer,
                database=database,
                templates=templates,
                recent=recent,
            )
            feedback = FeedbackService(config=config, database=database, recent=recent, recorder=writer)
            embedder = Embedder(config=config, models=embedding_models, transport=transport, recorder=writer)
            yield AppState(
                config=config, engine=engine, embedder=embedder, feedback=feedback, database=database, writer=writer
            )
        finally:
            # Shutdown order protects rows: requests have drained; flush the writer before closing the pool.
            await jobs.close()
            await writer.close()
            await transport.close()
            await database.close()

    return Starlette(
        routes=ROUTES,
        middleware=[Middleware(AccessLog)],
        lifespan=lifespan,
        exception_handlers={LsdError: handle_lsd_error, HTTPException: handle_not_found},
    )


def from_environment() -> Starlette:
    """App factory for multi-worker serving: config path and URL come from the environment set by `lsd serve`."""
    return build_app(load(os.environ["LSD_CONFIG"]), os.environ["LSD_DATABASE_URL"])
