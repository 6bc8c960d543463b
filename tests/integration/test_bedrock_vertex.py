"""aws_bedrock and gcp_vertex_* behind a running gateway: inferences are answered and recorded like any other
(usage, provider type, redacted headers), and no AWS secret, session token, signature, Google token or private key
reaches the rows or the log, also when the provider repeats its credential."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from lsd.providers.base import REDACTED
from tests.fakes.bedrock_server import FakeBedrock
from tests.fakes.vertex_server import FakeVertex
from tests.support.gateway import in_process_gateway
from tests.support.polling import eventually

ACCESS_KEY, SECRET_KEY, TOKEN = (
    "AKIDINTEGRATION00042",
    "integration-secret/0123456789abcdefgh",
    "IQoJIntegrationToken42",
)
TABLES = ("model_inferences", "model_inference_data", "chat_inferences", "chat_inference_data")
MESSAGE = {"messages": [{"role": "user", "content": "hello"}]}


def config(bedrock: FakeBedrock, vertex: FakeVertex, key_file: Path) -> str:
    vertex_keys = f'location = "us-central1"\nproject_id = "fake-project"\napi_base = "{vertex.base_url}"\n'
    vertex_keys += f'credential_location = "path::{key_file}"'
    return f"""
[gateway.observability]
async_writes = false

[models.claude_bedrock]
routing = ["bedrock"]
[models.claude_bedrock.providers.bedrock]
type = "aws_bedrock"
model_id = "anthropic.claude-haiku-4-5-20251001-v1:0"
region = "us-east-1"
endpoint_url = "{bedrock.url}"

[models.bedrock_leak]
routing = ["bedrock"]
[models.bedrock_leak.providers.bedrock]
type = "aws_bedrock"
model_id = "leak"
region = "us-east-1"
endpoint_url = "{bedrock.url}"

[models.gemini_vertex]
routing = ["vertex"]
[models.gemini_vertex.providers.vertex]
type = "gcp_vertex_gemini"
model_id = "leak"
{vertex_keys}

[models.claude_vertex]
routing = ["vertex"]
[models.claude_vertex.providers.vertex]
type = "gcp_vertex_anthropic"
model_id = "claude-haiku-4-5@20251001"
{vertex_keys}
"""


@pytest.fixture
async def client(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeVertex]]:
    for name, value in (("AWS_ACCESS_KEY_ID", ACCESS_KEY), ("AWS_SECRET_ACCESS_KEY", SECRET_KEY)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with (
        FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, token=TOKEN) as bedrock,
        FakeVertex() as vertex,
    ):
        key_file = tmp_path / "vertex-key.json"
        key_file.write_bytes(orjson.dumps(vertex.service_account_info()))
        async with (
            in_process_gateway(config(bedrock, vertex, key_file), database_url) as base_url,
            httpx.AsyncClient(base_url=base_url, timeout=30) as http,
        ):
            yield http, vertex


def stored(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        return "\n".join(
            str(row[0]) for table in TABLES for row in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t")
        )


def attempts(database_url: str) -> list[tuple[str, str, int, int, dict[str, str]]]:
    with psycopg.connect(database_url) as conn:
        query = """SELECT i.model_name, i.provider_type, i.input_tokens, i.output_tokens, d.request_headers
                   FROM model_inferences i JOIN model_inference_data d ON d.model_inference_id = i.id
                   WHERE i.status = 'ok' ORDER BY i.id"""
        return conn.execute(query).fetchall()


def answered_text(answer: httpx.Response, stream: bool) -> str:
    if not stream:
        return "".join(block["text"] for block in answer.json()["content"])
    events = [line.removeprefix("data: ") for line in answer.text.splitlines() if line.startswith("data: {")]
    return "".join(block.get("text", "") for event in events for block in orjson.loads(event).get("content", ()))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_inferences_are_recorded_without_credentials(
    client: tuple[httpx.AsyncClient, FakeVertex],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    caplog.set_level(logging.DEBUG)
    http, vertex = client
    expected = {
        "claude_bedrock": "echo: hello",
        "bedrock_leak": f"echo: hello {REDACTED}",  # the fake repeats the access key id
        "gemini_vertex": f"echo: {REDACTED}",  # the fake answers with the Bearer token
        "claude_vertex": "echo: hello",
    }
    for model_name, text in expected.items():
        answer = await http.post("/inference", json={"model_name": model_name, "input": MESSAGE, "stream": stream})
        assert answer.status_code == 200, answer.text
        assert answered_text(answer, stream) == text
    rows = eventually(lambda: len(attempts(database_url)) == len(expected) and attempts(database_url))
    types = {
        "claude_bedrock": "aws_bedrock",
        "bedrock_leak": "aws_bedrock",
        "gemini_vertex": "gcp_vertex_gemini",
        "claude_vertex": "gcp_vertex_anthropic",
    }
    assert sorted(row[0] for row in rows) == sorted(types)
    for model_name, provider_type, input_tokens, output_tokens, headers in rows:
        assert provider_type == types[model_name]
        assert input_tokens > 0 and output_tokens > 0
        assert headers["Authorization"] == REDACTED
    stored_text = stored(database_url)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    key_file = vertex.service_account_info()
    secrets = (ACCESS_KEY, SECRET_KEY, TOKEN, *vertex.issued, key_file["private_key"].splitlines()[1])
    for secret in secrets:
        assert secret not in stored_text, secret
        assert secret not in logged, secret
