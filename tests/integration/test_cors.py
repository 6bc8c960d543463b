"""`[gateway] cors_allowed_origins`: a web page of an allowed origin calls the API from the browser with its own key
(Open WebUI's Direct Connections): the preflight is answered before authentication, answers carry the CORS headers;
another origin gets none, and without the setting nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lsd.app import build_app
from lsd.config import parse
from lsd.errors import ConfigError
from tests.support.configs import echo_chat

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://chat.example.com:8080"
CONFIG = f"""
[gateway]
cors_allowed_origins = ["{ORIGIN}"]
[gateway.auth]
enabled = true
{echo_chat()}
"""
PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(build_app(parse(CONFIG, base_dir=ROOT), database_url)) as test_client:
        yield test_client


def test_an_allowed_origins_browser_calls_reach_the_api(client: TestClient) -> None:
    preflight = client.options("/openai/v1/chat/completions", headers={"origin": ORIGIN, **PREFLIGHT})
    assert preflight.status_code == 200  # no key needed: a preflight carries none
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers  # keys in a header, never cookies
    refused = client.get("/openai/v1/models", headers={"origin": ORIGIN})
    assert refused.status_code == 401  # the key is still checked, and the page can read why
    assert refused.headers["access-control-allow-origin"] == ORIGIN


def test_another_origin_gets_no_cors_headers(client: TestClient) -> None:
    preflight = client.options("/openai/v1/chat/completions", headers={"origin": "https://evil.example", **PREFLIGHT})
    assert preflight.status_code == 400 and "access-control-allow-origin" not in preflight.headers
    plain = client.get("/health", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


def test_without_the_setting_no_cors_and_bad_origins_are_config_errors(database_url: str) -> None:
    with TestClient(build_app(parse(echo_chat(), base_dir=ROOT), database_url)) as client:
        answer = client.get("/health", headers={"origin": ORIGIN})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    with pytest.raises(ConfigError, match=r"gateway\.cors_allowed_origins"):
        parse('[gateway]\ncors_allowed_origins = ["https://chat.example.com/path"]\n' + echo_chat(), base_dir=ROOT)
