"""Who is calling: the API key check every protected route passes, and request identity for the engine.

`authenticate` runs in the Guard middleware, before routing; `identify` runs in the inference handlers and
adds the verified key's public id and the `lsd-tag-<key>` headers to the parsed request.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs

from starlette.types import Scope

from lsd.api.request_headers import OPTION_HEADERS, with_header_options
from lsd.auth import AuthService
from lsd.errors import InvalidRequest
from lsd.inference.request import InferenceRequest
from lsd.sessions import MAX_SESSION_ID_CHARS, SESSION_TAG

OPEN_PATHS = frozenset({"/health", "/status"})
KEY_HEADERS = frozenset({b"x-api-key", b"x-goog-api-key"})  # the key without `Authorization: Bearer`
GEMINI_PREFIX = "/gemini/"
METRICS_PATH = "/metrics"
TAG_HEADER = b"lsd-tag-"
# A client's session id header, kept as this tag, so that list_inferences with a tag filter (or SQL on `tags`)
# finds a session's inferences: opencode's `x-session-id`, Codex's `session-id`, Claude Code's own, and the chat id
# Open WebUI forwards (ENABLE_FORWARD_USER_INFO_HEADERS).
SESSION_HEADERS = frozenset({b"x-session-id", b"session-id", b"x-claude-code-session-id", b"x-openwebui-chat-id"})
# The end user a chat UI forwards, kept as the tag `user` (as the body's `user`; per-user rate limits scope on it).
USER_HEADERS, USER_TAG = frozenset({b"x-openwebui-user-id"}), "user"
PARENT_SESSION_HEADER, PARENT_SESSION_TAG = b"x-parent-session-id", "lsd::parent_session_id"  # its subagents
# A Codex sub-agent sends its root's `session-id`, its own `thread-id` and `x-codex-parent-thread-id`: it is a session
# of its own (its thread) whose parent is that thread, as opencode's subagents are.
CODEX_THREAD_HEADER, CODEX_PARENT_HEADER = b"thread-id", b"x-codex-parent-thread-id"
KEY_SCOPE = "lsd.api_key_public_id"  # where the verified key's public id waits for the handler
KEY_TAG = "tensorzero::api_key_public_id"  # TensorZero's tag for it, added to the inference's tags


def needs_key(auth: AuthService, path: str) -> bool:
    if not auth.enabled or path in OPEN_PATHS:
        return False
    return path != METRICS_PATH or auth.config.protect_metrics


async def authenticate(auth: AuthService, scope: Scope) -> None:
    """Verify the bearer key of a request that needs one; raises Unauthorized (401). Without an Authorization
    header, an `x-api-key` header (what Anthropic's clients send) or `x-goog-api-key` (Gemini's) carries the key;
    under /gemini/, so does a `key` query parameter (Google's API takes it; it is never logged: the access log
    and traces record the path alone)."""
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
        if name in KEY_HEADERS and authorization is None:
            authorization = "Bearer " + value.decode("latin-1")
    if authorization is None and scope.get("path", "").startswith(GEMINI_PREFIX):
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("key")
        if given:
            authorization = "Bearer " + given[0]
    key = await auth.verify(authorization)
    scope[KEY_SCOPE] = key.public_id


def identify(scope: Scope, parsed: InferenceRequest) -> InferenceRequest:
    """The request with `lsd-tag-*` header tags and an `x-session-id` as the tag `lsd::session_id` (body tags win on
    a clash), the extensions given as headers (lsd.api.request_headers), and the caller's key id."""
    key_id: str | None = scope.get(KEY_SCOPE)
    header_tags: dict[str, str] = {}
    options: dict[bytes, str] = {}
    thread = parent_thread = b""  # a Codex sub-agent's own thread and its parent's
    for name, value in scope["headers"]:
        if name.startswith(TAG_HEADER) and len(name) > len(TAG_HEADER):
            # A header name cannot hold ':', so a reserved `lsd::`/`tensorzero::` key cannot come this way.
            header_tags[name[len(TAG_HEADER) :].decode("latin-1")] = _header_text(value)
        elif name in SESSION_HEADERS and value:
            header_tags[SESSION_TAG] = _session_id(name, value)
        elif name == PARENT_SESSION_HEADER and value:
            header_tags[PARENT_SESSION_TAG] = _session_id(name, value)
        elif name in USER_HEADERS and value:
            header_tags.setdefault(USER_TAG, _header_text(value))  # an `lsd-tag-user` header wins
        elif name == CODEX_THREAD_HEADER:
            thread = value
        elif name == CODEX_PARENT_HEADER:
            parent_thread = value
        elif name in OPTION_HEADERS:
            options[name] = _header_text(value).strip()
    if thread and parent_thread:
        header_tags[SESSION_TAG] = _session_id(CODEX_THREAD_HEADER, thread)
        header_tags[PARENT_SESSION_TAG] = _session_id(CODEX_PARENT_HEADER, parent_thread)
    if options:
        parsed = with_header_options(parsed, options)
    if not header_tags and key_id is None:
        return parsed
    tags = {**header_tags, **parsed.tags}
    if key_id is not None:
        tags[KEY_TAG] = key_id
    return dataclasses.replace(parsed, tags=tags, api_key_public_id=key_id)


def _session_id(name: bytes, value: bytes) -> str:
    """A session header's value: at most MAX_SESSION_ID_CHARS (a session's statistics row is keyed by it)."""
    text = _header_text(value)
    if len(text) > MAX_SESSION_ID_CHARS:
        raise InvalidRequest.at(name.decode("latin-1"), f"a session id has at most {MAX_SESSION_ID_CHARS} characters")
    return text


def _header_text(value: bytes) -> str:
    """A header value as text: UTF-8, as clients send non-ASCII text today; else its bytes as Latin-1 (HTTP's old
    rule), so that no value is refused."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return value.decode("latin-1")
