"""The OpenAI SDK against the OpenAI-compatible routes: a provider's 400 and 429 reach it as given; a provider error
that is the gateway's (its 401, 404) and that a new call would meet again is a 502 with `x-should-retry: false`, so the
SDK, which retries every 502, makes one call, not three (a 5xx is left to retry); `models.retrieve` finds what
`models.list` lists."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import openai
import psycopg
import pytest

from lsd.ids import uuid7
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import in_process_gateway


def config(fake: FakeOpenAI) -> str:
    return f"""
[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{fake.url}/v1/"
api_key_location = "none"
"""


@pytest.mark.parametrize(
    ("status", "answered", "calls", "header"), [(400, 400, 1, None), (404, 502, 1, "false"), (429, 429, 3, None)]
)
async def test_the_sdk_retries_only_what_may_pass(
    database_url: str, status: int, answered: int, calls: int, header: str | None
) -> None:
    """A provider's 400 and 429 reach the SDK as given (BadRequestError, not retried; RateLimitError, retried as
    OpenAI's would be); its 404 is the gateway's problem, a 502 the SDK does not retry."""
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        async with httpx.AsyncClient() as http:
            raw = await http.post(
                f"{base_url}/openai/v1/chat/completions",
                json={"model": "tensorzero::model_name::gpt",
                      "messages": [{"role": "user", "content": "[fake:error-404]"}]},
            )  # fmt: skip
        assert raw.status_code == 502 and raw.headers.get("x-should-retry") == "false"
        before = len(fake.requests)
        client = openai.AsyncOpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=2)
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(
                model="tensorzero::model_name::gpt",
                messages=[{"role": "user", "content": f"[fake:error-{status}]"}],
            )
        await client.close()
        assert raised.value.status_code == answered
        assert raised.value.response.headers.get("x-should-retry") == header
        assert len(fake.requests) - before == calls
        if status != 404:  # OpenAI's own error, code and all
            assert raised.value.body["message"].endswith("(fake).")  # type: ignore[index]


async def test_models_retrieve_finds_what_the_list_lists(database_url: str) -> None:
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)
        listed = [m.id async for m in client.models.list()]
        assert "lsd::model_name::gpt" in listed
        for name in ("lsd::model_name::gpt", "tensorzero::model_name::gpt"):
            assert (await client.models.retrieve(name)).id == name
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("tensorzero::model_name::nope")
        await client.close()


async def test_a_chat_ui_can_be_offered_the_aliases_only(database_url: str) -> None:
    """`[inbound.openai] list_models = "aliases"`: Open WebUI's model picker lists what GET /models lists; LSD's own
    names stay retrievable and usable."""
    async with FakeOpenAI() as fake:
        aliases = '[inbound.openai]\nlist_models = "aliases"\nmodels = { "gpt-4o" = "gpt" }\n'
        async with in_process_gateway(config(fake) + aliases, database_url) as base_url:
            client = openai.AsyncOpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)
            assert [m.id async for m in client.models.list()] == ["gpt-4o"]
            assert (await client.models.retrieve("lsd::model_name::gpt")).id == "lsd::model_name::gpt"
            await client.close()


async def test_reasoning_reaches_the_client_as_reasoning_content_and_goes_back_to_the_provider(
    database_url: str,
) -> None:
    """A reasoning model behind a `deepseek` provider: its reasoning reaches the client as `reasoning_content`
    (message and stream deltas, what the AI SDK, opencode and aider read), and the client's `reasoning_content` on an
    assistant message goes back to the provider (DeepSeek requires it in a tool loop while thinking)."""
    async with FakeOpenAI() as fake:
        deepseek = f"""
[models.ds]
routing = ["deepseek"]
[models.ds.providers.deepseek]
type = "deepseek"
model_name = "deepseek-reasoner"
api_base = "{fake.url}/v1/"
api_key_location = "none"
"""
        async with in_process_gateway(deepseek, database_url) as base_url:
            client = openai.AsyncOpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)
            ask = [{"role": "user", "content": "[fake:reasoning] why"}]
            answer = await client.chat.completions.create(model="lsd::model_name::ds", messages=ask)  # type: ignore[arg-type]
            message = answer.choices[0].message.model_dump()
            assert (message["content"], message["reasoning_content"]) == ("echo: why", "pondering why")
            assert answer.usage is not None and answer.usage.completion_tokens_details is not None
            assert answer.usage.completion_tokens_details.reasoning_tokens == 2  # "pondering why", passed on
            counted = await client.chat.completions.create(
                model="lsd::model_name::ds",
                messages=ask,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
            )
            usages = [c.usage async for c in counted if c.usage is not None]
            assert usages[-1].completion_tokens_details is not None
            assert usages[-1].completion_tokens_details.reasoning_tokens == 2
            response = await client.responses.create(model="lsd::model_name::ds", input="[fake:reasoning] why")
            assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens == 2
            stream = await client.chat.completions.create(model="lsd::model_name::ds", messages=ask, stream=True)  # type: ignore[arg-type]
            deltas = [c.choices[0].delta.model_dump() async for c in stream if c.choices]
            assert "".join(d.get("reasoning_content") or "" for d in deltas) == "pondering why"
            assert "".join(d.get("content") or "" for d in deltas) == "echo: why"
            back = [*ask, {"role": "assistant", "content": "echo: why", "reasoning_content": "pondering why"},
                    {"role": "user", "content": "and then?"}]  # fmt: skip
            await client.chat.completions.create(model="lsd::model_name::ds", messages=back)  # type: ignore[arg-type]
            await client.close()
        sent = fake.requests[-1].body["messages"]
        assert sent[1] == {"role": "assistant", "content": "echo: why", "reasoning_content": "pondering why"}


async def test_a_sessions_identifiers_are_kept_as_tags(database_url: str) -> None:
    """opencode's `x-session-id` header, and OpenAI's `prompt_cache_key` (a session id: Codex, the AI SDK),
    `safety_identifier` and `user`, on both OpenAI routes: a session's inferences are found by its tags."""
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        client = openai.AsyncOpenAI(
            base_url=f"{base_url}/openai/v1",
            api_key="unused",
            max_retries=0,
            default_headers={"x-session-id": "ses_opencode_1", "x-parent-session-id": "ses_opencode_0"},
        )
        ids = {"prompt_cache_key": "ses_cache_1", "safety_identifier": "hashed-user-7", "user": "ann"}
        await client.chat.completions.create(
            model="lsd::model_name::gpt",
            messages=[{"role": "user", "content": "hi"}],
            extra_body=ids,
        )
        await client.responses.create(model="lsd::model_name::gpt", input="hi", extra_body=ids)
        await client.close()
        # The ids stay tags: not sent on (OpenAI's prompt-cache routing hint goes only to api.openai.com, which this
        # fake is not: tests/unit/providers/test_openai.py; another server may refuse an unknown field).
        for request in fake.requests[-2:]:
            assert not {"prompt_cache_key", "user", "safety_identifier"} & set(request.body)
        async with httpx.AsyncClient(base_url=f"{base_url}/openai/v1") as http:  # Codex's and Claude Code's headers
            for header in ("session-id", "X-Claude-Code-Session-Id"):
                r = await http.post(
                    "/chat/completions",
                    json={"model": "lsd::model_name::gpt", "messages": [{"role": "user", "content": header}]},
                    headers={header: f"ses_{header}"},
                )
                assert r.status_code == 200, r.text
    expected = {
        "lsd::session_id": "ses_opencode_1",
        "lsd::parent_session_id": "ses_opencode_0",  # a subagent's: found by its parent session
        "lsd::prompt_cache_key": "ses_cache_1",
        "safety_identifier": "hashed-user-7",
        "user": "ann",
    }
    for _ in range(100):
        with psycopg.connect(database_url) as conn:
            tags = [row[0] for row in conn.execute("SELECT tags FROM chat_inferences ORDER BY id")]
        if len(tags) == 4:
            break
        await asyncio.sleep(0.05)
    assert tags[:2] == [expected, expected]
    assert [t["lsd::session_id"] for t in tags[2:]] == ["ses_session-id", "ses_X-Claude-Code-Session-Id"]


async def test_a_json_schema_is_strict_only_when_the_client_asks(database_url: str) -> None:
    """OpenAI's `strict` defaults to false, and strict mode refuses many schemas (optional properties, no
    `additionalProperties: false`: instructor's JSON_SCHEMA mode sends such): the provider gets the client's."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    async with FakeOpenAI() as fake, in_process_gateway(config(fake), database_url) as base_url:
        client = openai.AsyncOpenAI(base_url=f"{base_url}/openai/v1", api_key="unused", max_retries=0)
        sent = []
        for strict in (None, False, True):
            named = {"name": "User", "schema": schema, **({} if strict is None else {"strict": strict})}
            await client.chat.completions.create(
                model="lsd::model_name::gpt",
                messages=[{"role": "user", "content": "hi"}],
                response_format={"type": "json_schema", "json_schema": named},  # type: ignore[typeddict-item]
            )
            sent.append(fake.requests[-1].body["response_format"]["json_schema"]["strict"])
            fmt = {
                "type": "json_schema",
                "name": "User",
                "schema": schema,
                **({} if strict is None else {"strict": strict}),
            }
            await client.responses.create(model="lsd::model_name::gpt", input="hi", text={"format": fmt})  # type: ignore[typeddict-item]
            sent.append(fake.requests[-1].body["response_format"]["json_schema"]["strict"])
        await client.close()
    assert sent == [False, False, False, False, True, True]


async def test_lsds_extensions_as_headers(database_url: str) -> None:
    """For SDKs that send no extra body keys (the AI SDK's own providers drop unknown options): lsd-episode-id,
    lsd-cache, lsd-dryrun and lsd-variant-name headers; the body's own wins; a bad value is a 400 naming the header."""
    episode = "0192f000-0000-7000-8000-000000000001"
    async with (
        FakeOpenAI() as fake,
        in_process_gateway(config(fake), database_url) as base_url,
        httpx.AsyncClient(base_url=f"{base_url}/openai/v1") as http,
    ):
        body = {"model": "lsd::model_name::gpt", "messages": [{"role": "user", "content": "cache me"}]}
        headers = {"lsd-episode-id": episode, "lsd-cache": "on"}
        first = await http.post("/chat/completions", json=body, headers=headers)
        second = await http.post("/chat/completions", json=body, headers=headers)
        assert first.status_code == second.status_code == 200, first.text
        assert first.json()["episode_id"] == second.json()["episode_id"] == episode
        assert second.json()["usage"]["prompt_tokens"] == 0  # answered from the cache
        # a prompt_cache_key (a session id) is a routing hint, not part of the cache key: another session hits
        keyed = await http.post("/chat/completions", json={**body, "prompt_cache_key": "ses_9"}, headers=headers)
        assert keyed.json()["usage"]["prompt_tokens"] == 0
        calls = len(fake.requests)
        own = await http.post("/chat/completions", json={**body, "lsd::episode_id": str(uuid7())}, headers=headers)
        assert own.json()["episode_id"] != episode  # the body's wins
        dry = await http.post("/chat/completions", json={**body, "messages": [{"role": "user", "content": "x"}]},
                              headers={"lsd-dryrun": "true"})  # fmt: skip
        assert dry.status_code == 200 and len(fake.requests) == calls + 1
        # a dry run by header never writes the cache, even when the body asks to write it
        fresh = {**body, "messages": [{"role": "user", "content": "dry, then real"}]}
        dry_writer = {**fresh, "tensorzero::cache_options": {"enabled": "on"}}
        await http.post("/chat/completions", json=dry_writer, headers={"lsd-dryrun": "true"})
        real = await http.post("/chat/completions", json=fresh, headers={"lsd-cache": "read_only"})
        assert real.json()["usage"]["prompt_tokens"] > 0  # not answered from what the dry run got
        # the body's cache options win over the header's
        off = await http.post(
            "/chat/completions", json={**body, "tensorzero::cache_options": {"enabled": "write_only"}}, headers=headers
        )
        assert off.json()["usage"]["prompt_tokens"] > 0  # write_only reads nothing: the header's `on` did not win
        checks = (
            ("lsd-episode-id", "nope"),
            ("lsd-episode-id", str(uuid4())),  # as the body's: a UUIDv7, not from the future
            ("lsd-cache", "always"),
            ("lsd-cache-max-age-s", "10"),  # without lsd-cache
            ("lsd-dryrun", "yes"),
        )
        for name, value in checks:
            bad = await http.post("/chat/completions", json=body, headers={name: value})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == name, bad.text
    for _ in range(100):
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM chat_inferences WHERE episode_id = %s", (episode,)).fetchone()
        if stored == (4,):
            break
        await asyncio.sleep(0.05)
    assert stored == (4,)  # first, second, the keyed one and the write_only one, by the header
    with psycopg.connect(database_url) as conn:  # the dry runs wrote nothing: three cached, three of their own
        assert conn.execute("SELECT count(*) FROM chat_inferences").fetchone() == (6,)
