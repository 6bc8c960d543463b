"""Google's `google-genai` SDK against a real `lsd serve` on /gemini/v1beta: generate_content plain and streamed,
function calling round trips, thinking, structured output, count_tokens, embeddings and the models list, with a
Gemini fake behind (Gemini's own fields passed through), an Anthropic fake and an OpenAI fake (translated); the
rows each call leaves are checked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from tests.fakes.anthropic_server import SIGNATURE, FakeAnthropic
from tests.fakes.gemini_server import FakeGemini
from tests.fakes.openai_server import FakeOpenAI
from tests.support.gateway import Daemon
from tests.support.polling import count, eventually

# The SDK's async client subclasses aiohttp's ClientSession when aiohttp is installed (as the fakes need it).
pytestmark = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

ANTHROPIC_KEY = "sk-ant-fake-provider-key"
OPENAI_KEY = "sk-fake-openai-key"
GEMINI_KEY = "fake-gemini-provider-key"
WEATHER = types.FunctionDeclaration(
    name="weather",
    description="The weather in a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture(scope="module")
async def fakes() -> AsyncIterator[tuple[FakeGemini, FakeAnthropic, FakeOpenAI]]:
    gemini = FakeGemini(expected_key=GEMINI_KEY)
    await gemini.start()
    claude = FakeAnthropic(api_key=ANTHROPIC_KEY)
    await claude.start()
    try:
        async with FakeOpenAI(api_key=OPENAI_KEY) as gpt:
            yield gemini, claude, gpt
    finally:
        await claude.stop()
        await gemini.stop()


@pytest.fixture(scope="module")
def db_url(pg: Any, template_db: str) -> Iterator[str]:
    name = pg.database_from(template_db)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture(scope="module")
def daemon(
    fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory, db_url: str
) -> Iterator[Daemon]:
    gemini, claude, gpt = fakes
    config = tmp_path_factory.mktemp("gemini") / "lsd.toml"
    config.write_text(
        f"""
[gateway.observability]
async_writes = false

[models.gemini]
routing = ["google"]
[models.gemini.providers.google]
type = "google_ai_studio_gemini"
model_name = "gemini-fake"
api_base = "{gemini.base_url}"
api_key_location = "env::FAKE_GEMINI_KEY"

[models.badkey]
routing = ["google"]
[models.badkey.providers.google]
type = "google_ai_studio_gemini"
model_name = "gemini-fake"
api_base = "{gemini.base_url}"
api_key_location = "env::FAKE_WRONG_KEY"

[models.claude]
routing = ["anthropic"]
[models.claude.providers.anthropic]
type = "anthropic"
model_name = "claude-fake"
api_base = "{claude.base_url}"
api_key_location = "env::FAKE_ANTHROPIC_KEY"

[models.gpt]
routing = ["openai"]
[models.gpt.providers.openai]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{gpt.api_base}"
api_key_location = "env::FAKE_OPENAI_KEY"

[functions.assistant]
type = "chat"
[functions.assistant.variants.claude]
type = "chat_completion"
model = "claude"

[embedding_models.embed]
routing = ["openai"]
[embedding_models.embed.providers.openai]
type = "openai"
model_name = "text-embedding-3-small"
api_base = "{gpt.api_base}"
api_key_location = "env::FAKE_OPENAI_KEY"

