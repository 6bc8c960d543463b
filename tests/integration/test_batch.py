"""Batch inference over HTTP against real PostgreSQL and the fake OpenAI, Azure and Anthropic batch APIs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from lsd.config import parse
from lsd.ids import uuid7
from lsd.inference.batch_request import parse_batch_request
from lsd.providers.base import CallContext
from lsd.runtime import open_runtime
from lsd.store import batch as batch_store
from lsd.store.database import Database
from lsd.store.statistics import refresh_statistics
from tests.fakes.anthropic_batch import FakeAnthropicBatch
from tests.fakes.openai_batch import FakeOpenAIBatch
from tests.support.configs import write_answer_schema
from tests.support.gateway import in_process_gateway
from tests.support.prometheus import scrape, value

CONFIG = """
[gateway.batch]
poll_interval_s = 0.1

[gateway.observability]
statistics_refresh_interval_s = 0

[metrics.accepted]
type = "boolean"
optimize = "max"
level = "inference"

[models.dummy]
routing = ["d"]
[models.dummy.providers.d]
type = "dummy"
model_name = "flaky"
batch_delay_ms = 200

[models.dummy_json]
routing = ["d"]
[models.dummy_json.providers.d]
type = "dummy"
model_name = "json"
batch_delay_ms = 0

[models.dummy_tool]
routing = ["d"]
[models.dummy_tool.providers.d]
type = "dummy"
model_name = "tool"
batch_delay_ms = 0

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai_base}"
api_key_location = "env::LSD_TEST_BATCH_OPENAI_KEY"
cost = {{ input_per_million = 2.0, output_per_million = 4.0 }}

[models.azure]
routing = ["azure"]
[models.azure.providers.azure]
type = "azure"
deployment_id = "my-deployment"
endpoint = "{azure_endpoint}"
api_key_location = "env::LSD_TEST_BATCH_OPENAI_KEY"
cost = {{ input_per_million = 2.0, output_per_million = 4.0 }}
batch_cost = {{ input_per_million = 0.5, output_per_million = 0.5 }}

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-test"
api_base = "{anthropic_base}"
api_key_location = "env::LSD_TEST_BATCH_ANTHROPIC_KEY"

[models.gemini]
routing = ["g"]
[models.gemini.providers.g]
type = "google_ai_studio_gemini"
model_name = "gemini-test"
api_key_location = "none"

