"""About how much memory a group of records holds while it waits in the writer's queue (`max_queue_bytes`).

Exact sizes would cost a deep `sys.getsizeof` walk or an encoding per request. What fills a queue is text: prompts,
answers, raw requests and responses. So a record counts the length of each str and bytes value it holds, walking
into lists and dicts (JSON payloads) up to WALK_BUDGET values, plus a fixed cost per record and per value for the
objects around them. An agent-sized prompt is a few long strings: its walk is short and its estimate close; a payload
of many thousands of small values is counted only for its first WALK_BUDGET values (an underestimate, bounded in
cost: ~10 us).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

RECORD_OVERHEAD = 400  # the record object, its field slots, small ints, uuids, datetimes and short strings
VALUE_OVERHEAD = 50  # per str, bytes, list or dict walked: the object header
WALK_BUDGET = 1000  # values walked per record at most

_JSON_TYPES = ("Json", "Any", "dict", "list", "bytes")  # annotations of the fields counted, with BIG_TEXT's
# The text fields that may be long (a provider's raw request and answer, an error quoting it); the other str fields
# (names, statuses, hashes) are short, and in RECORD_OVERHEAD.
BIG_TEXT = frozenset({"raw_request", "raw_response", "original_response", "error"})
_getters: dict[type, Callable[[Any], tuple[Any, ...]]] = {}


def footprint(records: Sequence[Any]) -> int:
    """Approximate bytes of memory held by `records` (dataclass instances), their payloads included."""
    total = 0
    for record in records:
        kind = type(record)
        get = _getters.get(kind) or _getter(kind)
        total += RECORD_OVERHEAD
        for value in get(record):
            kind = type(value)
            if kind is str or kind is bytes:
                total += VALUE_OVERHEAD + len(value)
            elif kind is dict or kind is list:
                total += _walk(value)
    return total


def _getter(kind: type) -> Callable[[Any], tuple[Any, ...]]:
    """The values of `kind`'s fields that may be big: JSON (by their annotations) and BIG_TEXT; the others (ids,
    times, numbers, flags, short names) are in RECORD_OVERHEAD. Looked up once per record class."""
    names = [
        f.name for f in dataclasses.fields(kind) if f.name in BIG_TEXT or any(t in str(f.type) for t in _JSON_TYPES)
    ]
    if not names:
        get: Callable[[Any], tuple[Any, ...]] = lambda record: ()  # noqa: E731
    elif len(names) == 1:
        one = attrgetter(names[0])
        get = lambda record: (one(record),)  # noqa: E731
    else:
        get = attrgetter(*names)
    _getters[kind] = get
    return get


def _walk(value: Any) -> int:
    """Bytes of the strings in a JSON-like value, plus VALUE_OVERHEAD per container and string, for at most
    WALK_BUDGET values."""
    total = 0
    budget = WALK_BUDGET
    stack = [value]
    while stack and budget > 0:
        budget -= 1
        item = stack.pop()
        kind = type(item)
        total += VALUE_OVERHEAD
        if kind is str or kind is bytes:
            total += len(item)
        elif kind is dict:
            for key, child in item.items():
                total += len(key)
                stack.append(child)
        elif kind is list or kind is tuple:
            stack.extend(item)
    return total
