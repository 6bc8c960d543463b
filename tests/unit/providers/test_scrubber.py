"""The scrubbing rule: what of a call's secrets is recognised in a provider's answer, and what is left alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lsd.config.model import ProviderConfig
from lsd.errors import ProviderError
from lsd.providers.base import REDACTED, CallContext, KeyLocation
from lsd.providers.openai.provider import OpenAIProvider
from lsd.providers.scrubber import NO_SECRETS, Scrubber
from lsd.providers.transport import Transport
from tests.fakes.scripted_server import Server

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
HEADERS = {
    "Authorization": f"Bearer {KEY}",
    "X-Custom-Token": "Basic custom-secret-value",
    "X-Trace": "visible-trace-value",
    "Content-Type": "application/json",
}
SCRUBBER = Scrubber.for_call(KEY, HEADERS, frozenset({"Authorization"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Incorrect API key provided: {KEY}.", f"Incorrect API key provided: {REDACTED}."),
        (f'{{"message": "{KEY}"}}', f'{{"message": "{REDACTED}"}}'),
        ("Incorrect API key provided: sk-proj-abc***...6789. See x", f"Incorrect API key provided: {REDACTED}. See x"),
        ("You passed sk-p********************6789.", f"You passed {REDACTED}."),
        ("masked: ********************6789", f"masked: {REDACTED}"),
        ("cut short: (sk-proj-abcd…)", f"cut short: ({REDACTED})"),
        ("a header secret: custom-secret-value!", f"a header secret: {REDACTED}!"),
        ("its start: custom-s and more", f"its start: {REDACTED} and more"),
        # the key without its vendor prefix (a provider that strips `sk-`, or `sk-proj-`)
        (f"key {KEY[3:]} is invalid", f"key {REDACTED} is invalid"),
        (f"key {KEY[8:]} is invalid", f"key {REDACTED} is invalid"),
    ],
)
def test_secrets_and_their_echoes_are_replaced(text: str, expected: str) -> None:
    assert SCRUBBER.text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "echo: hello there",
        "***bold italic*** and **bold**",
        "a short start: sk-proj and ab***",
        "visible-trace-value application/json Bearer Basic",
        "the last four alone: 6789",
        "a header value's words after a dash: secret-value and value",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert SCRUBBER.text(text) is text or SCRUBBER.text(text) == text


def test_json_escaped_secrets_are_replaced() -> None:
    scrubber = Scrubber(['pass"word/with\\quote'])
    assert scrubber.text('{"m": "pass\\"word/with\\\\quote"}') == f'{{"m": "{REDACTED}"}}'


def test_a_call_without_secrets_scrubs_nothing() -> None:
    assert Scrubber.for_call(None, {"Content-Type": "application/json"}) is NO_SECRETS
    assert not NO_SECRETS and NO_SECRETS.text(KEY) == KEY
    assert Scrubber(["short"]).text("short") == "short"  # too short to search for


def test_bodies_and_errors_are_scrubbed() -> None:
    body = f'{{"error": "{KEY}"}}'.encode()
    assert SCRUBBER.body(body) == f'{{"error": "{REDACTED}"}}'.encode()
    clean = b'{"ok": true}'
    assert SCRUBBER.body(clean) is clean
    error = ProviderError(f"bad key {KEY}", raw_request=f"sent {KEY}", raw_response=f"got {KEY}")
    assert SCRUBBER.error(error) is error
    assert (error.message, str(error), error.raw_request, error.raw_response) == (
        f"bad key {REDACTED}",
        f"bad key {REDACTED}",
        f"sent {REDACTED}",
        f"got {REDACTED}",
    )


async def test_files_a_provider_serves_are_scrubbed() -> None:
    """What a GET brings back (a batch's results file) and a refused GET hold no key either."""
    line = f'{{"custom_id": "a", "error": {{"message": "Incorrect API key provided: {KEY}"}}}}\n'.encode()

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> None:
        status, body = (b"200 OK", line) if b"GET /v1/chat/completions" in request else (b"401 Unauthorized", line)
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    transport = Transport()
    await transport.open()
    try:
        async with Server(answer) as server:
            config = ProviderConfig(name="p", type="openai", options={}, key_path="p", base_dir=Path("."))
            provider = OpenAIProvider(config, model_name="m", key_location=KeyLocation("dynamic", "k"))
            ctx = CallContext(transport=transport, credentials={"k": KEY})
            text = (await provider.get_bytes(server.url, ctx)).decode()
            assert KEY not in text and f"provided: {REDACTED}" in text
            with pytest.raises(ProviderError) as caught:
                await provider.get_bytes(server.url.replace("/chat/", "/other/"), ctx)
            assert caught.value.status == 401 and KEY not in repr(vars(caught.value)) and REDACTED in str(caught.value)
    finally:
        await transport.close()


def test_a_body_is_searched_as_bytes_and_decoded_only_when_it_may_hold_a_secret() -> None:
    accented = Scrubber(["clé-secrète-1234567890"])
    assert accented.body('{"e": "clé-secrète-1234567890"}'.encode()) == f'{{"e": "{REDACTED}"}}'.encode()
    masked = f'{{"e": "{KEY[:5]}***{KEY[-4:]}"}}'.encode()
    assert SCRUBBER.body(masked) == f'{{"e": "{REDACTED}"}}'.encode()
    big = b'{"prompt": "' + b"words " * 20_000 + b'"}'
    assert SCRUBBER.body(big) is big
