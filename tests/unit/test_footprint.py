"""lsd.store.footprint: the writer queue's memory estimate."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from lsd.store.footprint import RECORD_OVERHEAD, WALK_BUDGET, footprint
from tests.integration.test_writer import inference


def test_the_text_of_a_record_counts_whatever_field_holds_it() -> None:
    small = footprint(inference("hi"))
    prompt = "x" * 100_000
    big = footprint(inference(prompt))  # input and output both hold it
    assert 199_000 <= big - small <= 200_100


@dataclasses.dataclass
class Raw:
    raw: bytes | None
    payload: Any


def test_bytes_and_nested_json_count() -> None:
    empty = footprint([Raw(None, {})])
    assert footprint([Raw(b"y" * 50_000, {})]) - empty >= 50_000
    assert footprint([Raw(None, {"a": [{"b": "z" * 10_000}]})]) - empty >= 10_000


def test_a_record_without_text_costs_its_overhead() -> None:
    @dataclasses.dataclass
    class Counter:
        n: int
        m: float

    assert footprint([Counter(1, 2.0)]) == RECORD_OVERHEAD


def test_a_payload_of_many_small_values_is_walked_only_so_far() -> None:
    many = dataclasses.replace(inference("hi")[0], tags={"list": list(range(WALK_BUDGET * 100))})  # type: ignore[type-var]
    started = time.perf_counter()
    footprint([many])
    assert time.perf_counter() - started < 0.05  # bounded by WALK_BUDGET, not by the payload (100,000 values)
