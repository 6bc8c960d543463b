"""The text log format keeps a line's structured fields; an unknown LSD_LOG_LEVEL is a config error naming it."""

from __future__ import annotations

import logging

import pytest

from lsd.errors import ConfigError
from lsd.telemetry import logging as lsd_logging


def test_the_text_format_writes_the_fields_as_key_value_pairs() -> None:
    record = logging.LogRecord("lsd.access", logging.INFO, __file__, 1, "POST /inference 200", None, None)
    record.fields = {"request_id": "r1", "latency_ms": 1.5, "inference_id": "i1"}
    line = lsd_logging.TextFormatter("%(name)s: %(message)s").format(record)
    assert line == "lsd.access: POST /inference 200 request_id=r1 latency_ms=1.5 inference_id=i1"


def test_an_unknown_log_level_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LSD_LOG_LEVEL", "loud")
    with pytest.raises(ConfigError, match="LSD_LOG_LEVEL: expected one of DEBUG, INFO"):
        lsd_logging.configure()


def test_a_line_break_from_a_request_cannot_forge_a_text_line() -> None:
    record = logging.LogRecord("lsd.access", logging.INFO, __file__, 1, "GET /x\nFAKE 200 %s", ("a",), None)
    record.fields = {"route": "/x\nlsd.access: forged"}
    line = lsd_logging.TextFormatter("%(name)s: %(message)s").format(record)
    assert "\n" not in line and line == "lsd.access: GET /x\\nFAKE 200 a route=/x\\nlsd.access: forged"


def test_a_request_id_with_spaces_or_line_breaks_is_replaced() -> None:
    from lsd.api.access_log import AccessLog

    log = AccessLog(None)  # type: ignore[arg-type]
    for given, kept in ((b"abc-123", True), (b"x api_key_public_id=evil", False), (b"a\nb", False)):
        scope = {"headers": [(b"x-request-id", given)]}
        assert (log.start(scope) == given.decode()) is kept
