"""What is stored of a provider call holds no credential: the rules (pure), then a key in a URL on a real socket.

The conformance suite (test_conformance.py) checks every provider type's stored headers and raw requests; this
module pins the rules themselves and the URL case no provider produces today (Gemini's `?key=`, which LSD
never sends: its key goes in `x-goog-api-key`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lsd.config.model import ProviderConfig
from lsd.config.reader import ErrorSink, Table
from lsd.errors import ProviderError
from lsd.providers.base import (
    REDACTED,
    CallContext,
    is_secret_header,
    redact_headers,
    redact_text,
    redact_url,
)
from lsd.providers.gemini import GeminiProvider
from lsd.providers.transport import Transport
from tests.fakes.gemini_server import FakeGemini

KEY = "AIza-redaction-0123456789"


@pytest.mark.parametrize(
    "name",
    [
        "Authorization",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "X-Custom-Key",
        "x-amz-security-token",
        "X-Client-Secret",
        "Cookie",
        "set-cookie",
        "X-Amz-Signature",
        "OpenAI-Organization-Auth",
    ],
)
def test_credential_like_names_are_secret_whatever_their_value(name: str) -> None:
    assert is_secret_header(name, "anything")
    assert is_secret_header(name, None)


@pytest.mark.parametrize("name", ["Content-Type", "User-Agent", "anthropic-version", "Accept", "X-Request-Id"])
def test_ordinary_headers_are_not(name: str) -> None:
    assert not is_secret_header(name, "application/json")
    assert is_secret_header(name, "Bearer sk-lsd-abcdefghijkl-secret")  # an LSD key, whatever the name


def test_redact_headers_adds_the_declared_set_and_the_key_to_the_generic_rule() -> None:
    headers = {"X-Provider-Auth-Blob": "a", "X-Org": "org-1", "X-Passthrough": f"Bearer {KEY}", "Accept": "*/*"}
    assert redact_headers(headers, frozenset({"x-org"}), key=KEY) == {
        "X-Provider-Auth-Blob": REDACTED,  # generic: "auth"
        "X-Org": REDACTED,  # declared (any case)
        "X-Passthrough": REDACTED,  # holds the call's key
        "Accept": "*/*",
    }
    assert redact_headers({"X-Org": "org-1"}) == {"X-Org": "org-1"}


def test_redact_text_replaces_the_key_but_not_short_strings() -> None:
    assert redact_text(f'{{"k": "{KEY}", "again": "{KEY}"}}', KEY) == '{"k": "[REDACTED]", "again": "[REDACTED]"}'
    assert redact_text('{"temperature": 1}', "1") == '{"temperature": 1}'  # too short to be a key
    assert redact_text("unchanged", None) == "unchanged"


def test_redact_url_hides_credential_named_query_values() -> None:
    assert redact_url(f"https://g.example/v1beta/models/m:generateContent?key={KEY}&alt=sse") == (
        "https://g.example/v1beta/models/m:generateContent?key=[REDACTED]&alt=sse"
    )
    assert redact_url(f"https://x.example/a?access_token={KEY}") == "https://x.example/a?access_token=[REDACTED]"
    plain = "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21"
    assert redact_url(plain) == plain


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    await transport.open()
    yield transport
    await transport.close()


async def test_a_key_in_the_url_is_not_stored(transport: Transport) -> None:
    """A GET whose URL carries `?key=` (as Gemini's API accepts) fails with a raw request that does not hold it."""
    async with FakeGemini() as fake:
        options = {"model_name": "m", "api_base": fake.base_url, "api_key_location": "dynamic::g"}
        sink = ErrorSink()
        config = ProviderConfig("p", "google_ai_studio_gemini", options, "models.m.providers.p", Path("."))
        provider = GeminiProvider.from_config(config, Table(options, config.key_path, sink, Path(".")))
        assert sink.errors == []
        ctx = CallContext(transport=transport, credentials={"g": KEY})
        with pytest.raises(ProviderError) as caught:
            await provider.get_json(f"{fake.base_url}models/m?key={KEY}", ctx)  # the fake answers only POSTs
    assert caught.value.raw_request == f"GET {fake.base_url}models/m?key={REDACTED}"
    assert KEY not in repr(vars(caught.value))