[models.dynamic]
routing = ["openai"]
[models.dynamic.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{openai_base}"
api_key_location = "dynamic::openai_key"

[functions.chat]
type = "chat"
[functions.chat.variants.dummy]
type = "chat_completion"
model = "dummy"
weight = 1
[functions.chat.variants.openai]
type = "chat_completion"
model = "gpt"
weight = 0
[functions.chat.variants.azure]
type = "chat_completion"
model = "azure"
weight = 0
[functions.chat.variants.anthropic]
type = "chat_completion"
model = "claude"
weight = 0
[functions.chat.variants.gemini]
type = "chat_completion"
model = "gemini"
weight = 0
[functions.chat.variants.dynamic]
type = "chat_completion"
model = "dynamic"
weight = 0

[functions.extract]
type = "json"
output_schema = "{tmp}/out.json"
[functions.extract.variants.a]
type = "chat_completion"
model = "dummy_json"
json_mode = "strict"

[functions.act]
type = "chat"
[functions.act.variants.a]
type = "chat_completion"
model = "dummy_tool"

[functions.greet]
type = "chat"
user_schema = "{tmp}/user.json"
[functions.greet.variants.a]
type = "chat_completion"
model = "dummy"
user_template = "{tmp}/user.jinja"
"""


def message(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeOpenAIBatch, FakeAnthropicBatch]]:
    async with FakeOpenAIBatch(api_key="sk-batch") as openai, FakeAnthropicBatch(api_key="sk-ant-batch") as anthropic:
        yield openai, anthropic


def write_config(tmp: Path, openai: FakeOpenAIBatch, anthropic: FakeAnthropicBatch) -> str:
    write_answer_schema(tmp, "out.json")
    (tmp / "user.json").write_text(
        json.dumps({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
    )
    (tmp / "user.jinja").write_text("Say hello to {{ name }}")
    return CONFIG.format(
        openai_base=openai.api_base, azure_endpoint=openai.url, anthropic_base=anthropic.api_base, tmp=tmp
    )


@pytest.fixture
async def client(
    fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("LSD_TEST_BATCH_OPENAI_KEY", "sk-batch")
    monkeypatch.setenv("LSD_TEST_BATCH_ANTHROPIC_KEY", "sk-ant-batch")
    text = write_config(tmp_path, *fakes)
    async with in_process_gateway(text, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        yield http


async def wait_done(client: httpx.AsyncClient, batch_id: str, timeout_s: float = 10) -> dict[str, Any]:
    for _ in range(int(timeout_s / 0.05)):
        r = await client.get(f"/batch_inference/{batch_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] != "pending":
            return r.json()  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still pending")


def query(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(sql, args).fetchall()


async def test_dummy_batch_mixed_results_recorded_like_live_inferences(
    client: httpx.AsyncClient, database_url: str
) -> None:
    episode = str(uuid7())
    r = await client.post(
        "/batch_inference",
        json={
            "function_name": "chat",
            "variant_name": "dummy",
            "inputs": [message("one"), message("two"), message("three"), message("four")],
            "episode_ids": [episode, None, None, None],
            "tags": [{"k": "v0"}, None, {"k": "v2"}, None],
            "params": {"chat_completion": {"temperature": [0.5, None, None, 0.9]}},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"batch_id", "inference_ids", "episode_ids"}
    assert len(body["inference_ids"]) == 4 and body["episode_ids"][0] == episode
    assert (await client.get(f"/batch_inference/{body['batch_id']}")).json()["status"] == "pending"

    done = await wait_done(client, body["batch_id"])
    assert done["status"] == "completed"
    # flaky fails every other request, starting with the first
    ok = {i["inference_id"]: i for i in done["inferences"]}
    assert set(ok) == {body["inference_ids"][1], body["inference_ids"][3]}
    assert ok[body["inference_ids"][1]]["content"] == [
        {"type": "text", "text": "Hello from LSD's dummy provider (flaky)"}
    ]
    assert {e["inference_id"] for e in done["errors"]} == {body["inference_ids"][0], body["inference_ids"][2]}

    rows = query(database_url, "SELECT id, tags, inference_params, processing_time_ms FROM chat_inferences")
    assert {str(r[0]) for r in rows} == set(ok)
    by_id = {str(r[0]): r for r in rows}
    assert by_id[body["inference_ids"][3]][2] == {"chat_completion": {"temperature": 0.9}}
    assert by_id[body["inference_ids"][1]][3] is None
    kinds = query(database_url, "SELECT status, inference_kind, count(*) FROM model_inferences GROUP BY 1, 2")
    assert sorted(kinds) == [("error", "batch", 2), ("ok", "batch", 2)]
    events = query(database_url, "SELECT status FROM batch_request_events ORDER BY id")
    assert [e[0] for e in events] == ["pending", "completed"]
    items = query(database_url, "SELECT count(*), count(raw_request) FROM batch_model_inferences")
    assert items == [(4, 4)]

    # one inference
    one = await client.get(f"/batch_inference/{body['batch_id']}/inference/{body['inference_ids'][1]}")
    assert one.status_code == 200 and [i["inference_id"] for i in one.json()["inferences"]] == [
        body["inference_ids"][1]
    ]
    assert one.json()["errors"] == []
    failed = await client.get(f"/batch_inference/{body['batch_id']}/inference/{body['inference_ids'][0]}")
    assert failed.json()["inferences"] == [] and len(failed.json()["errors"]) == 1

    # feedback, list_inferences and statistics see batch inferences like any other
    fb = await client.post(
        "/feedback", json={"metric_name": "accepted", "inference_id": body["inference_ids"][1], "value": True}
    )
    assert fb.status_code == 200, fb.text
    listed = await client.post("/v1/inferences/list_inferences", json={"function_name": "chat"})
    assert {i["inference_id"] for i in listed.json()["inferences"]} == set(ok)
    database = Database(database_url, min_size=1, max_size=2)
    await database.open()
    try:
        await asyncio.sleep(0.3)  # the feedback row goes through the async writer
        await refresh_statistics(database)
    finally:
        await database.close()
    stats = query(
        database_url, "SELECT variant_name, inference_count FROM variant_statistics WHERE function_name = 'chat'"
    )
    assert stats == [("dummy", 2)]


async def test_json_function_batch(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post("/batch_inference", json={"function_name": "extract", "inputs": [message("x")]})
    assert r.status_code == 200, r.text
    done = await wait_done(client, r.json()["batch_id"])
    assert done["inferences"][0]["output"] == {"raw": '{"answer":"x"}', "parsed": {"answer": "x"}}
    assert query(database_url, "SELECT count(*) FROM json_inferences") == [(1,)]


async def test_openai_batch_with_failures_and_batch_price(
    client: httpx.AsyncClient, fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch], database_url: str
) -> None:
    openai, _ = fakes
    r = await client.post(
        "/batch_inference",
        json={"function_name": "chat", "variant_name": "openai", "inputs": [message("a b"), message("[fail] c")]},
    )
    assert r.status_code == 200, r.text
    ids = r.json()["inference_ids"]
    (upload,) = openai.uploads.values()
    assert [line["custom_id"] for line in upload] == ids
    assert upload[0]["url"] == "/v1/chat/completions" and upload[0]["body"]["model"] == "gpt-4o-mini"
    done = await wait_done(client, r.json()["batch_id"])
    assert done["status"] == "completed"
    (result,) = done["inferences"]
    assert result["inference_id"] == ids[0]
    assert result["content"] == [{"type": "text", "text": "echo: a b"}]
    # 2 prompt words, 3 completion words at half of (2, 4) per million
    assert result["usage"] == {"input_tokens": 2, "output_tokens": 3, "cost": pytest.approx((2 * 1.0 + 3 * 2.0) / 1e6)}
    assert done["errors"][0]["inference_id"] == ids[1] and "refused" in done["errors"][0]["message"]
    rows = query(database_url, "SELECT status, cost, error_kind FROM model_inferences ORDER BY status")
    assert rows == [("error", None, "bad_request"), ("ok", Decimal("0.000008"), None)]
    raw = query(database_url, "SELECT raw_request FROM model_inference_data WHERE raw_request IS NOT NULL")
    assert len(raw) == 2 and "sk-batch" not in str(raw)
    # Prometheus: the batch, each input's outcome, and the result's tokens and cost with the live inferences'
    samples, _, _ = await scrape(client)
    by_model = {"function": "chat", "variant": "openai", "model": "gpt", "provider": "openai"}
    batch = {"function": "chat", "model": "gpt", "provider": "openai", "status": "completed"}
    assert value(samples, "lsd_batches_total", **batch) == 1
    assert value(samples, "lsd_batch_inferences_total", **by_model, outcome="ok") == 1
    assert value(samples, "lsd_batch_inferences_total", **by_model, outcome="error") == 1
    assert value(samples, "lsd_input_tokens_total", **by_model) == 2
    assert value(samples, "lsd_output_tokens_total", **by_model) == 3
    assert value(samples, "lsd_cost_total", **by_model) == pytest.approx(8e-6)


async def test_azure_batch_uses_its_urls_and_batch_cost(
    client: httpx.AsyncClient, fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch]
) -> None:
    openai, _ = fakes
    r = await client.post(
        "/batch_inference", json={"function_name": "chat", "variant_name": "azure", "inputs": [message("hi")]}
    )
    assert r.status_code == 200, r.text
    (upload,) = openai.uploads.values()
    assert upload[0]["url"] == "/chat/completions" and upload[0]["body"]["model"] == "my-deployment"
    done = await wait_done(client, r.json()["batch_id"])
    assert done["inferences"][0]["usage"]["cost"] == pytest.approx((1 * 0.5 + 2 * 0.5) / 1e6)


@pytest.mark.parametrize(("outcome", "status", "recorded"), [("expired", "failed", 1), ("cancelled", "failed", 1)])
async def test_openai_expired_or_cancelled_batch_keeps_partial_results(
    client: httpx.AsyncClient,
    fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch],
    database_url: str,
    outcome: str,
    status: str,
    recorded: int,
) -> None:
    fakes[0].outcome = outcome
    inputs = [message("a"), message("b"), message("c")]
    r = await client.post(
        "/batch_inference", json={"function_name": "chat", "variant_name": "openai", "inputs": inputs}
    )
    done = await wait_done(client, r.json()["batch_id"])
    assert done["status"] == status and done["provider_status"] == outcome
    assert len(done["inferences"]) == recorded
    assert done["errors"][0] == {"message": f"the batch is {outcome}"}
    assert len([e for e in done["errors"] if "inference_id" in e]) == 3 - recorded
    assert query(database_url, "SELECT count(*) FROM chat_inferences") == [(recorded,)]


async def test_openai_failed_batch(
    client: httpx.AsyncClient, fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch], database_url: str
) -> None:
    fakes[0].outcome = "failed"
    r = await client.post(
        "/batch_inference", json={"function_name": "chat", "variant_name": "openai", "inputs": [message("a")]}
    )
    done = await wait_done(client, r.json()["batch_id"])
    assert done["status"] == "failed" and done["inferences"] == []
    assert "not batchable" in done["errors"][0]["message"]
    assert query(database_url, "SELECT status, errors IS NOT NULL FROM batch_requests") == [("failed", True)]


async def test_anthropic_batch(
    client: httpx.AsyncClient, fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch], database_url: str
) -> None:
    _, anthropic = fakes
    r = await client.post(
        "/batch_inference",
        json={"function_name": "chat", "variant_name": "anthropic", "inputs": [message("x y"), message("[fail]")]},
    )
    assert r.status_code == 200, r.text
    ids = r.json()["inference_ids"]
    assert [req["custom_id"] for req in anthropic.created[0]["requests"]] == ids
    done = await wait_done(client, r.json()["batch_id"])
    assert done["status"] == "completed"
    assert [i["content"] for i in done["inferences"]] == [[{"type": "text", "text": "echo: x y"}]]
    assert done["errors"][-1]["inference_id"] == ids[1]


@pytest.mark.parametrize(("outcome", "status", "recorded"), [("expired", "completed", 1), ("canceled", "failed", 0)])
async def test_anthropic_expired_and_canceled(
    client: httpx.AsyncClient,
    fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch],
    outcome: str,
    status: str,
    recorded: int,
) -> None:
    fakes[1].outcome = outcome
    r = await client.post(
        "/batch_inference",
        json={"function_name": "chat", "variant_name": "anthropic", "inputs": [message("a"), message("b")]},
    )
    done = await wait_done(client, r.json()["batch_id"])
    assert done["status"] == status and len(done["inferences"]) == recorded
    assert any(f"the request was {outcome}" in e["message"] for e in done["errors"])


async def test_polls_are_rate_limited_per_batch(
    fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LSD_TEST_BATCH_OPENAI_KEY", "sk-batch")
    text = write_config(tmp_path, *fakes).replace("poll_interval_s = 0.1", "poll_interval_s = 3600")
    async with in_process_gateway(text, database_url) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        r = await http.post(
            "/batch_inference", json={"function_name": "chat", "variant_name": "openai", "inputs": [message("a")]}
        )
        batch_id = r.json()["batch_id"]
        answers = await asyncio.gather(*(http.get(f"/batch_inference/{batch_id}") for _ in range(10)))
        assert {a.json()["status"] for a in answers} == {"pending"}
    assert list(fakes[0].batch_gets.values()) == [1]  # one poll, whoever asked (the poller included)


async def test_bad_input(client: httpx.AsyncClient, fakes: tuple[FakeOpenAIBatch, FakeAnthropicBatch]) -> None:
    async def error(body: dict[str, Any], status: int = 400) -> str:
        r = await client.post("/batch_inference", json=body)
        assert r.status_code == status, r.text
        return str(r.json()["error"])

    assert "inputs: must not be empty" in await error({"function_name": "chat", "inputs": []})
    assert "inputs: missing" in await error({"function_name": "chat"})
    assert "episode_ids: expected 2 entries" in await error(
        {"function_name": "chat", "inputs": [message("a"), message("b")], "episode_ids": [None]}
    )
    assert "params.chat_completion.temperature: expected 2 entries" in await error(
        {
            "function_name": "chat",
            "inputs": [message("a"), message("b")],
            "params": {"chat_completion": {"temperature": [1]}},
        }
    )
    assert "tags: expected 1 entries" in await error({"function_name": "chat", "inputs": [message("a")], "tags": []})
    schema = await error(
        {
            "function_name": "greet",
            "inputs": [
                {"messages": [{"role": "user", "content": {"name": "x"}}]},
                {"messages": [{"role": "user", "content": {"name": 3}}]},
            ],
        }
    )
    assert schema.startswith("inputs[1].messages[0].content[0].arguments.name: does not match the user_schema")
    assert "inputs[0].messages[0].role" in await error(
        {"function_name": "chat", "inputs": [{"messages": [{"role": "robot", "content": "x"}]}]}
    )
    assert "params.chat_completion.temperature[1]" in await error(
        {
            "function_name": "chat",
            "inputs": [message("a"), message("b")],
            "params": {"chat_completion": {"temperature": [1, "hot"]}},
        }
    )
    assert "'google_ai_studio_gemini'" in await error(
        {"function_name": "chat", "variant_name": "gemini", "inputs": [message("a")]}
    )
    assert "dynamic::openai_key" in await error(
        {
            "function_name": "chat",
            "variant_name": "dynamic",
            "inputs": [message("a")],
            "credentials": {"openai_key": "k"},
        }
    )
    assert "unknown field" in await error({"function_name": "chat", "inputs": [message("a")], "stream": True})
    await error({"function_name": "nope", "inputs": [message("a")]}, 404)
    await error({"function_name": "chat", "variant_name": "nope", "inputs": [message("a")]}, 404)
    assert fakes[0].uploads == {} and fakes[1].created == []  # nothing was submitted

    assert (await client.get(f"/batch_inference/{uuid7()}")).status_code == 404
    assert (await client.get("/batch_inference/not-a-uuid")).status_code == 400
    r = await client.post("/batch_inference", json={"function_name": "chat", "inputs": [message("a")]})
    batch_id = r.json()["batch_id"]
    assert (await client.get(f"/batch_inference/{batch_id}/inference/{uuid7()}")).status_code == 404


async def test_dryrun_submits_and_stores_nothing(client: httpx.AsyncClient, database_url: str) -> None:
    r = await client.post(
        "/batch_inference",
        json={"function_name": "chat", "variant_name": "openai", "inputs": [message("a")], "dryrun": True},
    )
    assert r.status_code == 200 and len(r.json()["inference_ids"]) == 1
    assert query(database_url, "SELECT count(*) FROM batch_requests") == [(0,)]
    assert (await client.get(f"/batch_inference/{r.json()['batch_id']}")).status_code == 404


async def test_two_services_finishing_one_batch_record_it_once(database_url: str, tmp_path: Path) -> None:
    """The claim in lsd.store.batch.complete: two processes (two pools) record the same ended batch at the
    same moment; one records every row, the others nothing."""
    config = parse(write_config(tmp_path, *_no_fakes()), base_dir=tmp_path)
    async with open_runtime(config, database_url) as one, open_runtime(config, database_url) as two:
        body = {"function_name": "chat", "variant_name": "dummy", "inputs": [message("a")] * 6}
        batch_id = (await one.batches.submit(parse_batch_request(body))).batch_id
        await asyncio.sleep(0.3)  # the dummy batch is ready after 200 ms
        row = await batch_store.get_batch(one.database, batch_id)
        assert row is not None and row.status == "pending" and row.provider_batch_id is not None
        provider = one.batches._provider(row)
        state = await provider.poll_batch(row.provider_batch_id, row.provider_data, CallContext(one.transport))
        recorded = await asyncio.gather(*(rt.batches._complete(row, state) for rt in (one, two, one, two)))
    assert sorted(recorded) == [False, False, False, True]
    assert query(database_url, "SELECT count(*) FROM chat_inferences") == [(3,)]
    assert query(database_url, "SELECT count(*) FROM model_inferences") == [(6,)]
    assert query(database_url, "SELECT status, count(*) FROM batch_request_events GROUP BY 1 ORDER BY 1") == [
        ("completed", 1),
        ("pending", 1),
    ]


def _no_fakes() -> tuple[FakeOpenAIBatch, FakeAnthropicBatch]:
    """Fakes that are never started: their URLs only fill the config text."""
    return FakeOpenAIBatch(), FakeAnthropicBatch()


async def test_the_background_poller_completes_batches_nobody_asks_about(
    client: httpx.AsyncClient, database_url: str
) -> None:
    r = await client.post("/batch_inference", json={"function_name": "extract", "inputs": [message("a")]})
    batch_id = r.json()["batch_id"]
    for _ in range(100):
        (status,) = query(database_url, "SELECT status FROM batch_requests WHERE id = %s", batch_id)
        if status[0] != "pending":
            break
        await asyncio.sleep(0.05)
    assert status == ("completed",)
    assert query(database_url, "SELECT count(*) FROM json_inferences") == [(1,)]


async def test_a_provider_refusing_the_submission_is_502_and_stores_nothing(
    client: httpx.AsyncClient, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LSD_TEST_BATCH_OPENAI_KEY", "sk-wrong")
    r = await client.post(
        "/batch_inference", json={"function_name": "chat", "variant_name": "openai", "inputs": [message("a")]}
    )
    assert r.status_code == 502 and "HTTP 401" in r.json()["error"] and "sk-wrong" not in r.text
    assert query(database_url, "SELECT count(*) FROM batch_requests") == [(0,)]


async def test_tools_per_input(client: httpx.AsyncClient, database_url: str) -> None:
    tool = {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}}}
    r = await client.post(
        "/batch_inference",
        json={
            "function_name": "act",
            "inputs": [message("a"), message("b")],
            "additional_tools": [[tool], None],
            "tool_choice": ["required", None],
        },
    )
    assert r.status_code == 200, r.text
    first, second = r.json()["inference_ids"]
    done = await wait_done(client, r.json()["batch_id"])
    by_id = {i["inference_id"]: i for i in done["inferences"]}
    (call,) = by_id[first]["content"]
    assert (call["type"], call["name"], call["arguments"], call["raw_name"]) == ("tool_call", "lookup", {}, "lookup")
    assert by_id[first]["finish_reason"] == "tool_call"
    assert by_id[second]["content"][0]["type"] == "text"
    (params,) = query(database_url, "SELECT tool_params FROM chat_inferences WHERE id = %s", first)
    assert params[0]["tool_choice"] == "required" and params[0]["tools_available"][0]["name"] == "lookup"
