"""Waiting on a real system from a test: a count read from PostgreSQL, a condition polled until it holds."""

from __future__ import annotations

import time
from typing import Any

import psycopg


def count(url: str, query: str, *params: object) -> int:
    """The first column of the query's first row, as an int (0 when there is no row)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def eventually(check: Any, timeout: float = 15) -> Any:
    """Call `check` every 50 ms until it returns a truthy value or `timeout` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