[inbound.gemini.models]
"gemini-2.5-flash" = "gemini"
"gemini-2.5-pro" = "claude"
"gemini-2.5-flash-lite" = "lsd::function_name::assistant"
"text-embedding-004" = "embed"
"gemini-badkey" = "badkey"
"*" = "gpt"
"""
    )
    env = {"FAKE_ANTHROPIC_KEY": ANTHROPIC_KEY, "FAKE_OPENAI_KEY": OPENAI_KEY, "FAKE_GEMINI_KEY": GEMINI_KEY}
    env["FAKE_WRONG_KEY"] = "not-the-providers-key"
    running = Daemon(config, db_url, env=env)
    running.wait_ready()
    yield running
    assert running.terminate() == 0


@pytest.fixture(scope="module")
def client(daemon: Daemon) -> Iterator[genai.Client]:
    options = types.HttpOptions(base_url=f"{daemon.base_url}/gemini", retry_options=types.HttpRetryOptions(attempts=1))
    sdk = genai.Client(api_key="unused-lsd-key", http_options=options)
    yield sdk
    sdk.close()


def row(database_url: str, query: str, *params: Any) -> tuple[Any, ...]:
    with psycopg.connect(database_url) as conn:
        found = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert found is not None, query
    return tuple(found)


def inference_id(response: types.GenerateContentResponse) -> UUID:
    assert response.response_id is not None
    return UUID(hex=response.response_id)


async def test_generate_content_with_a_system_instruction_and_an_image(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI], db_url: str
) -> None:
    _, claude, _ = fakes
    pixel = types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n-not-really-a-png", mime_type="image/png")
    response = await client.aio.models.generate_content(
        model="gemini-2.5-pro",
        contents=[pixel, "hello claude"],
        config=types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.5, max_output_tokens=64),
    )
    assert response.text == "echo: hello claude"
    assert response.model_version == "gemini-2.5-pro"
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    sent = claude.last.json
    assert sent["system"] == "Be brief." and sent["max_tokens"] == 64 and sent["temperature"] == 0.5
    assert sent["messages"][0]["content"][0]["type"] == "image"
    function, variant, tags, tokens = row(
        db_url,
        "SELECT function_name, variant_name, tags, input_tokens FROM chat_inferences WHERE id = %s",
        inference_id(response),
    )
    assert (function, variant) == ("tensorzero::default", "claude")
    assert tags["lsd::model_alias"] == "gemini-2.5-pro" and tokens == usage.prompt_token_count


async def test_a_stream_from_an_openai_model(client: genai.Client, db_url: str) -> None:
    chunks = [
        chunk
        async for chunk in await client.aio.models.generate_content_stream(
            model="some-gemini-name-the-star-maps", contents="hello stream"
        )
    ]
    assert "".join(c.text or "" for c in chunks) == "echo: hello stream"
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.total_token_count
    assert len({c.response_id for c in chunks}) == 1
    (output,) = row(db_url, "SELECT output FROM chat_inferences WHERE id = %s", inference_id(last))
    assert output == [{"type": "text", "text": "echo: hello stream"}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_function_calling_round_trip(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI], stream: bool
) -> None:
    _, _, gpt = fakes
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(role="user", parts=[types.Part(text="[fake:toolround] Paris")])
    if stream:
        chunks = [
            c
            async for c in await client.aio.models.generate_content_stream(
                model="gpt-like", contents=[question], config=config
            )
        ]
        calls = [call for c in chunks for call in c.function_calls or ()]
        answer_content = types.Content(role="model", parts=[types.Part(function_call=call) for call in calls])
    else:
        response = await client.aio.models.generate_content(model="gpt-like", contents=[question], config=config)
        calls = response.function_calls or []
        assert response.candidates and response.candidates[0].content
        answer_content = response.candidates[0].content
    (call,) = calls
    assert call.name == "weather" and call.id and isinstance(call.args, dict)
    result = types.Part.from_function_response(name="weather", response={"output": "sunny, 21 C"})
    assert result.function_response is not None
    result.function_response.id = call.id
    final = await client.aio.models.generate_content(
        model="gpt-like", contents=[question, answer_content, types.Content(role="user", parts=[result])], config=config
    )
    assert final.text == "result: sunny, 21 C"
    messages = gpt.requests[-1].body["messages"]
    (sent_call,) = messages[-2]["tool_calls"]
    assert sent_call["id"] == call.id and sent_call["function"]["name"] == "weather"
    assert messages[-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}


async def test_claudes_thinking_comes_back_whole_without_its_thought_part(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI]
) -> None:
    """Gemini CLI keeps a part's thoughtSignature and drops thought parts: Claude's signed thinking rides on the
    answer's part and goes back to Claude as it was written."""
    _, claude, _ = fakes
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=1024))
    question = types.Content(role="user", parts=[types.Part(text="thinking about it")])
    response = await client.aio.models.generate_content(model="gemini-2.5-pro", contents=[question], config=config)
    assert response.candidates and response.candidates[0].content and response.candidates[0].content.parts
    parts = response.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text
    assert parts[1].text == "echo: thinking about it" and parts[1].thought_signature
    assert claude.last.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    kept = types.Content(role="model", parts=[p for p in parts if not p.thought])  # as Gemini CLI keeps history
    again = types.Content(role="user", parts=[types.Part(text="and again")])
    for stream in (False, True):
        if stream:
            async for _ in await client.aio.models.generate_content_stream(
                model="gemini-2.5-pro", contents=[question, kept, again], config=config
            ):
                pass
        else:
            await client.aio.models.generate_content(
                model="gemini-2.5-pro", contents=[question, kept, again], config=config
            )
        turn = claude.last.json["messages"][1]["content"]
        assert turn[0] == {"type": "thinking", "thinking": parts[0].text, "signature": SIGNATURE}
        assert turn[1] == {"type": "text", "text": "echo: thinking about it"}


