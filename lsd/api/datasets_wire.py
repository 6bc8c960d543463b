"""TensorZero's /v1/datasets wire shapes, built from stored datapoints (kept apart from tensorzero_wire.py so the
datasets API evolves on its own)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from lsd.api.tensorzero_wire import rfc3339
from lsd.store.datasets import DatapointRow

_TOOL_KEYS = ("allowed_tools", "additional_tools", "tool_choice", "parallel_tool_calls")


def datapoint_json(row: DatapointRow) -> dict[str, Any]:
    """One datapoint as TensorZero's Datapoint (`type` chat or json)."""
    out: dict[str, Any] = {
        "type": row.type,
        "id": str(row.id),
        "dataset_name": row.dataset_name,
        "function_name": row.function_name,
        "name": row.name,
        "episode_id": str(row.episode_id) if row.episode_id is not None else None,
        "input": row.input,
        "output": row.output,
        "tags": row.tags,
        "auxiliary": "",
        "source_inference_id": str(row.source_inference_id) if row.source_inference_id is not None else None,
        "is_custom": row.is_custom,
        "is_deleted": row.is_deleted,
        "staled_at": rfc3339(row.staled_at) if row.staled_at is not None else None,
        "updated_at": rfc3339(row.updated_at),
    }
    if row.type == "chat":
        tools = row.tool_params or {}
        for key in _TOOL_KEYS:
            out[key] = tools.get(key)
        out["provider_tools"] = tools.get("provider_tools") or []
    else:
        out["output_schema"] = row.output_schema
    return out


def datapoints_json(rows: Sequence[DatapointRow]) -> dict[str, Any]:
    """list_datapoints and get_datapoints: `{"datapoints": [...]}`."""
    return {"datapoints": [datapoint_json(r) for r in rows]}


def ids_json(ids: Sequence[UUID]) -> dict[str, Any]:
    """create, update, update metadata, from_inferences: `{"ids": [...]}`."""
    return {"ids": [str(i) for i in ids]}


def deleted_json(count: int) -> dict[str, Any]:
    return {"num_deleted_datapoints": count}
