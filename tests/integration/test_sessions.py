"""Agent sessions: inferences tagged by a coding agent's session header are totalled per session by the statistics
refresh, listed newest first (`GET /v1/sessions`, keyset pages), read one at a time with their subagents' sessions
(`GET /v1/sessions/{id}`), and shown by the console (/ui/sessions)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.testclient import TestClient

from lsd.app import build_app
from lsd.config import parse
from lsd.store.statistics import refresh_statistics_sync
from tests.support import rows
from tests.support.configs import echo_chat

ROOT = Path(__file__).resolve().parents[2]
CONFIG = f"""
[gateway.observability]
async_writes = false
{echo_chat()}
[models.broken]
routing = ["down"]
[models.broken.providers.down]
type = "dummy"
model_name = "error"
"""


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with TestClient(build_app(parse(CONFIG, base_dir=ROOT), database_url)) as test_client:
        yield test_client


def chat(client: TestClient, model: str, text: str, headers: Mapping[str, str | bytes]) -> dict[str, Any]:
    r = client.post(
        "/openai/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers=dict(headers),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def refresh(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert refresh_statistics_sync(conn) is not None


def test_sessions_are_totalled_listed_and_shown(client: TestClient, database_url: str) -> None:
    opencode = {"x-session-id": "ses_parent", "x-openwebui-user-id": "u-ann"}
    subagent = {"x-session-id": "ses_child", "x-parent-session-id": "ses_parent"}
    codex = {"session-id": "0199-codex"}
    answers = [
        chat(client, "tensorzero::model_name::echo", "one", opencode),
        chat(client, "tensorzero::function_name::chat", "two", opencode),
        chat(client, "tensorzero::model_name::echo", "three", subagent),
        chat(client, "tensorzero::model_name::echo", "four", codex),
        chat(client, "tensorzero::model_name::echo", "no session", {}),
    ]
    failed = client.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::model_name::broken", "messages": [{"role": "user", "content": "fail"}]},
        headers=opencode,
    )
    assert failed.status_code >= 500
    with psycopg.connect(database_url, autocommit=True) as conn:  # a session spread over a later transaction
        rows.inference(conn, tags={"lsd::session_id": "0199-codex"}, cost=0.25, input_tokens=7, output_tokens=3)
    refresh(database_url)

    listed = client.get("/v1/sessions").json()
    # by latest activity: the parent's last was its failed turn, after its subagent's
    assert [s["session_id"] for s in listed["sessions"]] == ["0199-codex", "ses_parent", "ses_child"]
    assert listed["next_cursor"] is None
    parent = client.get("/v1/sessions/ses_parent").json()
    usage = [a["usage"] for a in answers[:2]]
    assert parent["inference_count"] == 2 and parent["failed_inference_count"] == 1  # no answer: no inference row
    assert parent["input_tokens"] == sum(u["prompt_tokens"] for u in usage)
    assert parent["output_tokens"] == sum(u["completion_tokens"] for u in usage)
    assert parent["models"] == ["chat/a", "echo"]  # the default function's model by name, a function's variant
    assert parent["parent_session_id"] is None and parent["first_seen"] <= parent["last_seen"]
    assert parent["users"] == ["u-ann"]
    by_user = client.get("/v1/sessions", params={"user": "u-ann"}).json()["sessions"]
    assert [s["session_id"] for s in by_user] == ["ses_parent"]
    assert [c["session_id"] for c in parent["subsessions"]] == ["ses_child"]
    child = parent["subsessions"][0]
    assert parent["with_subsessions"]["inference_count"] == 3  # its own two and its subagent's one
    assert parent["with_subsessions"]["input_tokens"] == parent["input_tokens"] + child["input_tokens"]
    assert parent["subsessions"][0]["parent_session_id"] == "ses_parent"
    codex_session = client.get("/v1/sessions/0199-codex").json()
    assert codex_session["inference_count"] == 2 and codex_session["priced_inference_count"] == 1  # echo: no price
    assert codex_session["cost"] == 0.25 and parent["cost"] is None  # unknown, not free

    # Pages follow one another by cursor, each session once.
    first = client.get("/v1/sessions", params={"limit": 2}).json()
    second = client.get("/v1/sessions", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [s["session_id"] for s in first["sessions"] + second["sessions"]] == [
        "0199-codex",
        "ses_parent",
        "ses_child",
    ]
    assert second["next_cursor"] is None

    # A refresh adds new steps to the session's totals.
    chat(client, "tensorzero::model_name::echo", "five", opencode)
    refresh(database_url)
    assert client.get("/v1/sessions/ses_parent").json()["inference_count"] == 3
    assert client.get("/v1/sessions").json()["sessions"][0]["session_id"] == "ses_parent"

    # The console: the list, one session with its subagent and its inferences.
    page = client.get("/ui/sessions")
    assert page.status_code == 200 and page.text.count('class="session-row"') == 3
    assert 'href="/ui/session?id=ses_parent"' in page.text
    detail = client.get("/ui/session", params={"id": "ses_parent"})
    assert detail.status_code == 200
    assert 'href="/ui/session?id=ses_child"' in detail.text  # the subagent's session
    assert 'id="with-subsessions">4 inferences' in detail.text  # after "five": three of its own and the child's
    for answer in answers[:2]:
        assert f"/ui/inferences/{answer['id']}" in detail.text
    assert f"/ui/inferences/{answers[2]['id']}" not in detail.text  # the subagent's own inference is on its page
    assert "echo" in html.unescape(detail.text)
    assert client.get("/ui/session", params={"id": "unknown"}).status_code == 404
    # The unanswered inference is listed on its session's page, and its own page names its session and tags.
    unanswered = re.findall(r'class="failed-row"><td><a class="mono" href="(/ui/inferences/[0-9a-f-]+)"', detail.text)
    assert len(unanswered) == 1
    page = client.get(unanswered[0])
    assert page.status_code == 200 and "every attempt failed" in page.text
    assert 'href="/ui/session?id=ses_parent"' in page.text and "lsd::session_id=ses_parent" in html.unescape(page.text)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "²"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"x": "1"}, "x"),
        ({"api_key_public_id": "k\x00"}, "api_key_public_id"),
    ],
)
def test_bad_listing_parameters_are_400s_naming_them(client: TestClient, params: dict[str, str], field: str) -> None:
    r = client.get("/v1/sessions", params=params)
    assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_an_unknown_session_is_a_404(client: TestClient) -> None:
    r = client.get("/v1/sessions/nobody")
    assert r.status_code == 404 and r.json()["field"] == "session_id", r.text


def test_any_session_id_is_reachable_and_an_overlong_one_is_refused(client: TestClient, database_url: str) -> None:
    """Session ids are the client's: `/`, `..` and the like are listed and read through the query form (a path
    cannot carry them), HTML in them is escaped, and one longer than a statistics key can hold is a 400 naming its
    header (it once stopped every statistics refresh)."""
    odd = ["a/b", "..", "<script>x</script>", "ünï cødé", "private \ue000 use"]  # U+E000: stored escaped
    for session_id in odd:
        chat(client, "tensorzero::model_name::echo", "hi", {"x-session-id": session_id.encode()})  # UTF-8
    chat(client, "tensorzero::model_name::echo", "sub", {"x-session-id": "kid", "x-parent-session-id": "a/b"})
    long = client.post(
        "/openai/v1/chat/completions",
        json={"model": "tensorzero::model_name::echo", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-session-id": "s" * 513},
    )
    assert long.status_code == 400 and long.json()["error"]["param"] == "x-session-id", long.text
    with psycopg.connect(database_url, autocommit=True) as conn:  # one written another way: left out, not fatal
        rows.inference(conn, tags={"lsd::session_id": "z" * 3000, "lsd::parent_session_id": "p" * 3000})
    refresh(database_url)
    refresh(database_url)  # the refresh goes on
    listed = {s["session_id"] for s in client.get("/v1/sessions", params={"limit": 100}).json()["sessions"]}
    assert listed == {*odd, "kid"}
    for session_id in odd:
        one = client.get("/v1/sessions", params={"session_id": session_id}).json()["sessions"]
        assert [s["session_id"] for s in one] == [session_id]
        page = client.get("/ui/session", params={"id": session_id})
        assert page.status_code == 200 and "<script>x" not in page.text
        assert page.text.count('href="/ui/inferences/') == 1  # its inference, found by its tag
    assert client.get("/v1/sessions/private \ue000 use").json()["session_id"] == "private \ue000 use"
    nul = client.get("/v1/sessions", params={"session_id": "a\x00", "user": "\x00"})
    assert nul.status_code == 200 and nul.json()["sessions"] == []  # a U+0000 matches nothing, and is no 500
    kids = client.get("/v1/sessions", params={"parent_session_id": "a/b"}).json()["sessions"]
    assert [s["session_id"] for s in kids] == ["kid"]
    assert 'href="/ui/session?id=a%2Fb"' in client.get("/ui/sessions").text


@pytest.mark.parametrize(
    "path", ["/ui/sessions?user=a%00b", "/ui/sessions?key=%00", "/ui/session?id=a%00b", "/ui/functions/a%00b"]
)
def test_a_console_page_asked_for_u0000_is_a_400(client: TestClient, path: str) -> None:
    """PostgreSQL's text holds no U+0000: a page asked for one answers 400, not the database's 500 (diff4 review)."""
    assert client.get(path).status_code == 400
