"""The console's number formats: a priced call never reads as a free one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lsd.api.console.render import money


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "\N{EN DASH}"),
        (0, "$0.0000"),
        (Decimal("0.000011"), "$0.000011"),  # a cheap call: its two significant digits, not $0.0000
        (0.00000123, "$0.0000012"),
        (Decimal("0.25"), "$0.2500"),
        (1234.5, "$1,234.50"),
    ],
)
def test_money(value: object, shown: str) -> None:
    assert money(value) == shown
