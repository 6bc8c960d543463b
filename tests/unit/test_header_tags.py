"""`lsd-tag-<key>` request headers become tags: UTF-8 values read as UTF-8, other bytes as Latin-1."""

from __future__ import annotations

from lsd.api.auth import identify
from lsd.inference.request import parse_inference_request


def test_header_tag_values_are_read_as_utf8_else_latin1() -> None:
    parsed = parse_inference_request({"function_name": "f", "input": {"messages": []}, "tags": {"team": "body"}})
    headers = [
        (b"lsd-tag-city", "Zürich ☕".encode()),
        (b"lsd-tag-legacy", b"caf\xe9"),  # Latin-1, not UTF-8
        (b"lsd-tag-team", b"header"),  # the body's tag wins
    ]
    tagged = identify({"headers": headers}, parsed)
    assert tagged.tags == {"city": "Zürich ☕", "legacy": "café", "team": "body"}


def test_open_webui_forwarded_chat_and_user_headers_become_the_session_and_user_tags() -> None:
    """Open WebUI (ENABLE_FORWARD_USER_INFO_HEADERS=true) on one shared key: its chat id groups a conversation as a
    session and its user id is the `user` per-user rate limits scope on (an `lsd-tag-user` header or the body wins)."""
    parsed = parse_inference_request({"function_name": "f", "input": {"messages": []}})
    headers = [
        (b"x-openwebui-user-name", b"Alice"),
        (b"x-openwebui-user-id", b"8a1f-alice"),
        (b"x-openwebui-user-email", b"alice@team.example"),  # not kept: an address is not needed to tell users apart
        (b"x-openwebui-chat-id", b"chat-42"),
    ]
    assert identify({"headers": headers}, parsed).tags == {"user": "8a1f-alice", "lsd::session_id": "chat-42"}
    chosen = [(b"lsd-tag-user", b"alice@team.example"), *headers]
    assert identify({"headers": chosen}, parsed).tags["user"] == "alice@team.example"
    in_body = parse_inference_request({"function_name": "f", "input": {"messages": []}, "tags": {"user": "body"}})
    assert identify({"headers": headers}, in_body).tags["user"] == "body"


def test_a_codex_sub_agent_is_a_session_of_its_own_under_its_parent_thread() -> None:
    """Codex's sub-agent sends its root's session-id, its own thread-id and x-codex-parent-thread-id (regress2)."""
    parsed = parse_inference_request({"function_name": "f", "input": {"messages": []}})
    root = [(b"session-id", b"t-root"), (b"thread-id", b"t-root")]
    assert identify({"headers": root}, parsed).tags == {"lsd::session_id": "t-root"}  # a top thread: as before
    sub = [(b"session-id", b"t-root"), (b"thread-id", b"t-sub"), (b"x-codex-parent-thread-id", b"t-root")]
    assert identify({"headers": sub}, parsed).tags == {
        "lsd::session_id": "t-sub",
        "lsd::parent_session_id": "t-root",
    }
