"""The dataset pages: every dataset with its live datapoints, and one dataset's newest datapoints."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from lsd.api.console.access import Viewer
from lsd.api.console.page import services
from lsd.api.console.render import render
from lsd.store import console
from lsd.store import datasets as store

MAX_DATAPOINTS = 100


async def datasets(request: Request[Any], viewer: Viewer) -> Response:
    return render(request, "datasets.html", viewer, datasets=await console.datasets(services(request).database))


async def dataset(request: Request[Any], viewer: Viewer) -> Response:
    name = request.path_params["name"]
    query = store.DatapointQuery(dataset_name=name, limit=MAX_DATAPOINTS)
    rows = await store.list_rows(services(request).database, query)
    return render(request, "dataset.html", viewer, name=name, rows=rows, limit=MAX_DATAPOINTS)
