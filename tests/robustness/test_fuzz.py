"""Schemathesis against the gateway's own `GET /openapi.json`: every operation, valid and invalid requests from a
fixed seed. No answer may be a 5xx, and no refused request may leave a row.

`LSD_FUZZ_EXAMPLES` sets the examples per operation and generation mode (positive: bodies the document
describes; negative: ones it rules out) (CI: the default below, about a minute;
`make soak`: thousands of requests). The count of requests and of 5xx answers is printed at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis import BaseSchema, Case, GenerationMode

from lsd.api.openapi import OPERATIONS
from tests.robustness.conftest import Gateway

EXAMPLES = int(os.environ.get("LSD_FUZZ_EXAMPLES", "30"))
SEED = int(os.environ.get("LSD_FUZZ_SEED", "18"))


@pytest.fixture(scope="module")
def api_schema(gateway: Gateway) -> BaseSchema:
    """The gateway's own document, as a client fetches it."""
    return schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    """One keep-alive connection for the fuzz, as a client would hold it."""
    with requests.Session() as s:
        yield s


def _runs() -> list[tuple[str, str, GenerationMode]]:
    """Each operation in each mode; negative only where something can be invalid (a body, a query, a UUID)."""
    runs = []
    for method, path, _summary, body, query in OPERATIONS:
        runs.append((method, path, GenerationMode.POSITIVE))
        if body is not None or query or "_id}" in path:
            runs.append((method, path, GenerationMode.NEGATIVE))
    return runs


@pytest.mark.parametrize(("method", "path", "mode"), _runs(), ids=lambda v: getattr(v, "value", v))
def test_no_input_gets_a_5xx(
    api_schema: BaseSchema, gateway: Gateway, session: requests.Session, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def fuzz(case: Case) -> None:
        response = case.call(base_url=gateway.base_url, session=session, timeout=30)
        gateway.note(case.method, case.path, response.status_code, response.content)
        assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])

    fuzz()


def test_fuzzed_requests_left_no_rows_when_refused(gateway: Gateway) -> None:
    """Runs after the fuzz (same module, same gateway): the counts it noted against the rows in PostgreSQL."""
    print(f"\nfuzz: {gateway.requests} requests, {len(gateway.server_errors)} answered 5xx; {dict(gateway.answers)}")
    assert gateway.requests > 0
    assert gateway.server_errors == []
    gateway.assert_no_rows_from_refusals()
