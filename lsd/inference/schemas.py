"""Output checks against JSON Schemas, with each schema compiled once (not on every response).

Validators are cached by the schema's canonical JSON, so per-request `output_schema`s that repeat reuse theirs
too; the cache is bounded. An invalid schema never validates anything.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson
from jsonschema.protocols import Validator

CACHED_SCHEMAS = 1024


def conforms(value: Any, schema: Mapping[str, Any]) -> bool:
    """Whether `value` matches `schema` (the draft its `$schema` names, else the latest)."""
    validator = _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    return validator is not None and validator.is_valid(value)


def schema_error(schema: Mapping[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON Schema (of the draft its `$schema` names, else the latest); None when it is.
    Valid schemas are compiled once, as for `conforms`."""
    if _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)) is not None:
        return None
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        return exc.message
    return "not a valid JSON Schema"


@functools.lru_cache(maxsize=CACHED_SCHEMAS)
def _compiled(canonical: bytes) -> Validator | None:
    schema = orjson.loads(canonical)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None
    validator: Validator = cls(schema)
    return validator
