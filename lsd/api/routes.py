"""The route table, and nothing else."""

from __future__ import annotations

from starlette.routing import Route

from lsd.api import inference, status

ROUTES = [
    Route("/health", status.health, methods=["GET"]),
    Route("/status", status.status, methods=["GET"]),
    Route("/inference", inference.inference, methods=["POST"]),
]
