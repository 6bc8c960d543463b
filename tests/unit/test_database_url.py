"""An LSD_DATABASE_URL that cannot work fails at once with the reason; an unreachable one is retried."""

from __future__ import annotations

import time

import pytest

from lsd.store.database import DatabaseUnreachable, connect_with_retry
from lsd.store.local import free_port


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:notaport/postgres", 'invalid integer value "notaport"'),
        ("postgresql://postgres:s3cret@127.0.0.1:5432/postgres?sslmode=bogus", 'invalid sslmode value: "bogus"'),
    ],
)
def test_a_misconfigured_url_fails_at_once_naming_the_value(url: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable) as caught:
        connect_with_retry(url, 30)
    assert time.monotonic() - started < 5
    assert str(caught.value).startswith("invalid LSD_DATABASE_URL:") and reason in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_server_is_retried_until_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable) as caught:
        connect_with_retry(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", 1.5)
    assert time.monotonic() - started >= 0.5  # backed off and tried again (0.1, 0.2, 0.4 s) before giving up
    assert str(caught.value).startswith("cannot reach PostgreSQL")
