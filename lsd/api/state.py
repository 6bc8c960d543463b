"""The typed state the lifespan yields to every request."""

from __future__ import annotations

from typing import TypedDict

from lsd.config.model import Config
from lsd.feedback import FeedbackService
from lsd.inference.embeddings import Embedder
from lsd.inference.run import Engine
from lsd.store.database import Database
from lsd.store.writer import Writer
from lsd.telemetry.metrics import Metrics


class AppState(TypedDict):
    config: Config
    engine: Engine
    embedder: Embedder
    feedback: FeedbackService
    database: Database
    writer: Writer
    metrics: Metrics
