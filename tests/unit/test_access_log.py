"""The access log never writes an API key a client put in the URL."""

from __future__ import annotations

import time
from typing import Any

from lsd.api.access_log import AccessLog
from lsd.auth import new_key, redact_keys


class Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def enabled(self) -> bool:
        return True

    def emit(self, message: str, fields: dict[str, Any]) -> None:
        self.lines.append((message, fields))


def test_a_key_in_the_path_is_redacted_in_the_line() -> None:
    token = new_key().token
    secret = token.rsplit("-", 1)[1]
    assert redact_keys(f"/v1/{token}/x") == "/v1/sk-lsd-[REDACTED]/x"
    assert redact_keys("/inference") == "/inference"
    sink = Sink()
    log = AccessLog(sink)  # type: ignore[arg-type]
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": f"/nope/{token}", "headers": []}
    request_id = log.start(scope)
    log.finish(scope, request_id, 404, time.perf_counter())
    [(message, fields)] = sink.lines
    assert secret not in message and secret not in str(fields)
    assert message == "GET /nope/sk-lsd-[REDACTED] 404" and fields["route"] == "/nope/sk-lsd-[REDACTED]"
