"""DICL examples (`dicl_examples`, sql/migrations/0010_dicl.sql): add them, and find a variant's k nearest.

Embeddings are stored at unit length, so cosine distance is 1 - dot product, computed in SQL (a sum over
`unnest` of the two arrays). A scan of every example's full vector is too slow at 100k examples, so each row also
holds a 256-bit sketch: the signs of 256 orthogonal ±1 hyperplanes (a randomised Hadamard transform, `sketch`), whose
Hamming distance between two vectors grows with the angle between them. The query keeps the `prefilter(k)`
examples whose sketches differ in fewest bits from the input's (bit_count of the XOR: cheap on every row, and no
vector is read), then ranks only those by exact cosine distance. Below `PREFILTER_MIN` examples every one is
ranked, so small sets get the exact k nearest. bench/variant_types.py measures time and recall at 10k and 100k.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from psycopg import sql
from psycopg.types.json import Jsonb

from lsd.store.database import Database

SKETCH_BITS = 256
PREFILTER_MIN = 100  # examples ranked exactly, at least
PREFILTER_PER_K = 10  # ... and this many per example asked for

_NEAREST = """
SELECT input, output, distance FROM (
    SELECT input, output,
           1 - (SELECT sum(x::float8 * y) FROM unnest(embedding, %(query)s::real[]) AS u(x, y)) AS distance
    FROM (
        SELECT input, output, embedding FROM dicl_examples
        WHERE function_name = %(function)s AND variant_name = %(variant)s
        ORDER BY bit_count(sketch # %(sketch)s::bit(256))
        LIMIT %(prefilter)s
    ) AS near
    WHERE cardinality(embedding) = %(dimensions)s  -- here, not above: it reads (detoasts) the whole vector
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
_TYPES = ("uuid", "text", "text", "jsonb", "jsonb", "float4[]", "text", "uuid", "timestamptz")  # sketch: its bit text


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
    """The 256-bit sketch of `vector`, as PostgreSQL's bit string text ('0101...'): the signs of 256 orthogonal ±1
    hyperplanes, rows of a Hadamard matrix after a fixed random sign flip of each coordinate (a randomised
    Hadamard transform, zero-padded to a power of two; O(d log d), about 1 ms at 1,536 dimensions)."""
    size = 1
    while size < len(vector):
        size *= 2
    # A fixed pseudo-random sign per coordinate (Knuth's multiplicative hash, one bit of it).
    a = [float(x) if (i * 2654435761 >> 13) & 1 else -float(x) for i, x in enumerate(vector)]
    a.extend([0.0] * (size - len(a)))
    step = 1
    while (
        step < size
    ):  # the constant-geometry Walsh-Hadamard transform: rows come out permuted, still ±1 and orthogonal
        evens, odds = a[0::2], a[1::2]
        a = [x + y for x, y in zip(evens, odds, strict=True)] + [x - y for x, y in zip(evens, odds, strict=True)]
        step *= 2
    return "".join("1" if v > 0 else "0" for v in a[:SKETCH_BITS]).ljust(SKETCH_BITS, "0")


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
    async with database.reading("dicl") as conn, conn.cursor() as cur:
        await cur.execute(*nearest_query(function_name, variant_name, embedding, k, max_distance))
        return [Neighbour(i, o, float(d)) for i, o, d in await cur.fetchall()]


def nearest_query(
    function_name: str, variant_name: str, embedding: Sequence[float], k: int, max_distance: float | None = None
) -> tuple[str, dict[str, Any]]:
    """The nearest-neighbour query and its parameters (rows: input, output, distance), for `nearest` and for
    bench/variant_types.py, which times it alone."""
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
    return _NEAREST, params


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


@dataclass(frozen=True, slots=True)
class Source:
    """An example to store: its input and the output to imitate, and the inference it comes from (None: a file's)."""

    inference_id: UUID | None
    input: Any
    output: Any


async def demonstrated(database: Database, function_name: str, function_type: str, limit: int) -> list[Source]:
    """The newest `limit` inferences of the function with a demonstration; the output is the latest demonstration
    (a json function's as {"raw", "parsed"})."""
    table = sql.Identifier("json_inferences" if function_type == "json" else "chat_inferences")
    query = sql.SQL(
        "SELECT i.id, lsd_input(i.input, i.input_refs, i.id) AS input, d.value FROM {} i"
        " JOIN LATERAL (SELECT value FROM demonstration_feedback WHERE inference_id = i.id ORDER BY id DESC LIMIT 1)"
        " d ON true WHERE i.function_name = %s ORDER BY i.id DESC LIMIT %s"
    ).format(table)
    async with database.reading("dicl") as conn, conn.cursor() as cur:
        await cur.execute(query, (function_name, limit))
        rows = await cur.fetchall()
    if function_type == "json":
        return [Source(i, inp, {"raw": orjson.dumps(v).decode(), "parsed": v}) for i, inp, v in rows]
    return [Source(i, inp, v) for i, inp, v in rows]


async def rated(
    database: Database, function_name: str, function_type: str, metric_name: str, level: str, limit: int
) -> list[Source]:
    """The newest `limit` inferences of the function whose latest value of the boolean `metric_name` (given on the
    inference, or on its episode for an episode-level metric) is true; the output is the inference's own."""
    table = sql.Identifier("json_inferences" if function_type == "json" else "chat_inferences")
    target = sql.Identifier("episode_id" if level == "episode" else "id")
    query = sql.SQL(
        "SELECT i.id, lsd_input(i.input, i.input_refs, i.id) AS input, i.output FROM {} i"
        " WHERE i.function_name = %s AND (SELECT f.value"
        " FROM boolean_metric_feedback f WHERE f.target_id = i.{} AND f.metric_name = %s ORDER BY f.id DESC LIMIT 1)"
        " ORDER BY i.id DESC LIMIT %s"
    ).format(table, target)
    async with database.reading("dicl") as conn, conn.cursor() as cur:
        await cur.execute(query, (function_name, metric_name, limit))
        return [Source(i, inp, out) for i, inp, out in await cur.fetchall()]