async def test_claudes_streamed_thinking_is_signed_on_the_next_part(client: genai.Client) -> None:
    config = types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=1024))
    chunks = [
        c
        async for c in await client.aio.models.generate_content_stream(
            model="gemini-2.5-pro", contents="thinking out loud", config=config
        )
    ]
    parts = [p for c in chunks if c.candidates and c.candidates[0].content for p in c.candidates[0].content.parts or ()]
    thoughts = "".join(p.text or "" for p in parts if p.thought)
    signed = [p for p in parts if p.thought_signature]
    assert thoughts and len(signed) == 1 and not signed[0].thought
    assert "".join(p.text or "" for p in parts if not p.thought) == "echo: thinking out loud"


async def test_geminis_own_fields_reach_only_a_gemini_provider(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI]
) -> None:
    gemini, _, gpt = fakes
    safety = [types.SafetySetting(category="HARM_CATEGORY_HARASSMENT", threshold="BLOCK_NONE")]
    config = types.GenerateContentConfig(
        top_k=7,
        safety_settings=safety,
        thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=-1),
    )
    response = await client.aio.models.generate_content(
        model="gemini-2.5-flash", contents="hello gemini", config=config
    )
    assert response.text == "echo: hello gemini"
    sent = gemini.requests[-1]
    assert sent.path == "/v1beta/models/gemini-fake:generateContent" and sent.headers["x-goog-api-key"] == GEMINI_KEY
    assert sent.json["generationConfig"]["topK"] == 7
    assert sent.json["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": -1}
    assert sent.json["safetySettings"] == [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    await client.aio.models.generate_content(model="gpt-like", contents="hello gpt", config=config)
    body = gpt.requests[-1].body
    assert "top_k" not in body and "safetySettings" not in body and "generationConfig" not in body


async def test_geminis_thought_signature_goes_back_as_it_came(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI]
) -> None:
    gemini, _, _ = fakes
    question = types.Content(role="user", parts=[types.Part(text="thought please")])
    async with httpx.AsyncClient(base_url=str(client._api_client._http_options.base_url)) as http:
        answer = (
            await http.post(
                "/v1beta/models/gemini-2.5-flash:generateContent",
                json={"contents": [question.model_dump(mode="json", exclude_none=True)]},
                headers={"x-goog-api-key": "unused"},
            )
        ).json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and parts[-1]["thoughtSignature"] == "sig-1"
    async with httpx.AsyncClient(base_url=str(client._api_client._http_options.base_url)) as http:
        history = [question.model_dump(mode="json", exclude_none=True), {"role": "model", "parts": parts[1:]}]
        history.append({"role": "user", "parts": [{"text": "and then"}]})
        reply = await http.post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            json={"contents": history},
            headers={"x-goog-api-key": "unused"},
        )
    assert reply.status_code == 200, reply.text
    assert gemini.requests[-1].json["contents"][1]["parts"][-1]["thoughtSignature"] == "sig-1"


