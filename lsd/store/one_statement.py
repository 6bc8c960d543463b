"""A small batch of records in one statement: every table's rows as one JSON array each, in one `INSERT` per table
chained by a `WITH`, sent in one round trip with no explicit transaction (one statement is one transaction).

Why: a flush of a few rows through binary COPY costs a round trip per COPY, BEGIN and COMMIT, and psycopg's
machinery around each: ~0.85 ms of client CPU for two inferences (eight rows in four tables), where this path
takes ~0.15 ms (and PostgreSQL about the same as for COPY). Streams end a few at a time, so most of their flushes
are this small. COPY stays the path for bigger batches (past ~100 rows its per-row cost is lower) and for the
idempotent path (retries and replays).

Only for rows whose values JSON carries exactly: tables whose columns are all of the PLAIN_TYPES, and values with no
U+0000 or U+E000 in any string (lsd.store.escaping's escapes are COPY's job), no non-finite float, no naive
datetime, nothing orjson cannot encode. `encode()` returns None for anything else, and the caller uses COPY.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

# Column types whose text input reads what orjson writes for the value (`(e->>i)::type`), and jsonb (`e->i`).
PLAIN_TYPES = frozenset(
    {
        "uuid",
        "timestamp with time zone",
        "text",
        "character varying",
        "integer",
        "bigint",
        "smallint",
        "boolean",
        "numeric",
        "double precision",
        "real",
        "jsonb",
        "text[]",
    }
)
_SCALARS = frozenset((int, bool, type(None), UUID, Decimal))


def select_list(types: Sequence[str]) -> str | None:
    """The SELECT list reading one table's columns from `e`, a row encoded as a JSON array by position; None when
    a column's type is not plain."""
    if any(t not in PLAIN_TYPES for t in types):
        return None
    # A JSON null in a jsonb column is SQL NULL, as None is through COPY.
    return ", ".join(_select(i, t) for i, t in enumerate(types))


def _select(i: int, column_type: str) -> str:
    if column_type == "jsonb":
        return f"NULLIF(e->{i}, 'null'::jsonb)"
    if column_type == "text[]":  # a JSON array of strings, or null (an empty array reads as NULL: none is written)
        return (
            f"(SELECT array_agg(x ORDER BY n) FROM jsonb_array_elements_text(NULLIF(e->{i}, 'null'::jsonb))"
            " WITH ORDINALITY AS a(x, n))"
        )
    return f"(e->>{i})::{column_type}"


def statement(tables: Sequence[tuple[str, str, str]]) -> str:
    """One statement inserting into each (quoted table name, quoted column list, select list) the rows of the JSON
    array passed as its parameter, in order."""
    parts = [
        f"t{n} AS (INSERT INTO {table} ({columns}) SELECT {select} FROM jsonb_array_elements(%s::jsonb) AS e)"
        for n, (table, columns, select) in enumerate(tables)
    ]
    return "WITH " + ", ".join(parts) + " SELECT 1"


def encode(rows: list[tuple[Any, ...]]) -> str | None:
    """`rows` as one JSON array of arrays, or None when a value needs what only COPY does (see the module)."""
    if not _plain(rows):
        return None
    try:
        return orjson.dumps(rows, default=_default).decode()
    except TypeError:  # a type orjson cannot encode, a non-str key, an integer past 64 bits
        return None


def _default(value: Any) -> Any:
    if type(value) is Decimal:
        return str(value)  # exact: numeric reads it back digit for digit
    raise TypeError


def _plain(value: Any) -> bool:
    """No string (keys included) holds U+0000 or U+E000, and no float is NaN or infinite."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item or "\ue000" in item:
                return False
        elif kind is tuple or kind is list:
            stack.extend(item)
        elif kind is dict:
            for key, child in item.items():
                if type(key) is str and ("\x00" in key or "\ue000" in key):
                    return False
                stack.append(child)
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is datetime:
            if item.tzinfo is None:
                return False  # COPY refuses a naive time for timestamptz: so must this path
        elif kind not in _SCALARS:
            return False  # anything else (bytes, a wrapper, a subclass): COPY knows how to write it
    return True
