"""DICL examples (`dicl_examples`, sql/migrations/0010_dicl.sql): add them, and find a variant's k nearest.

Embeddings are stored at unit length, so cosine distance is 1 - dot product, computed in SQL (`lsd_dot`). A scan
of every example's full vector is too slow at 100k examples, so each row also holds a 256-bit sketch: the signs of
256 fixed sparse random projections (each sums the coordinates i ≡ j mod 256, with a fixed ±1 sign per i). The
query keeps the `prefilter(k)` examples whose sketches differ in fewest bits from the input's (bit_count of the
XOR: cheap on every row), then ranks only those by exact cosine distance. Below `PREFILTER_MIN` examples every one
is ranked, so small sets get the exact k nearest. bench/variant_types.py measures it at 10k and 100k.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from lsd.store.database import Database

SKETCH_BITS = 256
PREFILTER_MIN = 1000  # examples ranked exactly, at least
PREFILTER_PER_K = 50  # ... and this many per example asked for

_NEAREST = """
SELECT input, output, distance FROM (
    SELECT input, output, 1 - lsd_dot(embedding, %(query)s::real[]) AS distance
    FROM (
        SELECT input, output, embedding FROM dicl_examples
        WHERE function_name = %(function)s AND variant_name = %(variant)s
          AND cardinality(embedding) = %(dimensions)s
        ORDER BY bit_count(sketch # %(sketch)s::bit(256))
        LIMIT %(prefilter)s
    ) AS near
) AS ranked
WHERE %(max_distance)s::float8 IS NULL OR distance <= %(max_distance)s::float8
ORDER BY distance
LIMIT %(k)s
"""

_COLUMNS = (
    "id",
    "function_name",
    "variant_name",
    "input",
    "output",
    "embedding",
    "sketch",
    "source_inference_id",
    "created_at",
)
_TYPES = ("uuid", "text", "text", "jsonb", "jsonb", "float4[]", "bit", "uuid", "timestamptz")


@dataclass(frozen=True, slots=True)
class DiclExample:
    """One stored example: an input, the output to imitate, and the input's unit embedding."""

    id: UUID
    function_name: str
    variant_name: str
    input: Any
    output: Any
    embedding: tuple[float, ...]
    created_at: dt.datetime
    source_inference_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class Neighbour:
    input: Any
    output: Any
    distance: float


def unit(vector: Sequence[float]) -> tuple[float, ...]:
    """`vector` scaled to length 1 (a zero vector stays zero)."""
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return tuple(x / norm for x in vector) if norm else tuple(float(x) for x in vector)


def sketch(vector: Sequence[float]) -> str:
    """The 256-bit sketch of `vector`, as PostgreSQL's bit string text ('0101...')."""
    sums = [0.0] * SKETCH_BITS
    for i, x in enumerate(vector):
        # A fixed pseudo-random sign per coordinate (Knuth's multiplicative hash, one bit of it).
        sums[i % SKETCH_BITS] += x if (i * 2654435761 >> 13) & 1 else -x
    return "".join("1" if s > 0 else "0" for s in sums)


def prefilter(k: int) -> int:
    return max(PREFILTER_MIN, PREFILTER_PER_K * k)


async def nearest(
    database: Database,
    function_name: str,
    variant_name: str,
    embedding: Sequence[float],
    k: int,
    max_distance: float | None = None,
) -> list[Neighbour]:
    """The (at most) `k` stored examples of the variant nearest to `embedding` by cosine distance, nearest first,
    none farther than `max_distance`. Raises DatabaseUnavailable when PostgreSQL cannot answer."""
    if k <= 0:
        return []
    query = unit(embedding)
    params = {
        "query": list(query),
        "function": function_name,
        "variant": variant_name,
        "dimensions": len(query),
        "sketch": sketch(query),
        "prefilter": prefilter(k),
        "max_distance": max_distance,
        "k": k,
    }
    async with database.reading("dicl") as conn, conn.cursor() as cur:
        await cur.execute(_NEAREST, params)
        return [Neighbour(i, o, float(d)) for i, o, d in await cur.fetchall()]


async def insert(database: Database, examples: Sequence[DiclExample]) -> int:
    """Store `examples` (their embeddings made unit length here) in one COPY; an example from an inference
    already stored for the same variant is skipped. Returns how many were stored."""
    if not examples:
        return 0
    async with database.connection("dicl") as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute("CREATE TEMPORARY TABLE dicl_incoming (LIKE dicl_examples INCLUDING DEFAULTS) ON COMMIT DROP")
        async with cur.copy(f"COPY dicl_incoming ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            copy.set_types(list(_TYPES))
            for e in examples:
                vector = unit(e.embedding)
                await copy.write_row(
                    (
                        e.id,
                        e.function_name,
                        e.variant_name,
                        Jsonb(e.input),
                        Jsonb(e.output),
                        list(vector),
                        sketch(vector),
                        e.source_inference_id,
                        e.created_at,
                    )
                )
        await cur.execute("INSERT INTO dicl_examples SELECT * FROM dicl_incoming ON CONFLICT DO NOTHING")
        return cur.rowcount


async def count(database: Database, function_name: str, variant_name: str) -> int:
    async with database.reading("dicl") as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT count(*) FROM dicl_examples WHERE function_name = %s AND variant_name = %s",
            (function_name, variant_name),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0
