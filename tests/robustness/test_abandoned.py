"""A request cut by `gateway.request_timeout_s` (504) still leaves its trace: the provider call it abandoned is a
model_inferences row with error_kind `timeout`, after the attempts that failed before it."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from tests.support.gateway import in_process_gateway

CONFIG = """
[gateway]
request_timeout_s = 0.3
[models.failing_then_slow]
routing = ["broken", "slow"]
[models.failing_then_slow.providers.broken]
type = "dummy"
model_name = "error"
[models.failing_then_slow.providers.slow]
type = "dummy"
model_name = "slow"
latency_ms = 5000
"""
MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_timed_out_request_records_its_abandoned_attempt(database_url: str, stream: bool) -> None:
    """Plain, and streamed before its first chunk: the same fallback loop records the abandoned call."""
    body = {"model_name": "failing_then_slow", "input": MESSAGE, "stream": stream}
    async with in_process_gateway(CONFIG, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        answer = await http.post("/inference", json=body, timeout=10)
        assert answer.status_code == 504 and answer.json()["error_code"] == "request_timeout", answer.text
        rows: list[tuple[object, ...]] = []
        for _ in range(200):  # the rows are queued without waiting: the writer commits them soon after
            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    "SELECT attempt, model_provider_name, status, error_kind FROM model_inferences ORDER BY attempt"
                ).fetchall()
            if len(rows) == 2:
                break
            await asyncio.sleep(0.05)
    assert [r[:3] for r in rows] == [(1, "broken", "error"), (2, "slow", "error")]
    assert rows[0][3] != "timeout" and rows[1][3] == "timeout"
