"""The console's route table, mounted at /ui by lsd.app (nothing else here)."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lsd.api.console import (
    batches,
    datasets,
    evaluations,
    functions,
    inferences,
    keys,
    overview,
    sessions,
    signin,
)
from lsd.api.console.page import page, unknown_page

STATIC_DIR = Path(__file__).parent / "static"

ROUTES = [
    Route("/", page(overview.overview), methods=["GET"]),
    Route("/login", signin.login_form, methods=["GET"]),
    Route("/login", signin.login, methods=["POST"]),
    Route("/logout", signin.logout, methods=["POST"]),
    Route("/functions", page(functions.functions), methods=["GET"]),
    Route("/functions/{name}", page(functions.function), methods=["GET"]),
    Route("/inferences", page(inferences.inferences), methods=["GET"]),
    Route("/inferences/{inference_id}", page(inferences.inference), methods=["GET"]),
    Route("/inferences/{inference_id}/feedback", page(inferences.add_feedback), methods=["POST"]),
    Route("/episodes/{episode_id}", page(inferences.episode), methods=["GET"]),
    Route("/sessions", page(sessions.sessions), methods=["GET"]),
    Route("/session", page(sessions.session), methods=["GET"]),  # ?id=: any session id, `/` and `..` included
    Route("/evaluations", page(evaluations.runs), methods=["GET"]),
    Route("/evaluations/{run_id}", page(evaluations.run), methods=["GET"]),
    Route("/datasets", page(datasets.datasets), methods=["GET"]),
    Route("/datasets/{name}", page(datasets.dataset), methods=["GET"]),
    Route("/batches", page(batches.batches), methods=["GET"]),
    Route("/batches/{batch_id}", page(batches.batch), methods=["GET"]),
    Route("/keys", page(keys.key_list), methods=["GET"]),
    Route("/keys", page(keys.create), methods=["POST"]),
    Route("/keys/{public_id}/disable", page(keys.disable), methods=["POST"]),
    Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="console-static"),
    Route("/{rest:path}", unknown_page, methods=["GET", "POST"]),  # last: every other path, as an HTML 404
]
