"""A fake Vertex AI on a real socket: Google's OAuth token endpoint, Vertex Gemini and Vertex Anthropic.

Endpoints (the `api_base` is `{url}/v1/`):
    POST /token                      the service-account JWT grant (RFC 7523): the assertion's RS256 signature is
                                     checked with the key pair of `service_account_info()`, and its iss, aud and
                                     scope; answers {"access_token", "expires_in": token_lifetime_s}
    POST /v1/projects/P/locations/L/publishers/google/models/M:generateContent
                                     and :streamGenerateContent?alt=sse: the Gemini fake's answers and scenarios
                                     (tests/fakes/gemini_server.py), chosen by the model id or the last user text
    POST /v1/projects/P/locations/L/publishers/anthropic/models/M:rawPredict
                                     and :streamRawPredict: the Anthropic fake's (tests/fakes/anthropic_server.py);
                                     the body must carry anthropic_version "vertex-2023-10-16" and no `model`
    POST /v1/projects/P/locations/L/publishers/anthropic/models/count-tokens:rawPredict
                                     {"input_tokens": N} for a body naming `model` and `messages`
    POST /v1/projects/P/locations/L/endpoints/E:<method>   the same, by method, for an endpoint id

Every model call needs `Authorization: Bearer <a token this fake issued>` (Google's 401 UNAUTHENTICATED
otherwise) and the fake's project and location (404 otherwise). Tokens are `token` when set, else
"ya29.fake-<n>" numbered in issue order; `token_lifetime_s` below google-auth's 225-second refresh margin makes
every call fetch a new one. The `leak` and `leak-401` scenarios repeat the Bearer token received.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes import anthropic_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.gemini_server import FakeGemini, error_body
from tests.fakes.serving import FakeServer

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # the audience google-auth puts in every grant
CLIENT_EMAIL = "lsd-test@fake-project.iam.gserviceaccount.com"
USER_REFRESH_TOKEN = "1//fake-user-refresh-token"
GEMINI_METHODS = frozenset({"generateContent", "streamGenerateContent"})
ANTHROPIC_METHODS = frozenset({"rawPredict", "streamRawPredict"})


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeVertex(FakeServer):
    """`await start()` returns the `api_base`; `service_account_info()` is a key file whose token_uri is here."""

    RUNNER_OPTIONS: ClassVar[dict[str, Any]] = {"handler_cancellation": True, "shutdown_timeout": 1.0}

    def __init__(
        self,
        *,
        token: str | None = None,
        token_lifetime_s: int = 3600,
        project: str = "fake-project",
        location: str = "us-central1",
        delay_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.token_lifetime_s = token_lifetime_s
        self.project = project
        self.location = location
        self.delay_s = delay_s
        self.requests: list[ReceivedRequest] = []
        self.token_requests: list[dict[str, Any]] = []  # the JWT claims of each grant accepted
        self.issued: list[str] = []
        self._numbers = itertools.count(1)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._gemini = FakeGemini(delay_s=delay_s)
        self._anthropic = FakeAnthropic(delay_s=delay_s)
        self.base_url = ""

    async def start(self) -> str:
        await self.listen()
        self.base_url = f"{self.url}/v1/"
        return self.base_url

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/{tail:.*}", self._model)
        return app

    def service_account_info(self) -> dict[str, str]:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project,
            "private_key_id": "fake-key-id-1",
            "private_key": pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "1234567890",
            "token_uri": f"{self.url}/token",
        }

    def authorized_user_info(self, quota_project: str | None = None) -> dict[str, Any]:
        """gcloud's user credentials (`gcloud auth application-default login`), refreshed here."""
        info = {
            "type": "authorized_user",
            "client_id": "fake-client.apps.googleusercontent.com",
            "client_secret": "fake-client-secret",
            "refresh_token": USER_REFRESH_TOKEN,
            "token_uri": f"{self.url}/token",
        }
        return {**info, "quota_project_id": quota_project} if quota_project else info

    # ---- the token endpoint ------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v[0] for k, v in parse_qs((await request.read()).decode()).items()}
        if form.get("grant_type") == "refresh_token":  # user credentials
            if form.get("refresh_token") != USER_REFRESH_TOKEN:
                return _grant_error("invalid_grant", "Token has been expired or revoked.")
            return self._issue()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _grant_error("unsupported_grant_type", "Invalid grant_type.")
        claims = self._verified_claims(form.get("assertion", ""))
        if claims is None:
            return _grant_error("invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != CLIENT_EMAIL or claims.get("aud") not in (GOOGLE_TOKEN_URI, f"{self.url}/token"):
            return _grant_error("invalid_grant", "Invalid JWT: iss or aud is wrong.")
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return _grant_error("invalid_scope", "The cloud-platform scope is missing.")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
            return _grant_error("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
        self.token_requests.append(claims)
        return self._issue()

    def _issue(self) -> web.Response:
        token = self.token or f"ya29.fake-{next(self._numbers)}"
        self.issued.append(token)
        answer = {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    def _verified_claims(self, assertion: str) -> dict[str, Any] | None:
        parts = assertion.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_b64decode(parts[0]))
            self._key.public_key().verify(
                _b64decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
            claims = orjson.loads(_b64decode(parts[1]))
        except (InvalidSignature, ValueError, orjson.JSONDecodeError):
            return None
        return claims if header.get("alg") == "RS256" and isinstance(claims, dict) else None

    # ---- model calls -------------------------------------------------------------------------------------

    async def _model(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(ReceivedRequest(request.path, dict(request.query), dict(request.headers), body))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.issued:
            message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
            return _google_error(401, message)
        resource, _, method = request.path.removeprefix("/v1/").rpartition(":")
        segments = resource.split("/")
        prefix = ["projects", self.project, "locations", self.location]
        if segments[:4] != prefix or len(segments) not in (6, 8):
            return _google_error(404, f"{resource} was not found")
        model = segments[-1]
        publisher = segments[5] if len(segments) == 8 else None
        if not isinstance(body, dict):
            return _google_error(400, "Invalid JSON payload received.")
        if method in GEMINI_METHODS and publisher in (None, "google"):
            return await self._gemini_call(request, model, method, body, token)
        if method in ANTHROPIC_METHODS and publisher in (None, "anthropic"):
            return await self._anthropic_call(request, model, method, body, token)
        return _google_error(404, f"method {method!r} is not served for {resource}")

    async def _gemini_call(
        self, request: web.Request, model: str, method: str, body: dict[str, Any], token: str
    ) -> web.StreamResponse:
        gemini = self._gemini
        scenario = gemini._scenario(model, body)
        if scenario.startswith("error-"):
            return gemini._error(int(scenario.removeprefix("error-")))
        if scenario == "leak-401":
            return _google_error(401, f"Invalid token {token}: {token[:4]}{'*' * 20}{token[-4:]} ({token[:12]}…).")
        if scenario == "leak":
            body = {**body, "contents": [*body.get("contents", []), {"role": "user", "parts": [{"text": token}]}]}
        if scenario == "slow":
            await asyncio.sleep(self.delay_s)
        if method == "generateContent":
            return gemini._generate(scenario, body)
        if request.query.get("alt") != "sse":
            return _google_error(400, "this fake streams only with alt=sse")
        return await gemini._stream(request, scenario, body)

    async def _anthropic_call(
        self, request: web.Request, model: str, method: str, body: dict[str, Any], token: str
    ) -> web.StreamResponse:
        if model == "count-tokens" and method == "rawPredict":
            if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
                return anthropic_server._error(400, "count-tokens: model and messages are required")
            answer = {"input_tokens": anthropic_server._count_input(body)}
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        problem = _anthropic_problem(body, method)
        if problem:
            return anthropic_server._error(400, problem)
        body = {**body, "model": model}  # what the Anthropic fake's helpers read
        behaviour = anthropic_server._behaviour(body)
        if behaviour.startswith("error-"):
            status = int(behaviour.removeprefix("error-"))
            return anthropic_server._error(status, f"fake error {status}")
        if behaviour == "leak-401":
            return anthropic_server._error(
                401, f"invalid token {token}: {token[:4]}{'*' * 20}{token[-4:]} ({token[:12]}…)"
            )
        if behaviour == "slow":
            await asyncio.sleep(self.delay_s)
        message = self._anthropic._message(body, behaviour)
        if behaviour == "leak":
            message["content"][0]["text"] += f" {token}"
        if method == "streamRawPredict":
            return await anthropic_server._stream(request, message, behaviour)
        if behaviour == "malformed":
            return web.Response(body=b'{"type": "message", "content": [', content_type="application/json")
        return web.Response(body=orjson.dumps(message), content_type="application/json")


def _anthropic_problem(body: dict[str, Any], method: str) -> str | None:
    if body.get("anthropic_version") != "vertex-2023-10-16":
        return "anthropic_version: must be 'vertex-2023-10-16'"
    if "model" in body:
        return "model: Extra inputs are not permitted (the model is in the URL)"
    if bool(body.get("stream")) != (method == "streamRawPredict"):
        return "stream: streamRawPredict takes stream=true, rawPredict none"
    for key in ("max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    return None


def _google_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(status, message), content_type="application/json")


def _grant_error(error: str, description: str) -> web.Response:
    body = orjson.dumps({"error": error, "error_description": description})
    return web.Response(status=400, body=body, content_type="application/json")