async def test_structured_output_from_an_openai_model(
    client: genai.Client, fakes: tuple[FakeGemini, FakeAnthropic, FakeOpenAI]
) -> None:
    _, _, gpt = fakes
    schema = types.Schema(
        type=types.Type.OBJECT, properties={"answer": types.Schema(type=types.Type.STRING)}, required=["answer"]
    )
    config = types.GenerateContentConfig(response_mime_type="application/json", response_schema=schema)
    response = await client.aio.models.generate_content(
        model="gpt-like", contents="[fake:json] forty-two", config=config
    )
    assert json.loads(response.text or "") == {"answer": "forty-two"}
    sent = gpt.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"]["properties"] == {"answer": {"type": "string"}}


async def test_google_search_needs_a_gemini_model(client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
    with pytest.raises(errors.ClientError) as raised:
        await client.aio.models.generate_content(model="gpt-like", contents="news today", config=config)
    assert raised.value.code == 400 and raised.value.status == "INVALID_ARGUMENT"
    assert "tools[0].googleSearch" in (raised.value.message or "")


async def test_errors_in_googles_shape(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as raised:
        await client.aio.models.generate_content(model="lsd::model_name::nope", contents="hi")
    assert raised.value.code == 404 and raised.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as raised:
        await client.aio.models.generate_content(
            model="gpt-like", contents="hi", config=types.GenerateContentConfig(candidate_count=2)
        )
    assert raised.value.code == 400 and "generationConfig.candidateCount" in (raised.value.message or "")
    with pytest.raises(errors.ClientError) as raised:  # the provider's own 429, passed on
        await client.aio.models.generate_content(model="gpt-like", contents="[fake:error-429] hi")
    assert raised.value.code == 429 and raised.value.status == "RESOURCE_EXHAUSTED"


async def test_count_tokens_models_and_embeddings(client: genai.Client) -> None:
    counted = await client.aio.models.count_tokens(model="gemini-2.5-pro", contents="four words of text here")
    assert counted.total_tokens and counted.total_tokens >= 5
    names = [m.name async for m in await client.aio.models.list()]
    assert "models/gemini-2.5-pro" in names and "models/claude" in names and "models/embed" in names
    assert "models/*" not in names
    found = await client.aio.models.get(model="gemini-2.5-flash")
    assert found.name == "models/gemini-2.5-flash" and found.supported_actions
    embedded = await client.aio.models.embed_content(model="embed", contents=["one", "two"])
    assert embedded.embeddings and len(embedded.embeddings) == 2 and embedded.embeddings[0].values


async def test_a_stream_without_alt_sse_is_one_json_array(daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=f"{daemon.base_url}/gemini/v1beta") as http:
        answer = await http.post(
            "/models/gpt-like:streamGenerateContent", json={"contents": [{"parts": [{"text": "an array please"}]}]}
        )
        failed = await http.post(
            "/models/gpt-like:streamGenerateContent", json={"contents": [{"parts": [{"text": "[fake:error-400] x"}]}]}
        )
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    chunks = answer.json()
    assert "".join(p["text"] for c in chunks for p in c["candidates"][0]["content"]["parts"]) == "echo: an array please"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP" and "usageMetadata" in chunks[-1]
    assert failed.status_code == 400 and failed.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_a_prompt_gemini_blocks_is_a_200_with_its_reason(client: genai.Client) -> None:
    """As Google answers it: no candidates, promptFeedback.blockReason (a 5xx would be retried)."""
    response = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="blocked words")
    assert response.prompt_feedback is not None and response.prompt_feedback.block_reason == "SAFETY"
    assert not response.candidates and response.text is None
    chunks = [
        c async for c in await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="blocked")
    ]
    assert [c.prompt_feedback.block_reason for c in chunks if c.prompt_feedback] == ["SAFETY"]


