"""A bug on a request path (here: a provider raising an exception outside LsdError) is a JSON 500 carrying the
`error_id` that the log line with its traceback names, on the front door's own path and on starlette's routes."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import httpx
import pytest

from lsd.api.guard import Guard
from lsd.providers.dummy import DummyProvider
from tests.support.configs import echo_chat
from tests.support.gateway import in_process_gateway

MESSAGES = [{"role": "user", "content": "hello"}]


async def _broken(*args: Any, **kwargs: Any) -> NoReturn:
    raise RuntimeError("a bug")


async def test_an_unexpected_exception_is_a_json_500_with_a_logged_id(
    database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(DummyProvider, "infer", _broken)
    caplog.set_level(logging.ERROR, logger="lsd.api")
    async with in_process_gateway(echo_chat(), database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        native = await http.post("/inference", json={"function_name": "chat", "input": {"messages": MESSAGES}})
        openai = await http.post(
            "/openai/v1/chat/completions", json={"model": "tensorzero::function_name::chat", "messages": MESSAGES}
        )
        after = await http.get("/status")  # the connection and the gateway carry on
    assert native.status_code == 500 and openai.status_code == 500
    assert native.headers["content-type"] == "application/json"
    body = native.json()
    assert body["error_code"] == "internal_error" and body["error_id"] in body["error"]
    error = openai.json()["error"]
    assert error["code"] == "internal_error"
    logged = [r for r in caplog.records if r.name == "lsd.api" and r.levelno == logging.ERROR]
    assert [r.getMessage().split()[2] for r in logged] == [body["error_id"], error["error_id"]]
    assert all(r.exc_info is not None for r in logged)
    assert after.status_code == 200


async def test_a_bug_in_the_guard_is_a_json_500(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with in_process_gateway(echo_chat(), database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        monkeypatch.setattr(Guard, "_check_headers", _broken_check)
        answer = await http.get("/status")
    assert answer.status_code == 500 and answer.json()["error_code"] == "internal_error", answer.text


def _broken_check(*args: Any) -> NoReturn:
    raise RuntimeError("a bug")
