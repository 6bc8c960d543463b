"""Hand-written hostile requests to every route: no input a client sends may get a 5xx, and none that is refused
may leave a row. Also: a 413/431 says `Connection: close`, and an unexpected error is a JSON 500 with an id."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from lsd.api.openapi import OPERATIONS
from lsd.api.routes import ROUTES
from lsd.ids import uuid7
from lsd.providers.patches import apply_body_patches
from lsd.types import BodyPatch
from tests.robustness.conftest import MAX_BODY_BYTES, Gateway

VALID_BODIES: dict[str, dict[str, Any]] = {
    "/inference": {"function_name": "chat", "input": {"messages": [{"role": "user", "content": "hi"}]}},
    "/openai/v1/chat/completions": {
        "model": "tensorzero::function_name::chat",
        "messages": [{"role": "user", "content": "hi"}],
    },
    "/openai/v1/embeddings": {"model": "missing", "input": "hi"},
    "/feedback": {"metric_name": "good", "inference_id": str(uuid7()), "value": True},
    "/v1/inferences/list_inferences": {"function_name": "chat", "limit": 5, "offset": 0},
    "/v1/inferences/get_inferences": {"ids": [str(uuid7())]},
    "/batch_inference": {"function_name": "chat", "inputs": [{"messages": [{"role": "user", "content": "hi"}]}]},
    "/v1/evaluations/human_feedback": {"metric_name": "good", "value": True, "evaluation_run_id": str(uuid7())},
    "/workflow_evaluation_run": {"variants": {"chat": "a"}, "project_name": "p"},
    "/v1/datasets/{dataset_name}/datapoints": {"datapoints": [{"function_name": "chat", "input": {}}]},
    "/v1/datasets/{dataset_name}/list_datapoints": {"limit": 5, "offset": 0},
    "/anthropic/v1/messages": {
        "model": "lsd::function_name::chat",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    },
    "/anthropic/v1/messages/count_tokens": {
        "model": "lsd::function_name::chat",
        "messages": [{"role": "user", "content": "hi"}],
    },
}
USER_HI = {"role": "user", "content": "hi"}
CHAT = "tensorzero::function_name::chat"
EMB = "tensorzero::model_name::emb"
PATH_VALUES = {
    "batch_id": str(uuid7()),
    "inference_id": str(uuid7()),
    "run_id": str(uuid7()),
    "dataset_name": "ds",
    "session_id": "s1",
}

# A value of every JSON type, and the edges of each: what a wrong-typed key receives.
WRONG_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    1e308,
    -1e308,
    "",
    "x" * 300,
    "\u0000",
    "1969-12-31T23:59:59Z",
    "0001-01-01T00:00:00+01:00",
    [],
    [None],
    [[[]]],
    {},
    {"": None},
]


def _path(template: str) -> str:
    for name, value in PATH_VALUES.items():
        template = template.replace("{" + name + "}", value)
    return template


def _routes() -> Iterator[tuple[str, str, dict[str, Any] | None]]:
    for method, path, _summary, body, _query in OPERATIONS:
        yield method, path, VALID_BODIES.get(path, {}) if body is not None else None


def _send(client: httpx.Client, gateway: Gateway, method: str, path: str, content: bytes | None) -> httpx.Response:
    headers = {"content-type": "application/json"} if content is not None else {}
    response = client.request(method, _path(path), content=content, headers=headers)
    gateway.note(method, path, response.status_code, response.content)
    return response


def _mutations(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The body with each key (nested ones too) set to each wrong value, and each key removed."""
    for key, value in body.items():
        yield {k: v for k, v in body.items() if k != key}
        for wrong in WRONG_VALUES:
            yield {**body, key: wrong}
        if isinstance(value, dict):
            for inner in _mutations(value):
                yield {**body, key: inner}
        if isinstance(value, list) and value and isinstance(value[0], dict):
            for inner in _mutations(value[0]):
                yield {**body, key: [inner]}


RAW_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b'"x"',
    b"1e400",
    b'{"a": 1e400}',
    b'{"a": 184467440737095516160}',
    b'{"a": -184467440737095516160}',
    b'{"a": "\xff\xfe"}',
    b'{"\xc3\x28": 1}',
    b'{"a": "\\ud800"}',
    b'{"a": "\x00"}',
    b'{"a": "\\u0000"}',
    b"{" * 1,
    b"[" * 100_000,
    b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    b"[" * 63 + b"]" * 63,
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": 1, "a": 2}',
    b"\xef\xbb\xbf{}",
]


