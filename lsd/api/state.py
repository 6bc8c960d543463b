"""The typed state the lifespan yields to every request."""

from __future__ import annotations

from typing import TypedDict

from lsd.auth import AuthService
from lsd.config.model import Config
from lsd.feedback import FeedbackService
from lsd.inference.batch import BatchService
from lsd.inference.embeddings import Embedder
from lsd.inference.run import Engine
from lsd.ratelimit.limiter import RateLimiter
from lsd.store.database import Database
from lsd.store.writer import Writer
from lsd.telemetry.metrics import Metrics


class AppState(TypedDict):
    config: Config
    engine: Engine
    batches: BatchService
    embedder: Embedder
    feedback: FeedbackService
    database: Database
    writer: Writer
    auth: AuthService
    limiter: RateLimiter
    metrics: Metrics