async def test_an_error_mid_stream_is_raised_by_the_sdk(client: genai.Client) -> None:
    received = []
    with pytest.raises(errors.APIError) as raised:
        async for chunk in await client.aio.models.generate_content_stream(
            model="gemini-2.5-pro", contents="stream-error please"
        ):
            received.append(chunk.text)
    assert received and raised.value.code in (529, 503, 502)


async def test_embedding_names_take_embeddings_only(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as raised:
        await client.aio.models.generate_content(model="text-embedding-004", contents="chat with an embedder")
    assert raised.value.code == 404 and "embedContent" in (raised.value.message or "")
    embedded = await client.aio.models.embed_content(model="text-embedding-004", contents="mapped by [inbound.gemini]")
    assert embedded.embeddings and embedded.embeddings[0].values
    names = {m.name: m.supported_actions async for m in await client.aio.models.list()}
    assert names["models/text-embedding-004"] == ["embedContent", "batchEmbedContents"]


async def test_a_batch_names_one_model(daemon: Daemon) -> None:
    async with httpx.AsyncClient(base_url=f"{daemon.base_url}/gemini/v1beta") as http:
        answer = await http.post(
            "/models/embed:batchEmbedContents",
            json={"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]},
        )
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith("requests[0].model")


async def test_a_stream_the_provider_broke_counts_as_failed(client: genai.Client, db_url: str) -> None:
    """An OpenAI provider's error event: the route ends the client's stream on it, and the row says why."""
    ids = []
    with pytest.raises(errors.APIError):
        async for chunk in await client.aio.models.generate_content_stream(
            model="gpt-like", contents="[fake:midstream-error] cut me"
        ):
            ids.append(chunk.response_id)
    assert ids
    query = "SELECT count(*) FROM chat_inferences WHERE id = %s AND tags->>'lsd::stream_error' = 'provider_error'"
    # written once the gateway sees the client gone (after the error it sent)
    assert eventually(lambda: count(db_url, query, UUID(hex=ids[0])), timeout=5) == 1


async def test_a_failure_no_retry_can_mend_is_not_a_5xx(client: genai.Client, daemon: Daemon) -> None:
    """Gemini CLI retries any 5xx ten times over minutes and reads no x-should-retry: a provider refusing the
    gateway's key is a 400 FAILED_PRECONDITION on this route."""
    with pytest.raises(errors.ClientError) as raised:
        await client.aio.models.generate_content(model="gemini-badkey", contents="hi")
    assert raised.value.code == 400 and raised.value.status == "FAILED_PRECONDITION"
    async with httpx.AsyncClient(base_url=f"{daemon.base_url}/gemini/v1beta") as http:
        for query in ({"pageSize": "²"}, {"pageToken": "²"}, {"pageToken": "9" * 5000}):
            answer = await http.get("/models", params=query)
            assert answer.status_code == 400, (query, answer.text)


async def test_the_sdks_vertex_ai_mode(daemon: Daemon) -> None:
    """`vertexai=True`: express mode (an API key) and a project's path, the same methods behind them."""
    options = types.HttpOptions(base_url=f"{daemon.base_url}/gemini", retry_options=types.HttpRetryOptions(attempts=1))
    express = genai.Client(vertexai=True, api_key="unused-lsd-key", http_options=options)
    answer = await express.aio.models.generate_content(model="gemini-2.5-pro", contents="hello vertex")
    assert answer.text == "echo: hello vertex"
    token = Credentials(token="unused-lsd-key")  # what a Vertex client sends as its bearer token (LSD's key)
    project = genai.Client(vertexai=True, project="p1", location="us-central1", credentials=token, http_options=options)
    chunks = [
        c async for c in await project.aio.models.generate_content_stream(model="gpt-like", contents="hello project")
    ]
    assert "".join(c.text or "" for c in chunks) == "echo: hello project"
