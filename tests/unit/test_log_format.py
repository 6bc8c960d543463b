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