def test_every_route_refuses_malformed_bodies_without_a_5xx(client: httpx.Client, gateway: Gateway) -> None:
    for (method, path, body), raw in itertools.product(_routes(), RAW_BODIES):
        if body is None:
            continue
        response = _send(client, gateway, method, path, raw)
        assert response.status_code < 500, (method, path, raw[:60], response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
    assert gateway.server_errors == []
    gateway.assert_no_rows_from_refusals()


def test_every_key_of_every_body_with_every_wrong_type(client: httpx.Client, gateway: Gateway) -> None:
    for method, path, body in _routes():
        if not body:
            continue
        for mutated in _mutations(body):
            _send(client, gateway, method, path, orjson.dumps(mutated, option=orjson.OPT_PASSTHROUGH_SUBCLASS))
    assert gateway.server_errors == []
    gateway.assert_no_rows_from_refusals()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # An embedding model's name where a chat model is expected.
        ("/openai/v1/chat/completions", {"model": EMB, "messages": [USER_HI]}),
        ("/openai/v1/chat/completions", {"model": EMB, "messages": [USER_HI], "stream": True}),
        ("/openai/v1/chat/completions", {"model": "tensorzero::embedding_model_name::emb", "messages": [USER_HI]}),
        ("/openai/v1/chat/completions", {"model": "emb", "messages": [USER_HI]}),
        ("/inference", {"model_name": "emb", "input": {"messages": [{"role": "user", "content": "hi"}]}}),
        ("/openai/v1/chat/completions", {"model": CHAT, "messages": [{"role": "system", "content": [None]}, USER_HI]}),
        ("/openai/v1/chat/completions", {"model": CHAT, "messages": [{"role": "system", "content": ["x"]}, USER_HI]}),
        ("/openai/v1/chat/completions", {"model": CHAT, "messages": [{"role": "user", "content": [None]}]}),
        ("/v1/inferences/list_inferences", {"offset": 2**63 - 1}),
        ("/v1/inferences/list_inferences", {"offset": 2**64 - 1}),
        ("/v1/inferences/list_inferences", {"limit": 2**63 - 1}),
        ("/v1/datasets/ds/list_datapoints", {"offset": 2**63 - 1, "limit": 2**63 - 1}),
    ],
)  # fmt: skip
def test_known_holes_are_4xx(client: httpx.Client, gateway: Gateway, path: str, body: dict[str, Any]) -> None:
    response = _send(client, gateway, "POST", path, orjson.dumps(body))
    assert 400 <= response.status_code < 500, response.text
    gateway.assert_no_rows_from_refusals()


def test_time_filters_before_1970_are_valid_and_match(client: httpx.Client, gateway: Gateway) -> None:
    answered = _send(client, gateway, "POST", "/inference", orjson.dumps(VALID_BODIES["/inference"]))
    assert answered.status_code == 200
    old = "1900-01-01T00:00:00Z"
    since = {"function_name": "chat", "since": old}
    until = {"function_name": "chat", "until": old}
    in_filter = {"function_name": "chat", "filters": {"type": "time", "time": old, "comparison_operator": ">"}}
    for body, matches in ((since, True), (until, False), (in_filter, True)):
        response = _send(client, gateway, "POST", "/v1/inferences/list_inferences", orjson.dumps(body))
        assert response.status_code == 200, response.text
        assert bool(response.json()["inferences"]) is matches, body


def test_oversize_body_and_headers_close_the_connection(gateway: Gateway) -> None:
    host, port = gateway.base_url.removeprefix("http://").split(":")
    oversize = b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}"
    many_headers = "".join(f"x-h{i}: v\r\n" for i in range(200)).encode()
    cases = [
        (path, f"content-length: {len(oversize)}\r\n".encode(), oversize, 413) for path in ("/inference", "/feedback")
    ]
    cases += [(path, many_headers + b"content-length: 2\r\n", b"{}", 431) for path in ("/inference", "/feedback")]
    for path, head, body, status in cases:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            start = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
            sock.sendall(start + head + b"\r\n")
            sock.sendall(body)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        head_lines = answer.split(b"\r\n\r\n")[0].lower()
        assert head_lines.startswith(f"http/1.1 {status}".encode()), answer[:200]
        assert b"connection: close" in head_lines, head_lines
        gateway.note("POST", path, status, answer)


def test_openapi_document_lists_every_route(client: httpx.Client) -> None:

    document = client.get("/openapi.json").json()
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routed = {(method, route.path) for route in ROUTES for method in (route.methods or ()) if method != "HEAD"}
    assert routed <= described, routed - described


@pytest.mark.parametrize("value", ["²", "\u0661", "1e3", "-1", "", "99999999999999999999999", "\u0000"])
def test_query_numbers_are_range_checked(client: httpx.Client, gateway: Gateway, value: str) -> None:
    response = client.get("/v1/evaluations/runs", params={"limit": value})
    gateway.note("GET", "/v1/evaluations/runs", response.status_code, response.content)
    assert response.status_code in (200, 400), response.text


def test_a_pointer_index_in_another_script_is_not_an_index() -> None:
    """extra_body pointers come from the client: "²" passes str.isdigit() but not int()."""
    body = {"messages": [{"a": 1}]}
    patched = apply_body_patches(body, [BodyPatch("/messages/²/a", 2), BodyPatch("/messages/²", 3)])
    assert patched == body
