"""TensorZero's top-level tables LSD accepts without acting on them, checked enough to catch a typo in their shape.

`[object_storage]` (LSD stores files inline in PostgreSQL rows), `[clickhouse]` (LSD has no ClickHouse),
`[provider_types]` (kept for the providers to read their defaults), `[optimizers]` and `[autopilot]` (TensorZero's
fine-tuning and agent services, not part of a gateway). `[postgres]` is read by the loader with `[gateway]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsd.config.reader import Table

OBJECT_STORAGE_TYPES = ("s3_compatible", "filesystem", "disabled")


def accepted_tables(root: Table) -> dict[str, Mapping[str, Any]]:
    accepted: dict[str, Mapping[str, Any]] = {}
    if root.has("object_storage"):
        accepted["object_storage"] = _object_storage(root.table("object_storage"))
    for key in ("clickhouse", "provider_types", "optimizers", "autopilot"):
        if root.has(key):
            accepted[key] = root.table(key).rest()
    return accepted


def _object_storage(t: Table) -> Mapping[str, Any]:
    kind = t.choice("type", OBJECT_STORAGE_TYPES, None, required=True)
    if kind == "s3_compatible":
        t.str("endpoint", env=False)
        t.str("bucket_name", env=False)
        t.str("region", env=False)
        t.bool("allow_http", False)
        t.str("prefix", env=False)
    elif kind == "filesystem":
        t.str("path", required=True, env=False)
    config = dict(t.data)
    t.finish()
    return config
