"""A provider that repeats the API key (a 401 saying "Incorrect API key provided: sk-…", a 200 echoing it): the
key reaches neither the client's answer, nor the rows (model_inferences.error, model_inference_data.raw_response,
the inference's output), nor the log, for an `env::` key and a `dynamic::` one, streamed or not."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import orjson
import psycopg
import pytest

from lsd.providers.base import REDACTED
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import in_process_gateway
from tests.support.polling import eventually

ENV_KEY = "sk-proj-envkey-0123456789abcdefXYZW"
DYNAMIC_KEY = "sk-proj-dynkey-9876543210fedcbaQRST"
ENV_VAR = "LSD_TEST_SCRUBBED_KEY"
MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}
TABLES = ("model_inferences", "model_inference_data", "chat_inferences", "chat_inference_data")


def fragments(key: str) -> tuple[str, ...]:
    """What the fake's `leak` scenarios show of `key`: whole, its start, its end, the mask between."""
    return (key, key[:8], key[-4:], "*" * 20)


def model(name: str, api_base: str, model_name: str, key_location: str) -> str:
    return f"""
[models.{name}]
routing = ["openai"]
[models.{name}.providers.openai]
type = "openai"
model_name = "{model_name}"
api_base = "{api_base}"
api_key_location = "{key_location}"
"""


def config(api_base: str) -> str:
    return f"""
[gateway.observability]
async_writes = false
{model("refused_env", api_base, "leak-401", f"env::{ENV_VAR}")}
{model("refused_dynamic", api_base, "leak-401", "dynamic::openai_key")}
{model("echoed_env", api_base, "leak", f"env::{ENV_VAR}")}
{model("echoed_dynamic", api_base, "leak", "dynamic::openai_key")}
"""


@pytest.fixture
async def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv(ENV_VAR, ENV_KEY)
    # The fake takes any key: the model names make it repeat the one it got.
    async with (
        FakeOpenAI() as openai,
        in_process_gateway(config(openai.api_base), database_url) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as http,
    ):
        yield http


def stored(database_url: str) -> str:
    """Every row of the inference tables, as text."""
    with psycopg.connect(database_url) as conn:
        return "\n".join(
            str(row[0]) for table in TABLES for row in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t")
        )


def errors(database_url: str) -> list[tuple[str | None, str | None]]:
    with psycopg.connect(database_url) as conn:
        query = """SELECT i.error, d.raw_response FROM model_inferences i
                   JOIN model_inference_data d ON d.model_inference_id = i.id WHERE i.status = 'error'"""
        return conn.execute(query).fetchall()


def request(kind: str, name: str, stream: bool) -> tuple[dict[str, object], str]:
    body: dict[str, object] = {"model_name": f"{name}_{kind}", "input": MESSAGE, "stream": stream}
    if kind == "dynamic":
        body["credentials"] = {"openai_key": DYNAMIC_KEY}
    return body, ENV_KEY if kind == "env" else DYNAMIC_KEY


def answered_text(answer: httpx.Response, stream: bool) -> str:
    """The text of a TensorZero answer, or of the deltas of its stream."""
    if not stream:
        return "".join(block["text"] for block in answer.json()["content"])
    events = [line.removeprefix("data: ") for line in answer.text.splitlines() if line.startswith("data: {")]
    return "".join(block.get("text", "") for event in events for block in orjson.loads(event).get("content", ()))


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", ["env", "dynamic"])
async def test_a_refusal_repeating_the_key_is_relayed_and_stored_without_it(
    client: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture, kind: str, stream: bool
) -> None:
    caplog.set_level(logging.DEBUG)
    body, key = request(kind, "refused", stream)
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 502
    assert REDACTED in answer.text and "Incorrect API key provided" in answer.text
    if not stream:  # a stream that fails before its first chunk is recorded later, if at all: checked below
        [(error, raw_response)] = errors(database_url)
        assert error is not None and REDACTED in error
        assert raw_response is not None and REDACTED in raw_response
    rows = stored(database_url)
    for fragment in fragments(key):
        assert fragment not in answer.text, fragment
        assert fragment not in rows, fragment
        assert fragment not in logged(caplog), fragment


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("kind", ["env", "dynamic"])
async def test_an_answer_repeating_the_key_is_answered_and_stored_without_it(
    client: httpx.AsyncClient, database_url: str, caplog: pytest.LogCaptureFixture, kind: str, stream: bool
) -> None:
    """The client still gets the answer, with the key replaced in it as in the rows: the key of an `env::`
    credential is the gateway's, never the client's to see."""
    caplog.set_level(logging.DEBUG)
    body, key = request(kind, "echoed", stream)
    answer = await client.post("/inference", json=body)
    assert answer.status_code == 200
    assert answered_text(answer, stream) == f"echo: hello {REDACTED}"
    rows = eventually(lambda: (text := stored(database_url)) and "raw_response" in text and text)
    assert REDACTED in rows
    for fragment in fragments(key):
        assert fragment not in answer.text, fragment
        assert fragment not in rows, fragment
        assert fragment not in logged(caplog), fragment
