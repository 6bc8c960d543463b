"""The OpenAI SDK against the OpenAI-compatible routes: a provider's 400 and 429 reach it as given; a provider error
that is the gateway's (its 401, 404) and that a new call would meet again is a 502 with `x-should-retry: false`, so the
SDK, which retries every 502, makes one call, not three (a 5xx is left to retry); `models.retrieve` finds what
`models.list` lists."""

from __future__ import annotations

import httpx
import openai
import pytest

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
